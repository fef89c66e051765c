"""keras_dtd.check: sums, negative share and the first layer that loses relevance."""

import keras
import numpy as np
import pytest
import replica

import keras_dtd
from keras_dtd import rules


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(3)
    inp = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(inp)
    model = keras.Model(inp, keras.layers.Dense(3, name="top")(hidden))
    for layer in model.layers[1:]:
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, np.random.default_rng(1).uniform(0.2, 0.5, bias.shape).astype("float32")])
    x = np.random.default_rng(0).uniform(-1, 1, (4, 6)).astype("float32")
    return model, x


def test_dtd_is_reported_conservative_and_positive(net):
    model, x = net
    report = keras_dtd.check(keras_dtd.DTD(model), x)
    assert report.conservative.all() and report.first_loss == [None] * 4
    np.testing.assert_allclose(report.negative_share, 0)
    np.testing.assert_allclose(
        report.target, np.maximum(model.predict(x, verbose=0).max(axis=1), 0), rtol=1e-5
    )  # float32 outputs of two code paths: a few ulps apart


def test_epsilon_loss_is_located_at_the_top_layer_with_its_amount(net):
    model, x = net
    eps = 0.5
    report = keras_dtd.check(keras_dtd.LRP(model, rules.Epsilon(eps)), x, neuron_selection=1)
    f = model.predict(x, verbose=0)[:, 1]
    bias = model.get_layer("top").get_weights()[1][1]
    passed = f * (f - bias) / (f + eps * np.where(f >= 0, 1.0, -1.0))  # Σ_i x_i w_i1 · f / (z + b + ε sign)
    assert not report.conservative.any()
    for k, (path, lost, cause) in enumerate(report.first_loss):
        assert path == "top" and "ε" in cause
        np.testing.assert_allclose(lost, f[k] - passed[k], rtol=1e-4)
    np.testing.assert_allclose(report.target, f, rtol=1e-5)  # LRP explains the signed output
    # the sums against a float64 replica of LRP-ε through both layers (ε = 0.5 bounds every denominator
    # away from 0, so float32 rounding stays near 1e-6 of |f|)
    (w1, b1), (w2, b2) = (model.get_layer(name).get_weights() for name in ("hidden", "top"))
    for k, xk in enumerate(x.astype(np.float64)):
        h = np.maximum(xk @ w1 + b1, 0)
        top = np.where(np.arange(3) == 1, h @ w2 + b2, 0)
        hidden = replica.rule_relevance("epsilon", h, w2, top, bias=b2, epsilon=eps)
        total = replica.rule_relevance("epsilon", xk, w1, hidden, bias=b1, epsilon=eps).sum()
        np.testing.assert_allclose(report.relevance_sum[k], total, rtol=0, atol=1e-5 * np.abs(f).max())
        np.testing.assert_allclose(report.error[k], total - f[k], rtol=0, atol=1e-5 * np.abs(f).max())
    assert "top" in str(report)


def test_gradient_has_sums_but_no_layers(net):
    model, x = net
    report = keras_dtd.check(keras_dtd.Gradient(model), x)
    grads = keras_dtd.Gradient(model).analyze(x)
    # each float32 element may move by a few ulps between two runs or kernels (8 ulps: 8 · 2⁻²⁴ < 1e-6 of
    # itself), so the float64 sums agree within 1e-6 · Σ|g|, however much the signed terms cancel
    g = grads.astype(np.float64)
    np.testing.assert_allclose(
        report.relevance_sum, g.sum(axis=1), rtol=0, atol=1e-6 * np.abs(g).sum(axis=1).max()
    )
    assert np.all(np.abs(report.error) > 0.1)  # a gradient does not sum to the output: the report says so
    assert report.first_loss == [None] * 4
