"""MultiHeadAttention under AttnLRP and CP-LRP against a float64 numpy replica of the rules;
masked positions, both of Keras' code paths, and DTD conservative and positive."""

import pathlib
import warnings

import keras
import numpy as np
import pytest

import keras_dtd
from keras_dtd import DTD, LRP, composites

F64 = "float64"
L = keras.layers
EPS = 1e-6


def _stab(y):
    return y + EPS * np.where(y >= 0, 1.0, -1.0)


def _linear(x, w, z, r):
    """ε-rule, x (..., i), w (i, j), z (..., j) the full pre-activation: R_x = x · (w (R / stab z))."""
    return x * ((r / _stab(z)) @ w.T)


def _replica(mha, query, value, r_y, mode, mask=None):
    """(output y, R_query, R_value) of one sample: query (T, D), value (S, D), r_y (T, D); with
    ``use_gate``, y = (o ⊙ σ(query·W_g + b_g))·W_o + b_o."""
    wq, bq = (np.asarray(v, np.float64) for v in (mha.query_dense.kernel, mha.query_dense.bias))
    wk, bk = (np.asarray(v, np.float64) for v in (mha.key_dense.kernel, mha.key_dense.bias))
    wv, bv = (np.asarray(v, np.float64) for v in (mha.value_dense.kernel, mha.value_dense.bias))
    wo, bo = (np.asarray(v, np.float64) for v in (mha.output_dense.kernel, mha.output_dense.bias))
    n, h = wq.shape[1:]
    q = np.einsum("td,dnh->tnh", query, wq) + bq
    k = np.einsum("sd,dnh->snh", value, wk) + bk
    v = np.einsum("sd,dnh->snh", value, wv) + bv
    qs = q / np.sqrt(h)
    scores = np.einsum("tnh,snh->nts", qs, k)
    allowed = np.ones_like(scores, bool) if mask is None else np.broadcast_to(mask[None], scores.shape)
    scores = np.where(allowed, scores, -1e9)
    a = np.exp(scores - scores.max(-1, keepdims=True))
    a = np.where(allowed, a, 0)
    a /= a.sum(-1, keepdims=True)
    o = np.einsum("nts,snh->tnh", a, v)
    gated, r_gate = o, np.zeros_like(query)
    if mha.get_config()["use_gate"]:
        wg, bg = (np.asarray(x, np.float64) for x in (mha._gate_dense.kernel, mha._gate_dense.bias))
        zg = np.einsum("td,dnh->tnh", query, wg) + bg
        gated = o / (1 + np.exp(-zg))
    y = np.einsum("tnh,nhd->td", gated, wo) + bo
    s = r_y / _stab(y)
    r_o = gated * np.einsum("td,nhd->tnh", s, wo)
    if mha.get_config()["use_gate"] and mode != "cp":
        r_o = 0.5 * gated / _stab(gated) * r_o
        r_gate = query * np.einsum("tnh,dnh->td", r_o / _stab(zg), wg)
    s = r_o / _stab(o)
    if mode == "cp":
        r_v = v * np.einsum("nts,tnh->snh", a, s)
        r_q, r_k = np.zeros_like(q), np.zeros_like(k)
    else:
        r_a = 0.5 * a * np.einsum("tnh,snh->nts", s, v)
        r_v = 0.5 * v * np.einsum("nts,tnh->snh", a, s)
        r_s = np.where(allowed, scores * (r_a - a * r_a.sum(-1, keepdims=True)), 0)
        s = r_s / _stab(np.where(allowed, scores, -1e9))
        r_q = 0.5 * qs * np.einsum("nts,snh->tnh", s, k)
        r_k = 0.5 * k * np.einsum("nts,tnh->snh", s, qs)

    def back(x, w, b, z, r):
        return x * np.einsum("xnh,dnh->xd", r / _stab(z), w)

    r_query = back(query, wq, bq, q, r_q) + r_gate
    r_value = back(value, wv, bv, v, r_v) + back(value, wk, bk, k, r_k)
    return y, r_query, r_value


