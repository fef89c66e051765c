"""Figures of relevance maps. Every function returns a matplotlib Figure and, given
``save="file.png"``, writes it; no display is needed (figures are drawn with Agg).

Colours keep the sign: with ``bwr``/``seismic`` positive relevance is red, negative
blue and zero white; with ``coldnhot`` positive is red→yellow, negative blue→cyan,
zero black. The colour scale is symmetric around zero, so an all-zero map is neutral.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

COLDNHOT = LinearSegmentedColormap.from_list(
    "coldnhot", [(0.0, (0, 1, 1)), (0.25, (0, 0, 1)), (0.5, (0, 0, 0)), (0.75, (1, 0, 0)), (1.0, (1, 1, 0))]
)


def _cmap(name):
    return COLDNHOT if name == "coldnhot" else colormaps[name]


def to_2d(r):
    """A map of shape (H, W) from (H, W), (H, W, C) or (H, W, 1): channels are summed."""
    r = np.asarray(r, dtype=float)
    if r.ndim == 3:
        r = r.sum(axis=-1)
    if r.ndim == 1:
        r = r[None, :]
    if r.ndim != 2:
        raise ValueError(f"Cannot draw a relevance map of shape {np.shape(r)}; expected (H, W) or (H, W, C).")
    return r


def _limit(r):
    top = float(np.max(np.abs(r))) if r.size else 0.0
    return top if top > 0 else 1.0


def _draw(ax, r, cmap, x=None, alpha=0.7):
    r = to_2d(r)
    limit = _limit(r)
    ax.set_xticks([])
    ax.set_yticks([])
    if x is None:
        return ax.imshow(r, cmap=_cmap(cmap), vmin=-limit, vmax=limit, interpolation="nearest")
    ax.imshow(_grayscale(x), cmap="gray", interpolation="nearest")
    rgba = _cmap(cmap)(0.5 + 0.5 * r / limit)
    rgba[..., 3] = alpha * np.abs(r) / limit
    return ax.imshow(rgba, interpolation="nearest")


def _grayscale(x):
    x = np.asarray(x, dtype=float)
    if x.ndim == 3:
        x = x.mean(axis=-1)
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def _finish(fig, save):
    if save is not None:
        fig.savefig(save, dpi=fig.dpi)
    return fig


def heatmap(r, cmap="bwr", title=None, size=3.0, colorbar=True, save=None) -> Figure:
    """One relevance map with a symmetric, sign-preserving colour scale."""
    fig = Figure(figsize=(size * (1.25 if colorbar else 1.0), size))
    ax = fig.add_subplot()
    image = _draw(ax, r, cmap)
    if title:
        ax.set_title(title)
    if colorbar:
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _finish(fig, save)


def overlay(r, x, cmap="bwr", alpha=0.7, title=None, size=3.0, save=None) -> Figure:
    """A relevance map drawn over a grayscale version of the input ``x``; opacity grows with |R|."""
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    _draw(ax, r, cmap, x=x, alpha=alpha)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _finish(fig, save)


def grid(relevance, x=None, titles=None, ncols=8, cmap="bwr", size=1.6, save=None) -> Figure:
    """Several maps side by side (over their inputs ``x`` if given), each with an optional
    title, e.g. ``f"pred {p} / expl {e}\\nΣR={r.sum():.2f}"``."""
    relevance = list(relevance)
    n = len(relevance)
    if n == 0:
        raise ValueError("grid needs at least one relevance map.")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    height, width = to_2d(relevance[0]).shape
    aspect = min(max(height / width, 0.25), 4.0)
    fig = Figure(figsize=(size * ncols, (size * aspect + (0.45 if titles else 0.1)) * nrows))
    for k, r in enumerate(relevance):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        _draw(ax, r, cmap, x=None if x is None else x[k])
        if titles:
            ax.set_title(titles[k], fontsize=7)
    fig.tight_layout()
    return _finish(fig, save)


def feature_bars(r, names, title=None, save=None) -> Figure:
    """Relevance of tabular features as shares in % of Σ|R| (sign kept: red +, blue −)."""
    r = np.asarray(r, dtype=float).ravel()
    if len(names) != r.size:
        raise ValueError(f"feature_bars got {r.size} relevances for {len(names)} names.")
    total = np.abs(r).sum()
    share = 100 * r / total if total > 0 else np.zeros_like(r)
    fig = Figure(figsize=(5, 0.35 * r.size + 1))
    ax = fig.add_subplot()
    ax.barh(range(r.size), share, color=np.where(share >= 0, "tab:red", "tab:blue"))
    ax.set_yticks(range(r.size), labels=list(names))
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("share of relevance (%)")
    for k, v in enumerate(share):
        ax.annotate(
            f"{v:.1f}%",
            (v, k),
            xytext=(3 if v >= 0 else -3, 0),
            textcoords="offset points",
            ha="left" if v >= 0 else "right",
            va="center",
            fontsize=8,
        )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _finish(fig, save)


def text(words, r, cmap="bwr", title=None, width=8.0, per_line=None, save=None) -> Figure:
    """Words on backgrounds coloured by their relevance ``r`` (one value per word; signs kept,
    the scale symmetric around zero), wrapped into lines of about ``per_line`` characters
    (default: what ``width`` inches hold). Padding can be left out by passing fewer words."""
    words = [str(w) for w in words]
    r = np.asarray(r, dtype=float).reshape(-1)
    if len(words) != len(r):
        raise ValueError(f"text needs one relevance value per word: {len(words)} words, {len(r)} values.")
    per_line = per_line or max(10, int(width * 9))
    lines, line, used = [], [], 0
    for k, word in enumerate(words):
        if line and used + len(word) + 1 > per_line:
            lines.append(line)
            line, used = [], 0
        line.append(k)
        used += len(word) + 1
    if line:
        lines.append(line)
    fig = Figure(figsize=(width, 0.35 * len(lines) + (0.45 if title else 0.15)))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_axis_off()
    colours, limit = _cmap(cmap), _limit(r)
    step, top = 1.0 / per_line, 1.0 - (0.45 / fig.get_figheight() if title else 0.1 / fig.get_figheight())
    height = (top - 0.02) / max(len(lines), 1)
    for row, indices in enumerate(lines):
        x = 0.01
        for k in indices:
            box = {"facecolor": colours(0.5 + 0.5 * r[k] / limit), "edgecolor": "none", "pad": 1.5}
            y = top - (row + 0.5) * height
            ink = "white" if abs(r[k]) > 0.6 * limit else "black"
            ax.text(
                x, y, words[k], va="center", ha="left", family="monospace", fontsize=10, bbox=box, color=ink
            )
            x += (len(words[k]) + 1) * step
    if title:
        ax.text(0.01, 1 - 0.2 / fig.get_figheight(), title, va="center", ha="left", fontsize=11)
    return _finish(fig, save)


def text_rows(sentences, relevance, titles=None, save=None, **text_options) -> np.ndarray:
    """Several :func:`text` heatmaps, one per sentence (a list of words with one relevance
    value each), stacked into one RGBA float image (white where a row is narrower); written
    as a PNG to ``save`` if given. ``text_options``: ``cmap``, ``width``, ``per_line``."""
    from matplotlib import image

    titles = titles if titles is not None else [None] * len(sentences)
    if not (len(sentences) == len(relevance) == len(titles)) or not sentences:
        raise ValueError(
            f"text_rows needs as many sentences, relevance rows and titles, at least one; received "
            f"{len(sentences)}, {len(relevance)} and {len(titles)}."
        )
    rows = [
        image.imread(io.BytesIO(to_png(text(words, r, title=title, **text_options))), format="png")
        for words, r, title in zip(sentences, relevance, titles)
    ]
    width = max(row.shape[1] for row in rows)
    stacked = np.concatenate(
        [np.pad(row, [(0, 0), (0, width - row.shape[1]), (0, 0)], constant_values=1) for row in rows]
    )
    if save is not None:
        image.imsave(save, stacked)
    return stacked


def grid_image(relevance, cmap="bwr", ncols=8, scale=8, gap=2) -> np.ndarray:
    """The maps as one RGB uint8 image (no matplotlib figure: fast enough to log each step).
    Each map has its own symmetric colour scale; cells are enlarged ``scale`` times."""
    maps = [to_2d(r) for r in relevance]
    if not maps:
        raise ValueError("grid_image needs at least one relevance map.")
    height, width = maps[0].shape
    ncols = min(ncols, len(maps))
    nrows = -(-len(maps) // ncols)
    cell_h, cell_w = height * scale, width * scale
    image = np.full((nrows * (cell_h + gap) + gap, ncols * (cell_w + gap) + gap, 3), 255, np.uint8)
    colormap = _cmap(cmap)
    for k, r in enumerate(maps):
        rgb = colormap(0.5 + 0.5 * r / _limit(r))[..., :3]
        cell = np.kron(rgb, np.ones((scale, scale, 1)))
        top, left = gap + (k // ncols) * (cell_h + gap), gap + (k % ncols) * (cell_w + gap)
        image[top : top + cell_h, left : left + cell_w] = np.round(255 * cell).astype(np.uint8)
    return image


def to_png(fig) -> bytes:
    """PNG bytes of a figure (for TensorBoard or the web)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    return buffer.getvalue()
