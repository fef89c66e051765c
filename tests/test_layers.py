"""Layers beyond Dense/Conv against closed-form numpy: LayerNormalization, gates, Embedding,
merges, keras.ops graphs, and kernel layers that see model inputs mixed with hidden units."""

import warnings

import keras
import numpy as np
import pytest
from replica import proportional, rule_relevance
from test_rules import HIGH, LOW, RULES

import keras_dtd
from keras_dtd import DTD, Analyzer, rules
from keras_dtd.composites import Uniform
from keras_dtd.core.tracing import APPLICATION_LAYERS

F64 = "float64"
L = keras.layers


def _quiet(analyze, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.ZeroRelevanceWarning)
        return analyze(*args, **kwargs)


@pytest.mark.parametrize("rule_name", list(RULES))
def test_layer_norm_is_linear_with_sigma_held_constant(rule_name):
    n = 6
    layer = L.LayerNormalization(epsilon=1e-3, dtype=F64)
    inp = keras.Input((n,), dtype=F64)
    model = keras.Model(inp, layer(inp))
    layer.set_weights([np.random.uniform(-1.5, 1.5, n), np.random.uniform(-0.3, 0.3, n)])
    gamma, beta = layer.get_weights()
    rule, params = RULES[rule_name]
    x = np.random.uniform(LOW, HIGH, (3, n))
    relevance = _quiet(Analyzer(model, Uniform(rule)).analyze, x, neuron_selection="all")
    for xs, rs in zip(x, relevance):
        sigma = np.sqrt(xs.var() + 1e-3)
        m = (np.eye(n) - 1.0 / n) * gamma[None, :] / sigma  # m[i, j] = ∂z_j / ∂x_i
        out = xs @ m + beta
        np.testing.assert_allclose(model.predict_on_batch(xs[None])[0], out, rtol=1e-6, atol=1e-9)
        expected = rule_relevance(
            rule_name,
            xs,
            m,
            np.maximum(out, 0),
            bias=beta,
            low=np.full(n, LOW),
            high=np.full(n, HIGH),
            **params,
        )
        np.testing.assert_allclose(rs, expected, rtol=1e-5, atol=1e-8)


def _gated(shape=(4, 4, 3)):
    """Squeeze-excitation: x ⊙ sigmoid(Dense(GAP(x))), the gate found automatically."""
    inp = keras.Input(shape, dtype=F64)
    squeezed = L.GlobalAveragePooling2D(dtype=F64)(inp)
    gate = L.Reshape((1, 1, shape[-1]), dtype=F64)(
        L.Dense(shape[-1], activation="sigmoid", dtype=F64)(squeezed)
    )
    return keras.Model(inp, L.Flatten(dtype=F64)(L.Multiply(dtype=F64)([inp, gate])))


def test_gate_keeps_relevance_on_the_signal():
    model = _gated()
    x = np.random.normal(size=(3, 4, 4, 3))
    relevance = _quiet(Analyzer(model, Uniform(rules.Z())).analyze, x, neuron_selection="all")
    # the product's relevance max(x·g, 0) stays with x; the gate's branch gets nothing
    np.testing.assert_allclose(relevance.reshape(3, -1), np.maximum(model.predict_on_batch(x), 0), rtol=1e-7)


