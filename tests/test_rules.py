"""Each rule against a float64 numpy replica of its formula, on single layers."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from replica import convention_relevance, layer_matrix, proportional, rule_relevance

from keras_dtd import Analyzer, ZeroRelevanceWarning, rules
from keras_dtd.composites import Uniform

F64 = "float64"
F32 = "float32"

KERNEL_LAYERS = {
    "dense": ((7,), lambda: keras.layers.Dense(5, dtype=F64)),
    "conv1d_strided_same": ((9, 2), lambda: keras.layers.Conv1D(3, 3, strides=2, padding="same", dtype=F64)),
    "conv1d_causal_dilated": (
        (8, 2),
        lambda: keras.layers.Conv1D(2, 2, padding="causal", dilation_rate=2, dtype=F64),
    ),
    "conv2d_strided_valid": ((6, 5, 2), lambda: keras.layers.Conv2D(3, (3, 2), strides=(2, 1), dtype=F64)),
    "conv2d_same_dilated": (
        (6, 6, 1),
        lambda: keras.layers.Conv2D(2, 3, padding="same", dilation_rate=2, dtype=F64),
    ),
    "conv3d_same": ((4, 3, 3, 2), lambda: keras.layers.Conv3D(2, 2, padding="same", dtype=F64)),
    "conv2d_grouped": ((5, 5, 4), lambda: keras.layers.Conv2D(6, 3, groups=2, padding="same", dtype=F64)),
    "conv2d_group_per_channel": (
        (5, 5, 3),
        lambda: keras.layers.Conv2D(6, 3, groups=3, strides=2, dtype=F64),
    ),
    "depthwise1d_strided": (
        (8, 3),
        lambda: keras.layers.DepthwiseConv1D(3, strides=2, depth_multiplier=2, dtype=F64),
    ),
    "depthwise2d_same": (
        (6, 5, 2),
        lambda: keras.layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same", dtype=F64),
    ),
    "depthwise2d_dilated": ((7, 7, 2), lambda: keras.layers.DepthwiseConv2D(3, dilation_rate=2, dtype=F64)),
    "conv1d_transpose": ((5, 2), lambda: keras.layers.Conv1DTranspose(3, 3, strides=2, dtype=F64)),
    "conv2d_transpose_same": (
        (4, 3, 2),
        lambda: keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same", dtype=F64),
    ),
    "conv2d_transpose_output_padding": (
        (3, 3, 1),
        lambda: keras.layers.Conv2DTranspose(2, 3, strides=2, output_padding=1, dtype=F64),
    ),
    "conv3d_transpose": (
        (3, 2, 2, 1),
        lambda: keras.layers.Conv3DTranspose(2, 2, strides=(2, 1, 1), dtype=F64),
    ),
}

LOW, HIGH = -1.5, 2.0

RULES = {
    "z": (rules.Z(), {}),
    "zplus": (rules.ZPlus(), {}),
    "wsquare": (rules.WSquare(), {}),
    "flat": (rules.Flat(), {}),
    "gamma": (rules.Gamma(0.5), {"gamma": 0.5}),
    "epsilon": (rules.Epsilon(0.1), {"epsilon": 0.1}),
    "alphabeta": (rules.AlphaBeta(2.0, 1.0), {"alpha": 2.0, "beta": 1.0}),
    "zbox": (rules.ZBox(LOW, HIGH), {}),
}


def _single_layer_model(shape, layer):
    inp = keras.Input(shape, dtype=F64)
    return keras.Model(inp, keras.layers.Flatten(dtype=F64)(layer(inp)))


def _random_bias(layer):
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, np.random.uniform(-0.5, 0.5, bias.shape)])


@pytest.mark.parametrize("layer_name", list(KERNEL_LAYERS))
@pytest.mark.parametrize("rule_name", list(RULES))
def test_kernel_rule_matches_numpy(layer_name, rule_name):
    shape, make = KERNEL_LAYERS[layer_name]
    layer = make()
    model = _single_layer_model(shape, layer)
    _random_bias(layer)
    rule, params = RULES[rule_name]
    x = np.random.uniform(LOW, HIGH, (3,) + shape)

    analyzer = Analyzer(model, Uniform(rule))
    relevance = analyzer.analyze(x, neuron_selection="all")

    m, b = layer_matrix(lambda a: model.predict_on_batch(a), shape)
    for xs, rs in zip(x, relevance):
        r_out = np.maximum(model.predict_on_batch(xs[None])[0], 0)
        d = xs.size
        expected = rule_relevance(
            rule_name, xs.ravel(), m, r_out, bias=b, low=np.full(d, LOW), high=np.full(d, HIGH), **params
        )
        np.testing.assert_allclose(rs.ravel(), expected, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("rule_name", list(RULES))
def test_separable_conv_is_a_depthwise_then_a_pointwise_map(rule_name):
    shape = (6, 6, 2)
    layer = keras.layers.SeparableConv2D(3, 3, strides=2, depth_multiplier=2, padding="same", dtype=F64)
    model = _single_layer_model(shape, layer)
    depthwise, pointwise, bias = layer.get_weights()
    layer.set_weights([depthwise, pointwise, np.random.uniform(-0.5, 0.5, bias.shape)])
    rule, params = RULES[rule_name]
    x = np.random.uniform(LOW, HIGH, (2,) + shape)
    relevance = Analyzer(model, Uniform(rule)).analyze(x, neuron_selection="all")

    def depthwise_map(a):
        return keras.ops.depthwise_conv(a, depthwise, strides=2, padding="same").numpy()

    m1, _ = layer_matrix(depthwise_map, shape)
    m2, b2 = layer_matrix(lambda h: keras.ops.conv(h, pointwise).numpy() + layer.bias.numpy(), (3, 3, 4))
    for xs, rs in zip(x, relevance):
        h = xs.ravel() @ m1
        r_out = np.maximum(h @ m2 + b2, 0)
        r_h = rule_relevance(
            rule_name, h, m2, r_out, bias=b2, low=np.full(h.size, LOW), high=np.full(h.size, HIGH), **params
        )
        expected = rule_relevance(
            rule_name,
            xs.ravel(),
            m1,
            r_h,
            bias=np.zeros(h.size),
            low=np.full(xs.size, LOW),
            high=np.full(xs.size, HIGH),
            **params,
        )
        np.testing.assert_allclose(rs.ravel(), expected, rtol=1e-5, atol=1e-8)


def test_zbox_per_feature_bounds_from_input_range():
    shape = (5, 4, 2)
    layer = keras.layers.Conv2D(3, 2, strides=2, padding="same", dtype=F64)
    model = _single_layer_model(shape, layer)
    low = np.random.uniform(-1, 0, shape)
    high = np.random.uniform(0.5, 2, shape[1:])  # broadcast over the first axis
    x = np.random.uniform(low, high, (2,) + shape)
    analyzer = Analyzer(model, Uniform(rules.ZBox()), input_range=(low, high))
    relevance = analyzer.analyze(x, neuron_selection="all")
    m, _ = layer_matrix(lambda a: model.predict_on_batch(a), shape)
    hi = np.broadcast_to(high, shape).ravel()
    for xs, rs in zip(x, relevance):
        r_out = np.maximum(model.predict_on_batch(xs[None])[0], 0)
        expected = rule_relevance("zbox", xs.ravel(), m, r_out, low=low.ravel(), high=hi)
        np.testing.assert_allclose(rs.ravel(), expected, rtol=1e-5, atol=1e-8)
        assert rs.min() >= -1e-12  # z^B is positive for low <= x <= high


def test_zplus_on_relu_inputs_uses_only_positive_weights():
    inp = keras.Input((6,), dtype=F64)
    dense = keras.layers.Dense(4, dtype=F64)
    model = keras.Model(inp, dense(keras.layers.ReLU(dtype=F64)(inp)))
    x = np.random.normal(size=(4, 6))
    relevance = Analyzer(model, Uniform(rules.ZPlus())).analyze(x, neuron_selection="all")
    w = dense.get_weights()[0]
    for xs, rs in zip(x, relevance):
        r_out = np.maximum(model.predict_on_batch(xs[None])[0], 0)
        expected = rule_relevance("z", np.maximum(xs, 0), np.maximum(w, 0), r_out)
        np.testing.assert_allclose(rs, expected, rtol=1e-5, atol=1e-10)


POOL_LAYERS = {
    "avg2d": ((6, 6, 2), lambda: keras.layers.AveragePooling2D(2, dtype=F64)),
    "avg2d_same_overlap": (
        (5, 5, 1),
        lambda: keras.layers.AveragePooling2D(3, strides=2, padding="same", dtype=F64),
    ),
    "avg1d": ((7, 2), lambda: keras.layers.AveragePooling1D(2, dtype=F64)),
    "avg3d": ((4, 4, 2, 1), lambda: keras.layers.AveragePooling3D(2, dtype=F32)),  # no float64 kernel on CPU
    "global_avg2d": ((3, 4, 2), lambda: keras.layers.GlobalAveragePooling2D(dtype=F64)),
}

MAX_LAYERS = {
    "max2d": (
        (6, 6, 2),
        lambda: keras.layers.MaxPooling2D(2, dtype=F64),
        lambda: keras.layers.AveragePooling2D(2, dtype=F64),
    ),
    "max2d_same_overlap": (
        (5, 5, 1),
        lambda: keras.layers.MaxPooling2D(3, strides=2, padding="same", dtype=F64),
        lambda: keras.layers.AveragePooling2D(3, strides=2, padding="same", dtype=F64),
    ),
    "max1d": (
        (7, 2),
        lambda: keras.layers.MaxPooling1D(2, dtype=F64),
        lambda: keras.layers.AveragePooling1D(2, dtype=F64),
    ),
    "max3d": (
        (4, 4, 2, 1),
        lambda: keras.layers.MaxPooling3D(2, dtype=F32),
        lambda: keras.layers.AveragePooling3D(2, dtype=F32),
    ),
    "global_max1d": (
        (5, 3),
        lambda: keras.layers.GlobalMaxPooling1D(dtype=F64),
        lambda: keras.layers.GlobalAveragePooling1D(dtype=F64),
    ),
}


def _pool_model(shape, layer):
    dtype = layer.dtype_policy.variable_dtype
    inp = keras.Input(shape, dtype=dtype)
    return keras.Model(inp, keras.layers.Flatten(dtype=dtype)(layer(inp)))


@pytest.mark.parametrize("name", list(POOL_LAYERS))
def test_average_pooling_is_proportional_to_positive_inputs(name):
    shape, make = POOL_LAYERS[name]
    model = _pool_model(shape, make())
    x = np.random.normal(size=(3,) + shape)
    relevance = Analyzer(model, Uniform(rules.ZPlus())).analyze(x, neuron_selection="all")
    m, _ = layer_matrix(lambda a: model.predict_on_batch(a), shape)
    for xs, rs in zip(x, relevance):
        r_out = np.maximum(model.predict_on_batch(xs[None])[0], 0)
        expected = rule_relevance("zplus", xs.ravel(), m, r_out)
        np.testing.assert_allclose(rs.ravel(), expected, rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("name", list(MAX_LAYERS))
def test_max_pooling_is_winner_take_all(name):
    shape, make, make_windows = MAX_LAYERS[name]
    model = _pool_model(shape, make())
    windows, _ = layer_matrix(lambda a: _pool_model(shape, make_windows())(a).numpy(), shape)
    x = np.random.normal(size=(3,) + shape)
    relevance = Analyzer(model, Uniform(rules.ZPlus())).analyze(x, neuron_selection="all")
    for xs, rs in zip(x, relevance):
        r_out = np.maximum(model.predict_on_batch(xs[None])[0], 0)
        expected = np.zeros(xs.size)
        for j in range(windows.shape[1]):
            members = np.flatnonzero(windows[:, j])
            expected[members[np.argmax(xs.ravel()[members])]] += r_out[j]
        np.testing.assert_allclose(rs.ravel(), expected, rtol=1e-5, atol=1e-10)


def test_add_is_proportional_to_positive_summands_and_concatenate_splits():
    a, b = keras.Input((4,), dtype=F64), keras.Input((4,), dtype=F64)
    added = keras.layers.Add(dtype=F64)([a, b])
    model = keras.Model([a, b], keras.layers.Concatenate(dtype=F64)([added, b]))
    xa, xb = np.random.normal(size=(5, 4)), np.random.normal(size=(5, 4))
    ra, rb = Analyzer(model, Uniform(rules.ZPlus())).analyze([xa, xb], neuron_selection="all")
    r_sum = np.maximum(xa + xb, 0)
    total = np.maximum(xa, 0) + np.maximum(xb, 0)
    share = np.divide(r_sum, total, out=np.zeros_like(total), where=total != 0)
    np.testing.assert_allclose(ra, np.maximum(xa, 0) * share, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(rb, np.maximum(xb, 0) * share + np.maximum(xb, 0), rtol=1e-5, atol=1e-12)


def test_zero_denominator_gives_zero_not_nan():
    inp = keras.Input((3,), dtype=F64)
    dense = keras.layers.Dense(2, dtype=F64)
    model = keras.Model(inp, dense(inp))
    dense.set_weights([-np.abs(np.random.normal(size=(3, 2))), np.array([5.0, 5.0])])
    x = np.abs(np.random.normal(size=(2, 3)))  # x >= 0, w <= 0: z⁺ = 0 while f = 5 + ... > 0
    relevance = Analyzer(model, Uniform(rules.ZPlus())).analyze(x, neuron_selection=0)
    assert np.all(np.isfinite(relevance)) and np.all(relevance == 0)


@pytest.mark.parametrize("share", [1e-2, 1e-6])
def test_zplus_bias_flipped_output_with_vanishing_matching_share(share):
    """y > 0 only through the bias, and one contribution of the 64 is positive, ``share`` of
    Σ|x w|: above √eps (float32: 3.5e-4) it takes all the relevance (exact z⁺); below, the
    matching contributions are rounding noise of the |·| form and count as none."""
    n = 64
    inp = keras.Input((n,))
    dense = keras.layers.Dense(1)
    model = keras.Model(inp, dense(inp))
    x = np.where(np.arange(n) % 2 == 0, 1.0, -1.0).astype("float32")[None]
    w = -x[0] * np.random.default_rng(0).uniform(0.5, 1.5, n)  # every x_i w_i < 0 ...
    w[0] = share * np.abs(w).sum()  # ... but the first
    dense.set_weights([w[:, None].astype("float32"), np.array([10.0 * np.abs(w).sum()], "float32")])
    relevance = Analyzer(model, Uniform(rules.ZPlus())).analyze(x, neuron_selection=0)[0]
    f = float(model.predict_on_batch(x)[0, 0])
    expected = np.zeros(n)
    if share > 1e-3:
        expected[0] = f
    np.testing.assert_allclose(relevance, expected, rtol=1e-4, atol=1e-6 * f)


@pytest.mark.parametrize("layer_name", ["dense", "conv"])
@pytest.mark.parametrize("scales", [(1.0, 0.5, 2.0, 1.5), (1.0, -1.0, 0.5, -2.0)])
def test_zplus_before_a_batch_norm_whose_scale_decides_the_sign(layer_name, scales):
    """A kernel layer on ReLU inputs feeding a BatchNormalization through a move (as in DenseNet):
    z⁺ on the BatchNorm passes R_j where y_j s_j > 0, so relevance reaches outputs y_j < 0 of
    the kernel layer exactly where s_j < 0, which is known at run time only. There z⁺ takes
    q_ij = (x_i w_ij)⁻; with positive scales the negative side never runs."""
    shape = (5,) if layer_name == "dense" else (4, 4, 2)
    kernel_layer = (
        keras.layers.Dense(4, dtype=F64)
        if layer_name == "dense"
        else keras.layers.Conv2D(4, 3, strides=2, padding="same", dtype=F64)
    )
    batch_norm = keras.layers.BatchNormalization(dtype=F64)
    inp = keras.Input(shape, dtype=F64)
    hidden = kernel_layer(keras.layers.ReLU(dtype=F64)(inp))
    moved = keras.layers.Reshape(hidden.shape[1:], dtype=F64)(hidden)  # a move (DenseNet: Concatenate)
    model = keras.Model(inp, keras.layers.Flatten(dtype=F64)(keras.layers.ReLU(dtype=F64)(batch_norm(moved))))
    _random_bias(kernel_layer)
    batch_norm.set_weights([np.array(scales), np.zeros(4), np.zeros(4), np.ones(4) - 1e-3])  # s = γ
    x = np.random.uniform(-1, 2, (16,) + shape)

    with warnings.catch_warnings():  # some samples have all outputs ≤ 0
        warnings.simplefilter("ignore", ZeroRelevanceWarning)
        analyzer = Analyzer(model, Uniform(rules.ZPlus()))
        relevance = analyzer.analyze(x, neuron_selection="all")
    assert next(n for n in analyzer.graph.nodes if n.layer is kernel_layer).maybe_rectified

    inner = keras.Model(inp, keras.layers.Flatten(dtype=F64)(hidden))
    m, b = layer_matrix(lambda a: inner.predict_on_batch(np.maximum(a, 0)), shape)
    reached_below = False
    for xs, rs in zip(x, relevance):
        a = np.maximum(xs.ravel(), 0)
        y = a @ m + b
        s = np.tile(scales, y.size // 4)  # channels last: the scale of output j is scales[j % 4]
        r_y = np.maximum(y * s, 0) * (y * s > 0)  # R at the BatchNorm's output, passed where y s > 0
        contributions = a[:, None] * m
        q = np.where(y[None, :] >= 0, np.maximum(contributions, 0), np.minimum(contributions, 0))
        np.testing.assert_allclose(rs.ravel(), proportional(q, r_y), rtol=1e-7, atol=1e-12)
        reached_below |= bool(np.any((y < 0) & (r_y > 0)))
    assert reached_below == (min(scales) < 0)


CONVENTION_LAYERS = ("dense", "conv2d_strided_valid", "conv1d_strided_same")
CONVENTION_RULES = {  # name in replica.convention_relevance: rule with the bias, rule without it
    "z": lambda **kw: rules.Z(**kw),
    "zplus": lambda **kw: rules.ZPlus(**kw),
    "alphabeta": lambda **kw: rules.AlphaBeta(2.0, 1.0, **kw),
    "wsquare": lambda **kw: rules.WSquare(**kw),
    "gamma": lambda **kw: rules.Gamma(0.25, **kw),
    "gamma_sign_aware": lambda **kw: rules.Gamma(0.25, sign_aware=True, **kw),
}


@pytest.mark.parametrize("layer_name", CONVENTION_LAYERS)
@pytest.mark.parametrize("rule_name", list(CONVENTION_RULES))
@pytest.mark.parametrize("bias", ["ignore", "include"])
@pytest.mark.parametrize("stabilizer", [None, 0.05])
def test_bias_policy_and_stabilizer_match_numpy(layer_name, rule_name, bias, stabilizer):
    shape, make = KERNEL_LAYERS[layer_name]
    layer = make()
    model = _single_layer_model(shape, layer)
    _random_bias(layer)
    rule = CONVENTION_RULES[rule_name](bias=bias, stabilizer=stabilizer)
    x = np.random.uniform(LOW, HIGH, (3,) + shape)
    relevance = Analyzer(model, Uniform(rule), positive_output=False).analyze(x, neuron_selection="all")
    m, b = layer_matrix(lambda a: model.predict_on_batch(a), shape)
    for xs, rs in zip(x, relevance):
        r_out = model.predict_on_batch(xs[None])[0]
        expected = convention_relevance(rule_name, xs.ravel(), m, b, r_out, bias == "include", stabilizer)
        np.testing.assert_allclose(rs.ravel(), expected, rtol=1e-6, atol=1e-9)


def _bias_free_net():
    inp = keras.Input((6, 6, 2), dtype=F64)
    h = keras.layers.Conv2D(4, 3, activation="relu", use_bias=False, dtype=F64)(inp)
    h = keras.layers.AveragePooling2D(2, dtype=F64)(h)
    h = keras.layers.Flatten(dtype=F64)(h)
    h = keras.layers.Dense(5, activation="relu", use_bias=False, dtype=F64)(h)
    return keras.Model(inp, keras.layers.Dense(3, use_bias=False, dtype=F64)(h))


def test_epsilon_to_zero_approaches_z():
    model = _bias_free_net()
    x = np.random.uniform(-1, 1, (4, 6, 6, 2))
    z = Analyzer(model, Uniform(rules.Z()), positive_output=False).analyze(x)
    gaps = [
        np.abs(Analyzer(model, Uniform(rules.Epsilon(eps)), positive_output=False).analyze(x) - z).max()
        for eps in (1e-2, 1e-5, 1e-8)
    ]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-5 * np.abs(z).max()


def test_alpha1_beta0_without_bias_equals_zplus():
    model = _bias_free_net()
    x = np.random.uniform(-1, 1, (4, 6, 6, 2))
    ab = Analyzer(model, Uniform(rules.AlphaBeta(1.0, 0.0))).analyze(x)
    zplus = Analyzer(model, Uniform(rules.ZPlus())).analyze(
        x
    )  # positive start: relevance only at outputs ≥ 0
    np.testing.assert_allclose(ab, zplus, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "rule",
    [
        rules.Z(),
        rules.ZPlus(),
        rules.WSquare(),
        rules.Flat(),
        rules.Gamma(0.5),
        rules.Gamma(0.5, sign_aware=True),
        rules.ZBox(-1, 1),
    ],
    ids=repr,
)
def test_conservation_on_a_bias_free_net(rule):
    """Rules whose denominators are the sums of their numerators conserve relevance layer by
    layer. (αβ conserves only where an output has both positive and negative contributions;
    average pooling of ReLU outputs has none of the latter.)"""
    model = _bias_free_net()
    x = np.random.uniform(-1, 1, (4, 6, 6, 2))
    explanation = Analyzer(model, Uniform(rule), positive_output=False).explain(x)
    sums = explanation.relevance.reshape(4, -1).sum(axis=1)
    np.testing.assert_allclose(sums, explanation.target, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("rule_name", list(RULES))
def test_standalone_batch_norm_matches_numpy(rule_name):
    """A BatchNormalization no kernel layer absorbs is a diagonal map x·s + t."""
    shape = (3, 4, 5)
    layer = keras.layers.BatchNormalization(dtype=F64)
    model = _single_layer_model(shape, layer)
    rng = np.random.default_rng(0)
    layer.set_weights(
        [rng.uniform(-1.5, 1.5, 5), rng.normal(0, 0.5, 5), rng.normal(0, 0.5, 5), rng.uniform(0.5, 2, 5)]
    )
    rule, params = RULES[rule_name]
    x = rng.uniform(LOW, HIGH, (3,) + shape)
    relevance = Analyzer(model, Uniform(rule), positive_output=False).analyze(x, neuron_selection="all")
    m, b = layer_matrix(lambda a: model.predict_on_batch(a), shape)
    assert np.count_nonzero(m) == x[0].size  # diagonal
    for xs, rs in zip(x, relevance):
        r_out = model.predict_on_batch(xs[None])[0]
        d = xs.size
        expected = rule_relevance(
            rule_name, xs.ravel(), m, r_out, bias=b, low=np.full(d, LOW), high=np.full(d, HIGH), **params
        )
        np.testing.assert_allclose(rs.ravel(), expected, rtol=1e-6, atol=1e-9)


class PositiveContributions(rules.Proportional):
    """A rule written as a user would: q_ij = x_i⁺ w_ij⁺ + x_i⁻ w_ij⁻ = (x_i w_ij)⁺, with weight
    modifiers of its own (not keras_dtd's)."""

    def terms(self, call):
        positive, negative = call.signed_inputs
        return [(positive, lambda w: tf.nn.relu(w)), (negative, lambda w: tf.minimum(w, tf.zeros_like(w)))]


USER_RULE_LAYERS = {  # the layer after the input; signed inputs, so the x⁻·W⁻ term matters
    "dense": ((7,), lambda: keras.layers.Dense(5, dtype=F64)),
    "conv2d": ((5, 5, 2), lambda: keras.layers.Conv2D(3, 3, strides=2, dtype=F64)),
    "average_pooling": ((4, 4, 2), lambda: keras.layers.AveragePooling2D(2, dtype=F64)),
    "global_average_pooling": ((5, 3), lambda: keras.layers.GlobalAveragePooling1D(dtype=F64)),
    "add": ((4,), None),
}


def _add_model():
    inp = keras.Input((4,), dtype=F64)
    return keras.Model(inp, keras.layers.Add(dtype=F64)([inp, keras.layers.Rescaling(0.5, dtype=F64)(inp)]))


@pytest.mark.parametrize("name", list(USER_RULE_LAYERS))
def test_a_users_proportional_rule_with_a_negative_weight_modifier(name):
    shape, make = USER_RULE_LAYERS[name]
    model = _add_model() if make is None else _pool_model(shape, make())
    x = np.random.default_rng(0).normal(size=(3,) + shape)
    m, b = layer_matrix(lambda a: model.predict_on_batch(a), shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroRelevanceWarning)
        relevance = Analyzer(model, Uniform(PositiveContributions())).analyze(x, neuron_selection="all")
    for xs, rs in zip(x, relevance):
        r_out = np.maximum(xs.ravel() @ m + b, 0)  # every output, max(f, 0) as Analyzer starts
        expected = proportional(np.maximum(xs.ravel()[:, None] * m, 0), r_out)  # (x w)⁺; W ≥ 0 on pools
        np.testing.assert_allclose(rs.ravel(), expected, rtol=1e-10, atol=1e-12)