def _cross(mask=False, dropout=0.0, gate=False, value_dim=None):
    query, value = keras.Input((3, 4), dtype=F64), keras.Input((5, 4), dtype=F64)
    mha = L.MultiHeadAttention(2, 3, value_dim=value_dim, dropout=dropout, use_gate=gate, dtype=F64)
    inputs = [query, value]
    if mask:
        allowed = keras.Input((3, 5), dtype="bool")
        inputs.append(allowed)
        y = mha(query, value, attention_mask=allowed)
    else:
        y = mha(query, value)
    top = L.Dense(1, use_bias=False, dtype=F64)
    model = keras.Model(inputs, top(L.Flatten(dtype=F64)(y)))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.6, w.shape) for w in model.get_weights()])
    return model, mha, top


@pytest.mark.parametrize("mode", ["attnlrp", "cp"])
@pytest.mark.parametrize(
    "masked, gate, value_dim", [(False, False, None), (True, False, None), (False, True, 5)]
)
def test_multi_head_attention_matches_the_float64_replica(mode, masked, gate, value_dim):
    model, mha, top = _cross(mask=masked, gate=gate, value_dim=value_dim)
    rng = np.random.default_rng(1)
    query, value = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
    allowed = np.ones((2, 3, 5), bool)
    allowed[:, :, 3:] = False  # the last two keys are masked for every query
    allowed[0, 0, 0] = False
    inputs = [query, value] + ([allowed] if masked else [])
    composite = composites.AttnLRP(EPS) if mode == "attnlrp" else composites.CPLRP(EPS)
    relevance = LRP(model, composite).analyze(inputs, neuron_selection=0)
    w = top.get_weights()[0][:, 0]
    for i in range(2):
        y, _, _ = _replica(mha, query[i], value[i], np.zeros((3, 4)), mode, allowed[i] if masked else None)
        # Keras' attention carries float32 rounding (1e-8 relative here): so does the explained output
        np.testing.assert_allclose(y.ravel() @ w, np.asarray(model(inputs))[i, 0], rtol=1e-6)
        f = y.ravel() @ w
        r_y = _linear(y.ravel(), w[:, None], np.array([f]), np.array([f])).reshape(3, 4)
        _, r_query, r_value = _replica(mha, query[i], value[i], r_y, mode, allowed[i] if masked else None)
        scale = max(np.abs(r_query).max(), np.abs(r_value).max())
        np.testing.assert_allclose(relevance[0][i], r_query, atol=1e-7 * scale, rtol=0)
        np.testing.assert_allclose(relevance[1][i], r_value, atol=1e-7 * scale, rtol=0)
        if masked:
            assert np.all(relevance[1][i, 3:] == 0)  # keys masked for every query get nothing
        if mode == "cp":
            assert np.all(relevance[0][i] == 0)  # CP-LRP: q, k and the gate get nothing


def test_both_keras_code_paths_give_the_same_maps():
    fused, _, _ = _cross()
    explicit, _, _ = _cross(dropout=0.1)  # dropout > 0 takes the einsum-softmax-einsum path
    explicit.set_weights(fused.get_weights())
    rng = np.random.default_rng(2)
    x = [rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))]
    for make in (composites.AttnLRP, composites.CPLRP):
        a, b = LRP(fused, make()).analyze(x), LRP(explicit, make()).analyze(x)
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-13)


def test_dtd_on_an_encoder_block_is_conservative_and_positive():
    inp = keras.Input((6, 4), dtype=F64)
    attended = L.MultiHeadAttention(2, 2, use_bias=False, dtype=F64)(inp, inp, use_causal_mask=True)
    h = L.Add(dtype=F64)([inp, attended])
    h = L.Dense(8, activation="relu", use_bias=False, dtype=F64)(h)
    model = keras.Model(inp, L.Dense(2, use_bias=False, dtype=F64)(L.GlobalAveragePooling1D(dtype=F64)(h)))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.6, w.shape) for w in model.get_weights()])
    x = rng.normal(size=(5, 6, 4))
    with pytest.warns(keras_dtd.NonReLUWarning, match="softmax attention"):
        analyzer = DTD(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.ZeroRelevanceWarning)
        explanation = analyzer.explain(x)
    assert np.all(explanation.relevance >= -1e-12) and np.any(explanation.target > 0)
    np.testing.assert_allclose(
        explanation.relevance.reshape(5, -1).sum(1), explanation.target, rtol=1e-9, atol=1e-12
    )