def test_gate_chosen_by_name_and_ambiguous_gates_are_refused():
    inp = keras.Input((5,), dtype=F64)
    a = L.Dense(5, activation="sigmoid", name="a", dtype=F64)(inp)
    b = L.Dense(5, activation="sigmoid", name="b", dtype=F64)(inp)
    model = keras.Model(inp, L.Dense(2, dtype=F64)(L.Multiply(name="both", dtype=F64)([a, b])))
    with pytest.raises(keras_dtd.UnsupportedLayerError, match="gates=\\{'both'"):
        DTD(model)
    x = np.random.uniform(0, 1, (4, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.NonReLUWarning)
        named = Analyzer(model, Uniform(rules.Z()), gates={"both": "b"})
    _, layers = _quiet(named.analyze, x, neuron_selection=0, return_layers=True)
    assert np.all(layers["b"] == 0)  # the gate gets nothing; the signal a keeps the product's relevance:
    gate_a, gate_b = keras.Model(inp, [model.get_layer("a").output, model.get_layer("b").output])(x)
    w, bias = model.layers[-1].get_weights()
    for k, p in enumerate(np.asarray(gate_a) * np.asarray(gate_b)):
        expected = proportional(
            p[:, None] * w[:, [0]], np.array([p @ w[:, 0] + bias[0]])
        )  # z rule, f₀ signed
        np.testing.assert_allclose(layers["a"][k], expected, rtol=1e-10)
    with pytest.raises(ValueError, match="'c' is not one of the two inputs"):
        Analyzer(model, Uniform(rules.Z()), gates={"both": "c"})


def test_embedding_relevance_of_a_token_sums_its_vector():
    tokens, dim, length = 7, 3, 5
    inp = keras.Input((length,), dtype="int32")
    embedding = L.Embedding(tokens, dim, dtype=F64)
    dense = L.Dense(2, dtype=F64)
    model = keras.Model(inp, dense(L.Flatten(dtype=F64)(embedding(inp))))
    x = np.random.randint(0, tokens, (4, length))
    relevance = _quiet(Analyzer(model, Uniform(rules.Epsilon(0.01))).analyze, x, neuron_selection="all")
    assert relevance.shape == x.shape and relevance.dtype == np.float64
    table = embedding.get_weights()[0]
    w, b = dense.get_weights()
    for xs, rs in zip(x, relevance):
        e = table[xs].ravel()
        r_e = rule_relevance("epsilon", e, w, np.maximum(e @ w + b, 0), bias=b, epsilon=0.01)
        np.testing.assert_allclose(rs, r_e.reshape(length, dim).sum(axis=1), rtol=1e-7)


MERGES = {  # layer, z-rule shares of the two inputs a, b (R = share · R_out)
    "subtract": (lambda: L.Subtract(dtype=F64), lambda a, b: (a / (a - b), -b / (a - b))),
    "average": (lambda: L.Average(dtype=F64), lambda a, b: (a / (a + b), b / (a + b))),
    "custom_scale": (
        lambda: APPLICATION_LAYERS["CustomScaleLayer"](0.3, dtype=F64),
        lambda a, b: (a / (a + 0.3 * b), 0.3 * b / (a + 0.3 * b)),
    ),
    "maximum": (lambda: L.Maximum(dtype=F64), lambda a, b: ((a >= b) * 1.0, (a < b) * 1.0)),
    "minimum": (lambda: L.Minimum(dtype=F64), lambda a, b: ((a <= b) * 1.0, (a > b) * 1.0)),
}


@pytest.mark.parametrize("name", list(MERGES))
def test_merges(name):
    make, shares = MERGES[name]
    a, b = keras.Input((6,), dtype=F64), keras.Input((6,), dtype=F64)
    model = keras.Model([a, b], make()([a, b]))
    xa, xb = np.random.normal(size=(4, 6)), np.random.normal(size=(4, 6))
    ra, rb = _quiet(Analyzer(model, Uniform(rules.Z())).analyze, [xa, xb], neuron_selection="all")
    r_out = np.maximum(model.predict_on_batch([xa, xb]), 0)
    share_a, share_b = shares(xa, xb)
    np.testing.assert_allclose(ra, share_a * r_out, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(rb, share_b * r_out, rtol=1e-6, atol=1e-12)


def _check_dtd(model, x, **kwargs):
    f = model.predict_on_batch(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.NonReLUWarning)
        relevance = _quiet(DTD(model, **kwargs).analyze, x)
    sums = relevance.reshape(len(x), -1).sum(axis=1)
    np.testing.assert_allclose(sums, np.maximum(f.max(axis=1), 0), rtol=1e-5, atol=1e-7)
    assert relevance.min() >= 0 and np.mean(sums > 0) >= 0.5
    return relevance


@pytest.mark.parametrize("bounded", [False, True], ids=["w2", "zB"])
def test_keras_ops_on_symbolic_tensors(bounded):
    inp = keras.Input((6, 6, 2))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = keras.ops.add(h, L.Conv2D(4, 1, activation="relu")(inp)) * 0.5 / 2.0  # scalar ops pass relevance on
    h = keras.ops.transpose(keras.ops.reshape(h, (-1, 36, 4)), (0, 2, 1))
    h = keras.ops.concatenate([keras.ops.mean(h, axis=-1), keras.ops.max(h, axis=-1)], axis=-1)
    out = keras.ops.matmul(
        keras.ops.relu(h), np.random.default_rng(0).uniform(-0.5, 1, (8, 3)).astype("float32")
    )
    model = keras.Model(inp, out)
    x = np.random.uniform(0, 1, (5, 6, 6, 2)).astype("float32")
    _check_dtd(model, x, **({"input_range": (0, 1)} if bounded else {}))


def test_unknown_operation_names_itself_and_layer_rules_fix_it():
    inp = keras.Input((4,))
    h = keras.ops.cumsum(L.Dense(4, activation="relu")(inp), axis=-1)
    model = keras.Model(inp, L.Dense(2, kernel_initializer="ones")(h))
    name = next(op.name for op in model.operations if "cumsum" in op.name)  # 'cumsum', or 'cumsum_k'
    with pytest.raises(
        keras_dtd.UnsupportedLayerError, match=f"Operation '{name}'.*keras.ops.cumsum.*layer_rules"
    ):
        DTD(model)
    _check_dtd(
        model, np.random.uniform(0, 1, (3, 4)).astype("float32"), layer_rules={name: rules.PassThrough()}
    )


@pytest.mark.parametrize("bounded", [False, True], ids=["w2", "zB"])
def test_kernel_layer_seeing_input_and_hidden_units(bounded):
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(3, 3, padding="same", activation="relu")(inp)
    h = L.Conv2D(4, 3, activation="relu")(L.Concatenate()([inp, h]))  # U-Net / DenseNet style
    h = L.Dense(5, activation="relu")(L.Concatenate()([L.Flatten()(inp), L.Flatten()(h)]))
    model = keras.Model(inp, L.Dense(3, bias_initializer="ones")(h))
    _check_dtd(
        model,
        np.random.uniform(0, 1, (6, 8, 8, 2)).astype("float32"),
        **({"input_range": (0, 1)} if bounded else {}),
    )


def test_mixed_input_zbox_is_zbox_on_inputs_and_zplus_on_hidden_units_in_one_denominator():
    d, k = 4, 3
    inp = keras.Input((d,), dtype=F64)
    first, last = L.Dense(k, activation="relu", dtype=F64), L.Dense(2, dtype=F64)
    model = keras.Model(inp, last(L.Concatenate(dtype=F64)([inp, first(inp)])))
    x = np.random.uniform(-1, 2, (5, d))
    relevance = _quiet(DTD(model, input_range=(-1, 2)).analyze, x, neuron_selection="all")
    w1, b1 = first.get_weights()
    w2, _ = last.get_weights()
    for xs, rs in zip(x, relevance):
        h = np.maximum(xs @ w1 + b1, 0)
        q_input = xs[:, None] * w2[:d] - (-1.0) * np.maximum(w2[:d], 0) - 2.0 * np.minimum(w2[:d], 0)  # z^B
        q_hidden = np.maximum(h[:, None] * w2[d:], 0)  # z⁺ (h >= 0)
        r_c = proportional(
            np.concatenate([q_input, q_hidden]), np.maximum(model.predict_on_batch(xs[None])[0], 0)
        )
        expected = r_c[:d] + rule_relevance(
            "zbox", xs, w1, r_c[d:], low=np.full(d, -1.0), high=np.full(d, 2.0)
        )
        np.testing.assert_allclose(rs, expected, rtol=1e-6, atol=1e-10)


class MyDense(L.Dense):
    """A Dense subclass that changes nothing it computes."""


class MyConv(L.Conv2D):
    pass


class ReversibleEmbedding(L.Embedding):
    """As KerasHub's: the embedding, or with ``reverse=True`` logits against its table."""

    def call(self, inputs, reverse=False):
        if reverse:
            return keras.ops.matmul(inputs, keras.ops.transpose(self.embeddings))
        return super().call(inputs)


def _token_model(embedding, dense):
    inp = keras.Input((4,), dtype="int32")
    return keras.Model(inp, dense(L.Flatten(dtype=F64)(embedding(inp))))


def _image_model(conv, dense):
    inp = keras.Input((6, 6, 2), dtype=F64)
    h = L.ReLU(dtype=F64)(L.BatchNormalization(dtype=F64)(conv(inp)))  # folded into the convolution
    return keras.Model(inp, dense(L.Flatten(dtype=F64)(h)))


def test_subclasses_of_known_layers_are_explained_like_their_parents():
    rng = np.random.default_rng(0)
    tokens, pixels = rng.integers(0, 9, (5, 4)), rng.uniform(0, 1, (5, 6, 6, 2))
    pairs = [
        (_token_model, (ReversibleEmbedding, L.Embedding, {"input_dim": 9, "output_dim": 3}), tokens),
        (_image_model, (MyConv, L.Conv2D, {"filters": 3, "kernel_size": 3}), pixels),
    ]
    for build, (subclass, parent, config), x in pairs:
        sub = build(subclass(**config, dtype=F64), MyDense(3, dtype=F64))
        twin = build(parent(**config, dtype=F64), L.Dense(3, dtype=F64))
        twin.set_weights([rng.normal(0, 0.5, w.shape) for w in twin.get_weights()])
        if build is _image_model:  # BatchNorm statistics that change the map: variances > 0
            weights = twin.get_weights()
            weights[5] = rng.uniform(0.5, 2, weights[5].shape)
            twin.set_weights(weights)
        sub.set_weights(twin.get_weights())
        np.testing.assert_allclose(sub.predict(x, verbose=0), twin.predict(x, verbose=0), rtol=1e-12)
        for analyzer in (DTD, lambda m: keras_dtd.LRP(m, rules.Epsilon(0.01))):
            np.testing.assert_allclose(
                _quiet(analyzer(sub).analyze, x), _quiet(analyzer(twin).analyze, x), rtol=1e-12, atol=1e-15
            )
    folded = [n for n in DTD(sub).graph.nodes if isinstance(n.layer, L.BatchNormalization)]
    assert not folded  # the BatchNorm after the Conv2D subclass was folded into it, as after a Conv2D
