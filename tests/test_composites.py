"""Composites: selection by name, position, class and kind, and their errors."""

import keras
import numpy as np
import pytest

from keras_dtd import Analyzer, LRP, UnsupportedLayerError, composites, rules


@pytest.fixture(scope="module")
def branches():
    keras.utils.set_random_seed(5)
    inp = keras.Input((6,))
    a = keras.layers.Dense(4, activation="relu", name="a")(inp)
    b = keras.layers.Dense(3, activation="relu", name="b")(inp)
    out = keras.layers.Dense(2, name="top")(keras.layers.Concatenate()([a, b]))
    x = np.random.default_rng(0).uniform(-1, 1, (4, 6)).astype("float32")
    return keras.Model(inp, out), x


def _same(model, x, composite, layer_rules, base):
    got = Analyzer(model, composite, positive_output=False).analyze(x, neuron_selection=1)
    expected = Analyzer(model, base, layer_rules=layer_rules, positive_output=False).analyze(x, neuron_selection=1)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    plain = Analyzer(model, base, positive_output=False).analyze(x, neuron_selection=1)
    assert np.abs(got - plain).max() > 1e-4 * np.abs(plain).max()  # the selection changed something


def test_names_first_and_classes(branches):
    model, x = branches
    base = composites.Composite({"kernel": rules.Z()})
    _same(model, x, composites.Composite({"kernel": rules.Z()}, names={"top": rules.Epsilon(0.5)}),
          {"top": rules.Epsilon(0.5)}, base)
    _same(model, x, composites.Composite({"kernel": rules.Z()}, first={"kernel": rules.Flat()}),
          {"a": rules.Flat(), "b": rules.Flat()}, base)
    _same(model, x, composites.Composite({"kernel": rules.Z()}, first={"kernel": rules.Flat()}, first_layer="one"),
          {"a": rules.Flat()}, base)
    _same(model, x, composites.Composite({keras.layers.Dense: rules.Gamma(1.0)}),
          {"a": rules.Gamma(1.0), "b": rules.Gamma(1.0), "top": rules.Gamma(1.0)}, base)


def test_bad_composites_say_what_is_wrong(branches):
    model, _ = branches
    with pytest.raises(ValueError, match="unknown layer kind 'dense'"):
        composites.Composite({"dense": rules.Z()})
    with pytest.raises(TypeError, match="not a keras_dtd.rules.Rule"):
        composites.Composite({"kernel": "Z"})
    with pytest.raises(ValueError, match="first_layer"):
        composites.Composite({"kernel": rules.Z()}, first_layer="first")
    with pytest.raises(UnsupportedLayerError, match="no rule for layer 'a'"):
        LRP(model, composites.Composite({"pool": rules.Z()}))
    with pytest.raises(ValueError, match="either a composite or rule"):
        LRP(model, composites.EpsilonPlus(), first_rule=rules.Flat())
