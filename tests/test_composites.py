"""Composites: selection by name, position, class and kind, and their errors."""

import keras
import numpy as np
import pytest

from keras_dtd import DTD, LRP, Analyzer, UnsupportedLayerError, composites, rules


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
    expected = Analyzer(model, base, layer_rules=layer_rules, positive_output=False).analyze(
        x, neuron_selection=1
    )
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    plain = Analyzer(model, base, positive_output=False).analyze(x, neuron_selection=1)
    assert np.abs(got - plain).max() > 1e-4 * np.abs(plain).max()  # the selection changed something


def test_names_first_and_classes(branches):
    model, x = branches
    base = composites.Composite({"kernel": rules.Z()})
    _same(
        model,
        x,
        composites.Composite({"kernel": rules.Z()}, names={"top": rules.Epsilon(0.5)}),
        {"top": rules.Epsilon(0.5)},
        base,
    )
    _same(
        model,
        x,
        composites.Composite({"kernel": rules.Z()}, first={"kernel": rules.Flat()}),
        {"a": rules.Flat(), "b": rules.Flat()},
        base,
    )
    _same(
        model,
        x,
        composites.Composite({"kernel": rules.Z()}, first={"kernel": rules.Flat()}, first_layer="one"),
        {"a": rules.Flat()},
        base,
    )
    _same(
        model,
        x,
        composites.Composite({keras.layers.Dense: rules.Gamma(1.0)}),
        {"a": rules.Gamma(1.0), "b": rules.Gamma(1.0), "top": rules.Gamma(1.0)},
        base,
    )


def test_bad_composites_say_what_is_wrong(branches):
    model, _ = branches
    with pytest.raises(ValueError, match="unknown layer kind 'dense'"):
        composites.Composite({"dense": rules.Z()})
    with pytest.raises(TypeError, match="not a keras_dtd.rules.Rule"):
        composites.Composite({"kernel": "Z"})
    with pytest.raises(ValueError, match="first_layer"):
        composites.Composite({"kernel": rules.Z()}, first_layer="first")
    with pytest.raises(UnsupportedLayerError, match="no rule for layer 'top'"):
        LRP(model, composites.Composite({"pool": rules.Z()}))
    with pytest.raises(ValueError, match="either a composite or rule"):
        LRP(model, composites.EpsilonPlus(), first_rule=rules.Flat())


def test_z_plus_skips_its_sign_aware_part_only_where_the_rules_allow():
    """Before an Add that feeds a ReLU, DTD's z⁺ sends relevance to positive summands only, so
    the convolution before it needs no sign-aware z⁺; with LRP-0 on the Add it does."""
    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="c1")(inp)
    r = keras.layers.Conv2D(2, 3, padding="same", name="c2")(h)
    out = keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.ReLU()(keras.layers.Add()([h, r]))))
    model = keras.Model(inp, out)

    def c2(analyzer):
        return next(n for n in analyzer.graph.nodes if n.path == "c2")

    assert c2(DTD(model)).rectified
    z_on_add = composites.Composite({"kernel": rules.ZPlus(), "add": rules.Z()})
    assert not c2(Analyzer(model, z_on_add)).rectified
    x = np.random.default_rng(0).uniform(-1, 1, (4, 6, 6, 2)).astype("float32")
    explanation = Analyzer(model, z_on_add, positive_output=False).explain(x)
    np.testing.assert_allclose(
        explanation.relevance.reshape(4, -1).sum(1), explanation.target, rtol=1e-4, atol=1e-6
    )
