"""Faithfulness metrics: pixel-flipping (AOPC), deletion and insertion."""

import keras
import numpy as np
import pytest

from keras_dtd import metrics


def _linear(weights, bias=0.0):
    inp = keras.Input((len(weights),))
    dense = keras.layers.Dense(1)
    model = keras.Model(inp, dense(inp))
    dense.set_weights([np.asarray(weights, "float32")[:, None], np.array([bias], "float32")])
    return model


def test_hand_computed_aopc_deletion_and_insertion():
    model = _linear([1.0, 1.0, 1.0])
    x = np.array([[3.0, 1.0, 2.0]], "float32")
    flipped = metrics.pixel_flipping(model, x, x, steps=3)
    np.testing.assert_allclose(flipped.curves, [[6, 3, 1, 0]])
    np.testing.assert_allclose(flipped.score, [(3 + 5 + 6) / 3])
    np.testing.assert_allclose(flipped.fractions, [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(metrics.deletion(model, x, x, steps=3).score, [(6 / 2 + 3 + 1 + 0 / 2) / 3])
    inserted = metrics.insertion(model, x, x, steps=3, perturbation="constant")
    np.testing.assert_allclose(inserted.curves, [[0, 3, 5, 6]])
    np.testing.assert_allclose(inserted.score, [(0 / 2 + 3 + 5 + 6 / 2) / 3])
    np.testing.assert_allclose(
        metrics.pixel_flipping(model, x, x, steps=3, order="lerf").curves, [[6, 5, 3, 0]]
    )


def test_exact_relevance_gives_the_steepest_morf_curve_on_a_linear_model():
    rng = np.random.default_rng(0)
    w = rng.normal(size=12)
    model = _linear(w, bias=0.3)
    x = rng.uniform(-1, 1, (5, 12)).astype("float32")
    exact = metrics.pixel_flipping(model, x, w * x, steps=12)
    others = [
        metrics.pixel_flipping(model, x, np.broadcast_to(w, x.shape), steps=12),  # the gradient
        metrics.pixel_flipping(model, x, x, steps=12, order="random", seed=1),
        metrics.pixel_flipping(model, x, rng.normal(size=x.shape), steps=12),
    ]
    for other in others:
        assert (exact.curves <= other.curves + 1e-5).all()
        assert (exact.score >= other.score - 1e-5).all()


def _fully_perturbed(x, perturbation):
    """What every pixel becomes at the last step, per the documented perturbations (None:
    "uniform", whose noise is not specified beyond its range)."""
    if perturbation == "constant":
        return np.full_like(x, 0.5)  # the baseline given below
    if perturbation == "min":
        return np.broadcast_to(x.min(axis=(1, 2, 3), keepdims=True), x.shape)
    if perturbation == "blur":  # 3×3 box with edge values repeated, per channel
        padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        return sum(padded[:, a : a + 6, b : b + 6] for a in range(3) for b in range(3)) / 9
    return None


def test_images_patches_and_perturbations():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    dense = model.layers[-1]
    features = keras.Model(model.inputs, model.layers[-2].output)

    def logit(images):  # Keras' own forward pass without the softmax, output 1
        h = features.predict(np.asarray(images, "float32"), verbose=0).astype(np.float64)
        return h @ dense.get_weights()[0][:, 1] + dense.get_weights()[1][1]

    x = np.random.default_rng(0).uniform(0, 1, (3, 6, 6, 2)).astype("float32")
    r = np.random.default_rng(1).normal(size=x.shape)
    for perturbation in metrics.PERTURBATIONS:
        result = metrics.pixel_flipping(
            model, x, r, patch=2, steps=9, perturbation=perturbation, baseline=0.5, neuron_selection=1
        )
        assert result.curves.shape == (3, 10)
        # step 0 is the unperturbed logit (the softmax is stripped); float32 logits of size ~1: atol 1e-6
        np.testing.assert_allclose(result.curves[:, 0], logit(x), rtol=1e-5, atol=1e-6)
        assert not np.allclose(result.curves[:, -1], result.curves[:, 0])
        end = _fully_perturbed(x, perturbation)
        if end is not None:  # the last step perturbs every patch
            np.testing.assert_allclose(result.curves[:, -1], logit(end), rtol=1e-5, atol=1e-6)

    # a linear model: deleting patch p (to 0) lowers f by Σ_p w·x, in the order of Σ_p R
    w = np.random.default_rng(2).normal(size=(6, 6, 2))
    inp = keras.Input((6, 6, 2))
    linear = keras.layers.Dense(1)
    linear_model = keras.Model(inp, linear(keras.layers.Flatten()(inp)))
    linear.set_weights([w.reshape(72, 1).astype("float32"), np.array([0.3], "float32")])
    wx = w * x.astype(np.float64)
    for patch, grid, steps in ((2, 3, 9), (3, 2, 4)):  # 9 or 4 patches, one more per step
        blocks = (3, grid, patch, grid, patch, 2)
        contribution = wx.reshape(blocks).sum(axis=(2, 4, 5)).reshape(3, -1)
        order = np.argsort(-r.reshape(blocks).sum(axis=(2, 4, 5)).reshape(3, -1), axis=1)
        deleted = np.cumsum(np.take_along_axis(contribution, order, axis=1), axis=1)
        f = 0.3 + wx.reshape(3, -1).sum(axis=1)
        expected = np.concatenate([f[:, None], f[:, None] - deleted], axis=1)
        result = metrics.deletion(linear_model, x, r, patch=patch, steps=steps)
        assert result.curves.shape == (3, steps + 1)
        # float32 sums of 72 products: rounding ≲ √72·6e-8 of Σ|w·x|, so atol 1e-6 of it
        atol = 1e-6 * np.abs(wx).reshape(3, -1).sum(axis=1).max()
        np.testing.assert_allclose(result.curves, expected, rtol=1e-5, atol=atol)
        area = ((expected[:, 1:] + expected[:, :-1]) / 2).sum(axis=1) / steps  # trapezoids
        np.testing.assert_allclose(result.score, area, rtol=1e-5, atol=atol)


def test_random_order_is_reproducible_with_a_seed():
    model = _linear(np.arange(1, 9, dtype=float))
    x = np.random.default_rng(0).uniform(0, 1, (4, 8)).astype("float32")
    a, b = (metrics.pixel_flipping(model, x, x, order="random", steps=8, seed=3) for _ in range(2))
    c = metrics.pixel_flipping(model, x, x, order="random", steps=8, seed=4)
    np.testing.assert_array_equal(a.curves, b.curves)
    assert not np.allclose(a.curves, c.curves)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "steps must be a positive int"),
        ({"patch": 9}, "patch 9 is larger"),
        ({"steps": 9}, "steps 9 exceed the 8 patches"),
        ({"order": "best"}, "order must be one of"),
        ({"perturbation": "zero"}, "perturbation must be one of"),
    ],
)
def test_bad_parameters_are_named(kwargs, message):
    model = _linear(np.ones(8))
    x = np.ones((2, 8), "float32")
    with pytest.raises(ValueError, match=message):
        metrics.pixel_flipping(model, x, x, **kwargs)
    with pytest.raises(ValueError, match="relevance has shape"):
        metrics.deletion(model, x, x[:, :4])


