"""The layer registry: a layer type registered by a user is explained through its entry, and
bad registrations are refused by name."""

import warnings

import keras
import numpy as np
import pytest

import keras_dtd
from keras_dtd import DTD, LRP, Kind, composites, rules
from keras_dtd.core import linear_maps

F64 = "float64"
L = keras.layers


class Projection(L.Layer):
    """y = x @ w: a linear map keras_dtd knows nothing about until it is registered."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")

    def call(self, x):
        return keras.ops.matmul(x, self.w)


def _projection_map(node, batch_norm):
    return linear_maps.DenseMap(node.layer, "w", None, batch_norm)


def _pair(rng):
    """A model with a Projection (and a BatchNormalization after it), and its twin with a Dense
    without bias in its place, with the same weights."""

    def build(middle):
        inp = keras.Input((6,), dtype=F64)
        h = L.Dense(5, activation="relu", dtype=F64)(inp)
        h = L.ReLU(dtype=F64)(L.BatchNormalization(dtype=F64)(middle(h)))
        return keras.Model(inp, L.Dense(3, dtype=F64)(h))

    model, twin = build(Projection(4, dtype=F64)), build(L.Dense(4, use_bias=False, dtype=F64))
    weights = [rng.normal(0, 0.5, w.shape) for w in twin.get_weights()]
    weights[5] = rng.uniform(0.5, 2.0, weights[5].shape)  # BatchNorm variances > 0
    twin.set_weights(weights)
    model.set_weights(weights)
    return model, twin


def _quiet(analyze, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.ZeroRelevanceWarning)
        return analyze(x)


def test_a_registered_layer_type_is_explained_through_its_linear_map():
    rng = np.random.default_rng(0)
    model, twin = _pair(rng)
    x = rng.uniform(-1, 1, (5, 6))
    np.testing.assert_allclose(model.predict(x, verbose=0), twin.predict(x, verbose=0), rtol=1e-12)
    traced = {n.path: n.kind for n in DTD(model).graph.nodes}  # unregistered: its call is traced
    assert [k for p, k in traced.items() if p.endswith("/matmul")] == [Kind.KERNEL]
    assert Kind.BATCH_NORM in traced.values()
    keras_dtd.register_layer(Projection, Kind.KERNEL, _projection_map, folds_batch_norm=True)
    try:
        for analyzer in (DTD, lambda m: LRP(m, rules.Epsilon(0.01)), lambda m: LRP(m, rules.ZPlus())):
            np.testing.assert_allclose(
                _quiet(analyzer(model).analyze, x), _quiet(analyzer(twin).analyze, x), rtol=1e-12, atol=1e-15
            )
        nodes = DTD(model).graph.nodes
        assert not any(n.kind == Kind.BATCH_NORM for n in nodes)  # folded into the Projection
    finally:
        keras_dtd.unregister_layer(Projection)
    assert any(n.path.endswith("/matmul") for n in DTD(model).graph.nodes)  # traced again


def test_a_registration_for_a_subclass_wins_over_its_parents_entry():
    class Doubling(L.Dense):  # a Dense subclass whose call is not a Dense's: 2·(x·W + b)
        def call(self, x):
            return 2.0 * super().call(x)

    def build(first):
        inp = keras.Input((4,), dtype=F64)
        return keras.Model(inp, L.Dense(2, dtype=F64)(L.ReLU(dtype=F64)(first(inp))))

    rng = np.random.default_rng(1)
    model, twin = build(Doubling(3, dtype=F64)), build(L.Dense(3, dtype=F64))
    weights = [rng.normal(0, 0.5, w.shape) for w in model.get_weights()]
    model.set_weights(weights)
    twin.set_weights([2.0 * weights[0], 2.0 * weights[1], *weights[2:]])  # the same function
    x = rng.uniform(-1, 1, (4, 4))
    np.testing.assert_allclose(model.predict(x, verbose=0), twin.predict(x, verbose=0), rtol=1e-12)

    def maps(m):
        return LRP(m, rules.Epsilon(0.1)).analyze(x, neuron_selection=0)

    inherited = maps(model)  # as a Dense: its own W and b, not 2W and 2b
    assert np.abs(inherited - maps(twin)).max() > 1e-3
    keras_dtd.register_layer(Doubling, "kernel", lambda node, batch_norm: _Doubled(node.layer))
    try:
        np.testing.assert_allclose(maps(model), maps(twin), rtol=1e-12, atol=1e-15)
    finally:
        keras_dtd.unregister_layer(Doubling)
    np.testing.assert_allclose(maps(model), inherited, rtol=1e-12, atol=1e-15)  # the parent's entry again


class _Doubled(linear_maps.DenseMap):
    """z = x·(2W) + 2b."""

    def __init__(self, layer):
        super().__init__(layer, "kernel", "bias")

    def parameters(self, inputs):
        kernel, bias = super().parameters(inputs)
        return 2.0 * kernel, 2.0 * bias


def test_bad_registrations_are_refused_by_name():
    with pytest.raises(TypeError, match="keras.layers.Layer subclass"):
        keras_dtd.register_layer(int, "kernel", _projection_map)
    with pytest.raises(ValueError, match="unknown kind 'dense'"):
        keras_dtd.register_layer(Projection, "dense", _projection_map)
    with pytest.raises(ValueError, match="needs linear_map"):
        keras_dtd.register_layer(Projection, "kernel")
    with pytest.raises(ValueError, match="have a linear map"):
        keras_dtd.register_layer(Projection, "structural", _projection_map)
    with pytest.raises(ValueError, match="group"):
        keras_dtd.register_layer(Projection, "kernel", _projection_map, group="conv")


def test_composite_groups_come_from_the_registry():
    assert set(composites.DENSE) == {L.Dense, L.EinsumDense}
    expected = {
        L.Conv1D, L.Conv2D, L.Conv3D, L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose,
        L.DepthwiseConv1D, L.DepthwiseConv2D, L.SeparableConv1D, L.SeparableConv2D,
    }  # fmt: skip
    assert set(composites.CONVOLUTIONS) == expected


def test_a_layer_registered_in_a_group_gets_the_groups_rule_in_composites():
    """register_layer(..., group="dense"): composites' DENSE selector (zennit's EpsilonPlus: ε on
    Dense, z⁺ on convolutions) picks the class up, so the maps are those of the Dense twin; without
    the group it is a kernel layer of no group, for which EpsilonPlus has no rule."""
    rng = np.random.default_rng(5)
    model, twin = _pair(rng)
    x = rng.uniform(-1, 1, (4, 6))
    keras_dtd.register_layer(Projection, Kind.KERNEL, _projection_map, folds_batch_norm=True, group="dense")
    try:
        assert keras_dtd.composites.DENSE == composites.DENSE and Projection not in composites.DENSE
        np.testing.assert_allclose(
            _quiet(LRP(model, composites.EpsilonPlus()).analyze, x),
            _quiet(LRP(twin, composites.EpsilonPlus()).analyze, x),
            rtol=1e-12,
            atol=1e-15,
        )
        keras_dtd.register_layer(Projection, Kind.KERNEL, _projection_map, folds_batch_norm=True)
        with pytest.raises(keras_dtd.UnsupportedLayerError, match="has no rule"):
            LRP(model, composites.EpsilonPlus())
    finally:
        keras_dtd.unregister_layer(Projection)
