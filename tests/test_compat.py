"""iNNvestigate-style names and the gradient baseline."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dtd import DTD, LRP, Gradient, create_analyzer, rules
from keras_dtd.compat import ANALYZERS


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(7)
    return keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(3, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).uniform(0, 1, (5, 6, 6, 1)).astype("float32")


def test_names_build_the_matching_analyzers(model, x):
    np.testing.assert_allclose(
        create_analyzer("lrp.epsilon", model, neuron_selection_mode="index", epsilon=0.5).analyze(x, 2),
        LRP(model, rules.Epsilon(0.5)).analyze(x, neuron_selection=2),
        rtol=1e-5,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        create_analyzer("lrp.alpha_2_beta_1", model, neuron_selection_mode="all").analyze(x),
        LRP(model, rules.AlphaBeta(2, 1, bias="both")).analyze(x, neuron_selection="all"),
        rtol=1e-5,
        atol=1e-7,
    )
    required = {
        "deep_taylor.bounded": {"low": 0, "high": 1},
        "lrp": {"rule": "Z"},
        "lrp.alpha_beta": {"alpha": 2},
    }
    logits = keras.Model(model.inputs, model.layers[-1].output)(x).numpy()  # softmax: explained before it
    w, b = model.layers[-1].get_weights()
    top = (keras.Model(model.inputs, model.layers[-2].output)(x).numpy() @ w + b).argmax(axis=1)
    assert np.all(top == logits.argmax(axis=1))
    for name in ANALYZERS:
        kwargs = required.get(name, {})
        default = create_analyzer(name, model, **kwargs)
        keras.utils.set_random_seed(3)  # random and smoothgrad draw the same noise in both modes
        got = default.analyze(x)
        assert got.shape == x.shape and np.all(np.isfinite(got)) and np.abs(got).max() > 0, name
        # the default mode explains each sample's top logit: the same maps as those indices given explicitly
        keras.utils.set_random_seed(3)
        by_index = create_analyzer(name, model, neuron_selection_mode="index", **kwargs).analyze(x, top)
        np.testing.assert_allclose(got, by_index, rtol=1e-5, atol=1e-6 * np.abs(got).max(), err_msg=name)
        other = (top + 1) % 4  # and another output's maps differ
        keras.utils.set_random_seed(3)
        elsewhere = create_analyzer(name, model, neuron_selection_mode="index", **kwargs).analyze(x, other)
        assert name in ("input", "random") or np.abs(elsewhere - got).max() > 1e-3 * np.abs(got).max(), name


def test_innvestigates_deep_taylor_is_not_the_papers(model, x):
    """deep_taylor (iNNvestigate) uses z⁺ at the first layer; DTD uses w² (the paper)."""
    innvestigate = create_analyzer("deep_taylor", model).analyze(x)
    paper = DTD(model).analyze(x)
    assert np.abs(innvestigate - paper).max() > 1e-3 * np.abs(paper).max()
    w, b = model.layers[-1].get_weights()  # both sum to the top logit before the softmax (zero biases)
    top = (keras.Model(model.inputs, model.layers[-2].output)(x).numpy() @ w + b).max(axis=1)
    for relevance in (innvestigate, paper):
        np.testing.assert_allclose(
            relevance.reshape(5, -1).astype(np.float64).sum(1), np.maximum(top, 0), rtol=1e-5
        )


def test_compat_errors(model):
    with pytest.raises(ValueError, match="Unknown analyzer 'lrp.nope'"):
        create_analyzer("lrp.nope", model)
    with pytest.raises(ValueError, match="needs analyze"):
        create_analyzer("deep_taylor", model, neuron_selection_mode="index").analyze(np.zeros((1, 6, 6, 1)))


@pytest.mark.parametrize("postprocess", [None, "abs", "square"])
def test_gradient_matches_a_tape_on_the_logits(model, x, postprocess):
    dense = model.layers[-1]
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        hidden = model.layers[-2].output
        features = keras.Model(model.inputs, hidden)(xt)
        scores = tf.matmul(features, dense.kernel) + dense.bias
        target = tf.reduce_sum(scores[:, 1])
    expected = tape.gradient(target, xt).numpy()
    if postprocess == "abs":
        expected = np.abs(expected)
    elif postprocess == "square":
        expected = expected**2
    got = Gradient(model, postprocess=postprocess).analyze(x, neuron_selection=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