def _token_sum(vocabulary=5):
    """f = Σ_t id_t: an Embedding holding each id's own value, summed by a Dense of ones."""
    inp = keras.Input((3,), dtype="int32")
    embedding = keras.layers.Embedding(vocabulary, 1)
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(inp, dense(keras.layers.Flatten()(embedding(inp))))
    embedding.set_weights([np.arange(vocabulary, dtype="float32")[:, None]])
    dense.set_weights([np.ones((3, 1), "float32")])
    return model


def test_token_deletion_replaces_tokens_by_the_padding_id_most_relevant_first():
    model, tokens = _token_sum(), np.array([[3, 1, 2]])
    result = metrics.token_deletion(model, tokens, tokens.astype(float), steps=3)
    np.testing.assert_allclose(result.curves, [[6, 3, 1, 0]])  # 3 goes first, then 2, then 1
    np.testing.assert_allclose(result.score, [(3 + 5 + 6) / 3])
    assert result.metric == "token_deletion"
    lerf = metrics.token_deletion(model, tokens, tokens.astype(float), order="lerf", steps=3, pad_id=4)
    np.testing.assert_allclose(lerf.curves, [[6, 9, 11, 12]])  # ids replaced by 4, least relevant first
    with pytest.raises(ValueError, match="integer ids"):
        metrics.token_deletion(model, tokens.astype(float), tokens, steps=3)
