"""Bad input and unsupported models get clear errors that name the problem."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_dtd
from keras_dtd import DTD, rules


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    return keras.Sequential(
        [
            keras.Input((4, 4, 1)),
            keras.layers.Conv2D(2, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )


@pytest.fixture(scope="module")
def analyzer(model):
    return DTD(model, input_range=(0, 1))


X = np.random.default_rng(0).uniform(0, 1, (2, 4, 4, 1)).astype("float32")


@pytest.mark.parametrize(
    "bad, error, words",
    [
        (X[0], ValueError, "x[None]"),
        (X[:, :3], ValueError, "(batch, ...)"),
        (X[:0], ValueError, "empty batch"),
        (np.where(X > 0.5, np.nan, X), ValueError, "NaN"),
        (X.astype(str), TypeError, "dtype"),
        (X + 2, ValueError, "outside input_range"),
    ],
)
def test_bad_inputs(analyzer, bad, error, words):
    with pytest.raises(error, match=None) as info:
        analyzer.analyze(bad)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "selection, words",
    [
        (3, "neuron_selection 3 is out of range: the output has 3 neurons (0..2)."),
        (-1, "neuron_selection -1 is out of range: the output has 3 neurons (0..2)."),
        ([0, 1, 2], "3 indices for 2 samples"),
        ("max", "neuron_selection must be 'max_activation', 'all', an int or one int per sample; got 'max'."),
        (1.5, "neuron_selection must be 'max_activation', 'all', an int or one int per sample; got 1.5."),
    ],
)
def test_bad_neuron_selection(analyzer, selection, words):
    with pytest.raises(ValueError) as info:
        analyzer.analyze(X, neuron_selection=selection)
    assert words in str(info.value)


def test_non_positive_output_warns_and_gives_zero(model):
    inp = keras.Input((3,))
    dense = keras.layers.Dense(2)
    m = keras.Model(inp, dense(inp))
    dense.set_weights([-np.ones((3, 2)), np.zeros(2)])
    with pytest.warns(keras_dtd.ZeroRelevanceWarning, match="1 of 1 samples") as record:
        r = DTD(m).analyze(np.ones((1, 3)))
    assert np.all(r == 0)
    assert record[0].filename == __file__  # the warning points at the caller's line


def test_multi_output_model_needs_an_output():
    inp = keras.Input((3,))
    h = keras.layers.Dense(4, activation="relu")(inp)
    a, b = keras.layers.Dense(2, name="a")(h), keras.layers.Dense(2, name="b")(h)
    model = keras.Model(inp, [a, b])
    with pytest.raises(ValueError, match="choose one with output="):
        DTD(model)
    x = np.random.uniform(0, 1, (4, 3))
    by_name = DTD(model, output="b").analyze(x, neuron_selection=1)
    f = model.predict_on_batch(x)[1][:, 1]
    np.testing.assert_allclose(by_name.sum(axis=1), np.maximum(f, 0), rtol=1e-5)


class Scale(keras.layers.Layer):
    """2x with a TensorFlow function: its call cannot be traced on Keras symbolic tensors."""

    def call(self, x):
        return tf.multiply(x, 2.0)


def test_unsupported_layer_names_it_and_registering_fixes_it():
    inp = keras.Input((5,))
    h = Scale(name="my_scale")(keras.layers.Dense(4, activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Dense(2)(h))
    with pytest.raises(keras_dtd.UnsupportedLayerError) as info:
        DTD(model)
    message = str(info.value)
    assert "my_scale" in message and "Scale" in message and "register_rule" in message
    keras_dtd.register_rule(Scale, rules.PassThrough())
    try:
        x = np.random.uniform(0, 1, (3, 5))
        r = DTD(model).analyze(x, neuron_selection=0)
        f = model.predict_on_batch(x)[:, 0]
        np.testing.assert_allclose(r.sum(axis=1), np.maximum(f, 0), rtol=1e-5)
    finally:
        keras_dtd.unregister_rule(Scale)
    with pytest.raises(keras_dtd.UnsupportedLayerError):
        DTD(model)
    # a per-analyzer override by layer name works too, and means what PassThrough says: the maps
    # of a twin without Scale whose top kernel is doubled (z⁺ there is scale-free in its input)
    dense_in, dense_out = model.layers[1], model.layers[3]
    twin = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)]
    )
    twin.layers[0].set_weights(dense_in.get_weights())
    twin.layers[1].set_weights([2 * dense_out.get_weights()[0], dense_out.get_weights()[1]])
    x = np.random.default_rng(4).uniform(0, 1, (6, 5))
    f = twin.predict_on_batch(x)
    np.testing.assert_allclose(f, model.predict_on_batch(x), rtol=1e-5, atol=1e-6 * np.abs(f).max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.ZeroRelevanceWarning)
        overridden = DTD(model, layer_rules={"my_scale": rules.PassThrough()}).analyze(x)
        expected = DTD(twin).analyze(x)
    target = np.maximum(f.max(axis=1), 0)
    assert np.sum(target > 0) >= 4  # most samples have a map to compare
    # float32 sums of a few products of size ~1: atol 1e-6 of max |R|
    np.testing.assert_allclose(overridden, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_allclose(overridden.sum(axis=1), target, rtol=1e-5, atol=1e-6 * target.max())


def test_hidden_non_relu_activation_warns_and_strict_refuses():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="tanh", name="t"), keras.layers.Dense(2)]
    )
    with pytest.warns(keras_dtd.NonReLUWarning, match="'?t'? \\(tanh\\)") as record:
        DTD(model)
    assert record[0].filename == __file__
    with pytest.raises(keras_dtd.UnsupportedLayerError, match="strict=True.*t \\(tanh\\)"):
        DTD(model, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_dtd.LRP(model)  # LRP presets pass through silently, as iNNvestigate and zennit do


def test_subclassed_model_cannot_be_traced():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3)))
    with pytest.raises(keras_dtd.ModelNotTraceableError, match="subclassed"):
        DTD(net)


def test_unbuilt_sequential_is_refused():
    with pytest.raises(keras_dtd.ModelNotTraceableError, match="not built"):
        DTD(keras.Sequential([keras.layers.Dense(2)]))


def test_unknown_layer_rule_name_and_bad_arguments(model):
    with pytest.raises(ValueError, match="does not have"):
        DTD(model, layer_rules={"nope": rules.ZPlus()})
    with pytest.raises(ValueError, match="broadcast"):
        DTD(model, input_range=(np.zeros(3), 1))
    with pytest.raises(ValueError, match="low <= high"):
        DTD(model, input_range=(1, 0))
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        rules.AlphaBeta(1, 1)
    with pytest.raises(TypeError, match="Rule instance"):
        keras_dtd.register_rule(Scale, "passthrough")
