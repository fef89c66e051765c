"""Figures render headless, keep the sign of relevance in their colours, and show zero as neutral."""

import io
import re

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest

from keras_dtd import plot


def _pixels(fig):
    return matplotlib.image.imread(io.BytesIO(plot.to_png(fig)))[..., :3]


def _centre(pixels):
    h, w, _ = pixels.shape
    return pixels[h // 2 - 2 : h // 2 + 2, w // 2 - 2 : w // 2 + 2].reshape(-1, 3).mean(axis=0)


@pytest.mark.parametrize("value, colour", [(1.0, (1, 0, 0)), (-1.0, (0, 0, 1))])
def test_heatmap_colours_follow_the_sign(value, colour):
    r = np.zeros((9, 9))
    r[3:6, 3:6] = value
    r[0, 0] = -value  # keeps the scale symmetric either way
    rgb = _centre(_pixels(plot.heatmap(r, colorbar=False, size=2)))
    np.testing.assert_allclose(rgb, colour, atol=0.1)


def test_all_zero_map_is_neutral():
    pixels = _pixels(plot.heatmap(np.zeros((8, 8, 3)), colorbar=False))
    np.testing.assert_allclose(_centre(pixels), (1, 1, 1), atol=0.02)  # white in bwr
    pixels = _pixels(plot.heatmap(np.zeros((8, 8)), cmap="coldnhot", colorbar=False))
    np.testing.assert_allclose(_centre(pixels), (0, 0, 0), atol=0.02)  # black in coldnhot


def test_coldnhot_is_hot_for_positive_and_cold_for_negative():
    assert plot.COLDNHOT(1.0)[:3] == (1.0, 1.0, 0.0)
    assert plot.COLDNHOT(0.0)[:3] == (0.0, 1.0, 1.0)


def _rgb_at(ax, xy, pixels):
    """The colour of the saved figure at data coordinates ``xy`` of ``ax``."""
    col, y = ax.transData.transform(xy)
    return pixels[int(pixels.shape[0] - y), int(col)]


def test_overlay_grid_and_bars_save_pngs(tmp_path):
    signs = np.array([1.0, -1.0, -1.0, 1.0])
    r = signs[:, None, None, None] * np.random.default_rng(0).uniform(1, 2, (4, 8, 8, 1))
    r[:, 0, 0] = 2 * signs[:, None]  # sign-constant maps with |R| = max|R| at the pixels looked at
    r[:, 2:6, 2:6] = 2 * signs[:, None, None, None]
    x = np.random.default_rng(1).uniform(size=(4, 8, 8, 1))
    overlay = plot.overlay(r[0], x[0], save=tmp_path / "overlay.png")
    fig = plot.grid(r, x=x, titles=[f"#{k}" for k in range(4)], ncols=2, save=tmp_path / "grid.png")
    bars = plot.feature_bars([0.5, -0.25, 0.25], ["age", "fare", "sex"], save=tmp_path / "bars.png")
    w, h = fig.get_size_inches() * fig.dpi
    assert matplotlib.image.imread(tmp_path / "grid.png").shape[:2] == (round(h), round(w))
    red, blue = np.array([1.0, 0, 0]), np.array([0, 0, 1.0])  # bwr's ends
    # over the input: opacity 0.7 at |R| = max|R|, on the input rescaled to 0..1 in gray
    for figure, name, maps in ((overlay, "overlay", [0]), (fig, "grid", range(4))):
        pixels = matplotlib.image.imread(tmp_path / f"{name}.png")[..., :3]
        for k, ax in zip(maps, figure.axes):
            gray = (x[k, ..., 0] - x[k].min()) / (x[k].max() - x[k].min())
            colour = red if signs[k] > 0 else blue
            for i, j in ((0, 0), (2, 3), (5, 4)):
                expected = 0.7 * colour + 0.3 * gray[i, j]
                # 8-bit PNG: 2/255 and a little for blending
                np.testing.assert_allclose(
                    _rgb_at(ax, (j, i), pixels), expected, atol=0.02, err_msg=(name, k)
                )
    pixels = matplotlib.image.imread(tmp_path / "bars.png")[..., :3]
    for k, share in enumerate((50.0, -25.0, 25.0)):  # % of Σ|R|; red for +, blue for −
        colour = matplotlib.colors.to_rgb("tab:red" if share > 0 else "tab:blue")
        np.testing.assert_allclose(_rgb_at(bars.axes[0], (share / 2, k), pixels), colour, atol=0.02)


def test_overlay_is_transparent_where_relevance_is_zero():
    x = np.full((8, 8), 0.5)
    x[0, 0], x[0, 1] = 0.0, 1.0  # grayscale range 0..1
    r = np.zeros((8, 8))
    r[0, 7] = 1.0
    pixels = _pixels(plot.overlay(r, x, size=2))
    np.testing.assert_allclose(_centre(pixels), (0.5, 0.5, 0.5), atol=0.05)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=re.escape("relevance map of shape (2, 2, 2, 2); expected (H, W)")):
        plot.heatmap(np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="names"):
        plot.feature_bars([1, 2], ["a"])


def test_grid_image_tiles_sign_coloured_cells():
    maps = [np.ones((4, 4)), -np.ones((4, 4)), np.zeros((4, 4))]
    image = plot.grid_image(maps, ncols=3, scale=5, gap=2)
    assert image.shape == (2 + 20 + 2, 2 + 3 * 22, 3) and image.dtype == np.uint8
    centres = [image[12, 2 + 22 * k + 10] for k in range(3)]
    np.testing.assert_allclose(centres[0], (255, 0, 0), atol=30)  # positive: red
    np.testing.assert_allclose(centres[1], (0, 0, 255), atol=30)  # negative: blue
    np.testing.assert_allclose(centres[2], (255, 255, 255), atol=3)  # zero: neutral white


def test_text_colours_words_by_the_sign_of_their_relevance(tmp_path):
    fig = plot.text(["good", "plain", "bad"], [1.0, 0.0, -1.0], save=tmp_path / "text.png")
    pixels = _pixels(fig)
    reds = (pixels[..., 0] > 0.8) & (pixels[..., 1] < 0.2) & (pixels[..., 2] < 0.2)
    blues = (pixels[..., 2] > 0.8) & (pixels[..., 0] < 0.2) & (pixels[..., 1] < 0.2)
    assert reds.sum() > 50 and blues.sum() > 50
    assert np.nonzero(reds)[1].mean() < np.nonzero(blues)[1].mean()  # "good" left of "bad"
    assert (tmp_path / "text.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="one relevance value per word"):
        plot.text(["a", "b"], [1.0])


def test_text_rows_stack_one_text_heatmap_per_sentence(tmp_path):
    sentences, relevance = [["good", "film"], ["a", "very", "bad", "one"]], [[1.0, 0.0], [0, 0, -1.0, 0]]
    rows = [_pixels(plot.text(w, r, title=t)) for w, r, t in zip(sentences, relevance, ["pos", "neg"])]
    stacked = plot.text_rows(sentences, relevance, ["pos", "neg"], save=tmp_path / "rows.png")
    assert stacked.shape[0] == sum(r.shape[0] for r in rows)  # the rows one below the other
    assert stacked.shape[1] == max(r.shape[1] for r in rows)
    np.testing.assert_allclose(stacked[: rows[0].shape[0], : rows[0].shape[1], :3], rows[0], atol=1e-2)
    assert (tmp_path / "rows.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="as many sentences"):
        plot.text_rows(sentences, relevance[:1])
