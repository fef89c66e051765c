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
    x = np.random.default_rng(0).uniform(0, 1, (3, 6, 6, 2)).astype("float32")
    r = np.random.default_rng(1).normal(size=x.shape)
    for perturbation in metrics.PERTURBATIONS:
        result = metrics.pixel_flipping(
            model, x, r, patch=2, steps=9, perturbation=perturbation, neuron_selection=1
        )
        assert result.curves.shape == (3, 10)
        dense = model.layers[-1]  # step 0 is the unperturbed logit (the softmax is stripped)
        z = keras.Model(model.inputs, model.layers[-2].output).predict(x, verbose=0) @ dense.get_weights()[0]
        np.testing.assert_allclose(
            result.curves[:, 0], z[:, 1] + dense.get_weights()[1][1], rtol=1e-5, atol=1e-6
        )
        assert not np.allclose(result.curves[:, -1], result.curves[:, 0])
    # patch 3 on 6×6: 4 patches, each 3×3 with both channels
    result = metrics.deletion(model, x, r, patch=3, steps=4)
    assert result.curves.shape == (3, 5)


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
