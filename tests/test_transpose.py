"""Each linear map's transposed map Jᵀ s (``LinearOp.transpose``, which the proportional
rules use instead of a VJP) against the float64 matrix of the layer, found by applying the
layer to basis vectors: direct forms (Dense, Conv2D, depthwise 2D, sums) and the VJP fallback."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from replica import layer_matrix

from keras_dtd import Analyzer, rules
from keras_dtd.composites import Uniform

F64 = "float64"
L = keras.layers

MAPS = {  # name: (sample shape, layer, whether the transposed map is written directly)
    "dense": ((7,), lambda: L.Dense(5, dtype=F64), True),
    "dense_rank3": ((3, 4), lambda: L.Dense(2, dtype=F64), False),
    "conv2d_same_strided_even": (
        (6, 4, 2),
        lambda: L.Conv2D(3, 3, strides=2, padding="same", dtype=F64),
        True,
    ),
    "conv2d_valid_strided": ((7, 5, 2), lambda: L.Conv2D(2, (3, 2), strides=(2, 3), dtype=F64), True),
    "conv2d_channels_first": (
        (2, 5, 4),
        lambda: L.Conv2D(3, 3, strides=2, padding="same", data_format="channels_first", dtype=F64),
        True,
    ),
    "conv2d_dilated": ((6, 6, 1), lambda: L.Conv2D(2, 3, padding="same", dilation_rate=2, dtype=F64), False),
    "conv2d_grouped": ((5, 5, 4), lambda: L.Conv2D(6, 3, groups=2, padding="same", dtype=F64), False),
    "conv1d_causal": ((8, 2), lambda: L.Conv1D(2, 2, padding="causal", dtype=F64), False),
    "conv3d": ((4, 3, 3, 2), lambda: L.Conv3D(2, 2, padding="same", dtype=F64), False),
    "depthwise2d_same_strided": (
        (6, 5, 2),
        lambda: L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same", dtype=F64),
        True,
    ),
    "depthwise2d_valid": ((5, 6, 3), lambda: L.DepthwiseConv2D((2, 3), dtype=F64), True),
    "depthwise1d": ((8, 3), lambda: L.DepthwiseConv1D(3, strides=2, dtype=F64), False),
    "conv2d_transpose": (
        (4, 3, 2),
        lambda: L.Conv2DTranspose(2, 3, strides=2, padding="same", dtype=F64),
        False,
    ),
    "average_pooling": ((4, 4, 2), lambda: L.AveragePooling2D(2, dtype=F64), False),
}


def _node(model):
    analyzer = Analyzer(model, Uniform(rules.Z()))
    return next(n for n in analyzer.graph.nodes if n.linear_map is not None)


@pytest.mark.parametrize("name", list(MAPS))
def test_transposed_map_is_the_matrix_transpose(name, monkeypatch):
    shape, make, direct = MAPS[name]
    inp = keras.Input(shape, dtype=F64)
    layer = make()
    out = layer(inp)
    if layer.weights:
        layer.set_weights([np.random.uniform(-1, 1, w.shape) for w in layer.get_weights()])
    model = keras.Model(inp, out)
    m, _ = layer_matrix(_evaluator(layer, model), shape)  # m[i, j] = ∂z_j / ∂x_i
    op = _node(model).linear_map

    x = tf.constant(np.random.uniform(-1, 1, (3,) + shape))
    s = np.random.uniform(-1, 1, (3,) + tuple(out.shape[1:]))
    kernel, _ = op.parameters([x])
    tapes = []
    monkeypatch.setattr(tf, "GradientTape", _counting(tf.GradientTape, tapes))
    (transposed,) = op.transpose([x], kernel, tf.constant(s))

    expected = s.reshape(3, -1) @ m.T
    np.testing.assert_allclose(transposed.numpy().reshape(3, -1), expected, rtol=1e-10, atol=1e-12)
    assert transposed.shape == x.shape
    assert bool(tapes) != direct, f"{name}: expected {'a direct transposed map' if direct else 'the VJP'}"


def _evaluator(layer, model):
    """The layer as a numpy function; a channels_first convolution through a channels_last
    twin with the same weights (CPUs have no float64 NCHW convolution)."""
    if getattr(layer, "data_format", None) != "channels_first":
        return model.predict_on_batch
    config = dict(layer.get_config(), data_format="channels_last", name=None)
    twin = type(layer).from_config(config)
    twin.build((None, None, None, layer.get_weights()[0].shape[-2]))
    twin.set_weights(layer.get_weights())
    return lambda a: np.moveaxis(twin(np.moveaxis(a, 1, -1)).numpy(), -1, 1)


def _counting(tape_class, tapes):
    def make(*args, **kwargs):
        tapes.append(1)
        return tape_class(*args, **kwargs)

    return make


def test_sums_transpose_with_their_weights_and_reduce_broadcast_inputs():
    a, b = keras.Input((3, 2), dtype=F64), keras.Input((1, 2), dtype=F64)
    for merge, weights in ((L.Add(dtype=F64), (1, 1)), (L.Subtract(dtype=F64), (1, -1))):
        model = keras.Model(a, merge([a, a]))
        op = _node(model).linear_map
        x = tf.constant(np.random.uniform(-1, 1, (2, 3, 2)))
        s = np.random.uniform(-1, 1, (2, 3, 2))
        kernel, _ = op.parameters([x, x])
        for got, w in zip(op.transpose([x, x], kernel, tf.constant(s)), weights):
            np.testing.assert_allclose(got.numpy(), w * s)
    model = keras.Model([a, b], L.Add(dtype=F64)([a, b]))  # b broadcasts over the rows: Jᵀ sums them
    op = _node(model).linear_map
    xa, xb = tf.zeros((2, 3, 2), F64), tf.zeros((2, 1, 2), F64)
    s = np.random.uniform(-1, 1, (2, 3, 2))
    got_a, got_b = op.transpose([xa, xb], None, tf.constant(s))
    np.testing.assert_allclose(got_a.numpy(), s)
    np.testing.assert_allclose(got_b.numpy(), s.sum(axis=1, keepdims=True))