def test_attnlrp_finds_the_key_token():
    """Sequences labelled by the presence of token 1, a small attention classifier trained here:
    under AttnLRP the most relevant token of a positive sample is the key token."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, 20, (1200, 8)).astype("int32")
    labels = rng.integers(0, 2, 1200).astype("int32")
    tokens[labels == 1, rng.integers(0, 8, (labels == 1).sum())] = 1
    inp = keras.Input((8,), dtype="int32")
    h = L.Embedding(20, 16)(inp)
    h = L.Add()([h, L.MultiHeadAttention(2, 8)(h, h)])
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling1D()(h)))
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(tokens[:1000], labels[:1000], epochs=8, batch_size=32, verbose=0)
    test, truth = tokens[1000:], labels[1000:]
    assert (np.asarray(model.predict(test, verbose=0)).argmax(1) == truth).mean() > 0.95
    positive = test[truth == 1]
    relevance = LRP(model, composites.AttnLRP()).analyze(positive, neuron_selection=1)
    found = positive[np.arange(len(positive)), relevance.argmax(axis=1)] == 1
    assert found.mean() >= 0.9, found.mean()


def test_returned_attention_scores_are_refused_by_name():
    inp = keras.Input((4, 6))
    y, scores = L.MultiHeadAttention(2, 3, name="scored")(inp, inp, return_attention_scores=True)
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(y)))
    with pytest.raises(keras_dtd.UnsupportedLayerError, match=r"'scored'.*return_attention_scores=True"):
        LRP(model, composites.AttnLRP()).analyze(np.zeros((1, 4, 6), "float32"))


def test_attention_options_without_a_rule_are_refused_by_name():
    inp = keras.Input((4, 5, 6))
    model = keras.Model(inp, L.MultiHeadAttention(2, 3, attention_axes=(1, 2), name="axes")(inp, inp))
    with pytest.raises(
        keras_dtd.UnsupportedLayerError, match=r"'axes'.*attention_axes=\(1, 2\).*layer_rules="
    ):
        LRP(model, composites.AttnLRP())


def test_attnlrp_splits_a_gated_product_in_halves():
    """A GLU-style x·W_a ⊙ tanh(x·W_b): each factor half of the ε share (the uniform rule)."""
    inp = keras.Input((4,), dtype=F64)
    a, b = L.Dense(3, dtype=F64)(inp), L.Dense(3, activation="tanh", dtype=F64)(inp)
    top = L.Dense(1, use_bias=False, dtype=F64)
    model = keras.Model(inp, top(L.Multiply(dtype=F64)([a, b])))
    rng = np.random.default_rng(4)
    model.set_weights([rng.normal(0, 0.6, w.shape) for w in model.get_weights()])
    wa, ba, wb, bb, w = (v.astype(np.float64) for v in model.get_weights())
    x = rng.normal(size=(3, 4))
    relevance = LRP(model, composites.AttnLRP(EPS)).analyze(x, neuron_selection=0)
    for xs, rs in zip(x, relevance):
        za, zb = xs @ wa + ba, xs @ wb + bb
        y = za * np.tanh(zb)
        f = y @ w[:, 0]
        r_y = y * w[:, 0] * f / _stab(np.array(f))
        r_half = 0.5 * y / _stab(y) * r_y
        expected = _linear(xs, wa, za, r_half) + _linear(xs, wb, zb, r_half)  # tanh passes R through
        np.testing.assert_allclose(rs, expected, atol=1e-9 * np.abs(expected).max(), rtol=0)
    # CP-LRP (as LXT's patch of gated MLPs): the activated factor is the gate, the linear one keeps all
    relevance = LRP(model, composites.CPLRP(EPS)).analyze(x, neuron_selection=0)
    for xs, rs in zip(x, relevance):
        za = xs @ wa + ba
        y = za * np.tanh(xs @ wb + bb)
        f = y @ w[:, 0]
        expected = _linear(xs, wa, za, y * w[:, 0] * f / _stab(np.array(f)))
        np.testing.assert_allclose(rs, expected, atol=1e-9 * np.abs(expected).max(), rtol=0)
    both = keras.Model(inp, top(L.Multiply(dtype=F64)([L.Activation("tanh")(a), b])))
    with pytest.raises(keras_dtd.UnsupportedLayerError, match="cannot tell the signal from the gate"):
        LRP(both, composites.CPLRP())  # both factors activated: the gate must be named


LXT = np.load(pathlib.Path(__file__).parent / "fixtures" / "lxt.npz")
VARIANTS = ("post_ln", "pre_ln", "post_ln_causal", "pre_ln_class_token")


def _lxt_block(variant, dtype=F64):
    """The Keras twin of make_lxt.py's torch block, with its weights."""
    w = {
        name: LXT[f"{variant}/{name}"]
        for name in ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo", "gamma", "beta", "Wh", "bh")
    }
    inp = keras.Input((6, 8), dtype=dtype)
    mha = L.MultiHeadAttention(2, 4, dtype=dtype)
    norm = L.LayerNormalization(epsilon=1e-3, dtype=dtype)
    causal = variant.endswith("causal")
    if variant.startswith("post_ln"):
        h = norm(L.Add(dtype=dtype)([inp, mha(inp, inp, use_causal_mask=causal)]))
    else:
        u = norm(inp)
        h = L.Add(dtype=dtype)([inp, mha(u, u, use_causal_mask=causal)])
    g = h[:, 0] if variant.endswith("class_token") else L.GlobalAveragePooling1D(dtype=dtype)(h)
    model = keras.Model(inp, L.Dense(2, dtype=dtype)(g))
    weights = [w[k] for k in ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")]
    order = {"post_ln": "mha_first", "post_ln_causal": "mha_first"}.get(variant, "norm_first")
    weights = weights + [w["gamma"], w["beta"]] if order == "mha_first" else [w["gamma"], w["beta"]] + weights
    model.set_weights(weights + [w["Wh"], w["bh"]])
    return model


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("method", ["attnlrp", "cplrp"])
def test_lxt_itself(variant, method):
    """LXT 2.1's efficient mode (tests/fixtures/make_lxt.py), which has no ε on linear maps: compared at
    ε = 1e-12. Measured: at most 2e-9 of max |R| in float64 and 2.8e-6 in float32 (float32 rounding, about
    6e-8 per operation, through a few dozen operations); the default ε = 1e-6 itself moves the maps by
    1.3e-4 to 2e-3 of max |R|. The tolerances, 1e-6 and 1e-4, leave a margin of about 500 and 35."""
    x, classes = LXT[f"{variant}/x"], LXT[f"{variant}/{method}/class"]
    expected = LXT[f"{variant}/{method}/relevance"]
    make = composites.AttnLRP if method == "attnlrp" else composites.CPLRP
    model = _lxt_block(variant)
    np.testing.assert_allclose(np.asarray(model(x)), LXT[f"{variant}/logits"], rtol=1e-6, atol=1e-9)
    scale = np.abs(expected).max()
    got = LRP(model, make(epsilon=1e-12)).analyze(x, neuron_selection=classes)
    np.testing.assert_allclose(got, expected, atol=1e-6 * scale, rtol=0)
    single = LRP(_lxt_block(variant, "float32"), make(epsilon=1e-12)).analyze(
        x.astype("float32"), neuron_selection=classes
    )
    np.testing.assert_allclose(single, expected, atol=1e-4 * scale, rtol=0)


def test_a_quantized_attention_layer_is_refused_by_name():
    inp = keras.Input((4, 6))
    model = keras.Model(inp, L.MultiHeadAttention(2, 3)(inp, inp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.quantize("int8")
    with pytest.raises(keras_dtd.UnsupportedLayerError, match=r"EinsumDense.*mode 'int8'"):
        LRP(model, composites.AttnLRP()).analyze(np.zeros((1, 4, 6), "float32"))
