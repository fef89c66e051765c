"""KerasHub models explained with their custom layers traced inside: the traced graph
reproduces each model, the op-level rules inside traced layers match the MultiHeadAttention
rule (itself matched to LXT) and closed-form float64 formulas, padded tokens get zero,
language-model outputs are selected by position and token, and what cannot be traced is
refused by name."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import keras_dtd
from keras_dtd import LRP, composites
from keras_dtd.analyzers.baselines import InputTimesGradient

F64 = "float64"
L = keras.layers
EPS = 1e-6
# KerasHub's Gemma computes its RMSNormalization and attention softmax in float32 even in a float64
# model: results there are one float32 rounding (2^-24 relative) apart, which the layers after it
# carry on; 16 such roundings bound what these tests see (about 1e-7 relative, measured).
FLOAT32_STEPS = 16 * 2.0**-24
METHODS = {"attnlrp": composites.AttnLRP, "cplrp": composites.CPLRP}
T = 7  # tokens per sequence in these tests


@pytest.fixture
def float64():
    """Keras inputs default to float64 (KerasHub's image inputs follow floatx). Keras keeps the
    global dtype policy it derives from floatx on first use, so it is restored too: otherwise
    every later test's layers would be float64."""
    policy = keras.config.dtype_policy()
    keras.config.set_floatx(F64)
    yield
    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy(policy)


def _stab(y):
    return y + EPS * np.where(y >= 0, 1.0, -1.0)


def _tokens(batch=3, vocabulary=50, seed=0, padded=((0, 5),)):
    rng = np.random.default_rng(seed)
    x = {
        "token_ids": rng.integers(1, vocabulary, (batch, T)).astype("int32"),
        "padding_mask": np.ones((batch, T), "int32"),
    }
    for sample, start in padded:
        x["padding_mask"][sample, start:] = 0
        x["token_ids"][sample, start:] = 0
    return x


def _bert(dtype=F64):
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=16, dtype=dtype,
    )  # fmt: skip
    return keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None, dtype=dtype)


def _distil_bert():
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=16, dtype=F64,
    )  # fmt: skip
    return keras_hub.models.DistilBertTextClassifier(backbone, num_classes=3, preprocessor=None, dtype=F64)


def _vit():
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
        dtype=F64,
    )  # fmt: skip
    return keras_hub.models.ViTImageClassifier(backbone, num_classes=4, preprocessor=None, dtype=F64)


def _gemma():
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=2, num_key_value_heads=1, hidden_dim=16,
        intermediate_dim=32, head_dim=8, dtype=F64,
    )  # fmt: skip
    return keras_hub.models.GemmaCausalLM(backbone, preprocessor=None)


def _randomized(model, seed=1, scale=0.5):
    """Weights of a larger spread than the initializers' (which make near-zero logits)."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0, scale, w.shape) * (w.ndim > 0) for w in model.get_weights()])
    return model


def _inputs(name):
    x = _tokens()
    if name == "bert":
        x["segment_ids"] = np.zeros_like(x["token_ids"])
    if name == "vit":
        x = {"images": np.random.default_rng(0).random((3, 16, 16, 3))}
    return x


MODELS = {"bert": _bert, "distil_bert": _distil_bert, "vit": _vit, "gemma": _gemma}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_traced_graph_reproduces_each_model(float64, name):
    """Before any rule runs, the graph with the custom layers traced inside computes the model:
    eagerly and inside a tf.function (where the constants are read from the variables)."""
    model = _randomized(MODELS[name]())
    x = _inputs(name)
    analyzer = LRP(model, composites.AttnLRP())
    inputs = [tf.constant(a) for a in analyzer.validate_inputs(x)]
    expected = np.asarray(model(x))
    eager = analyzer.forward(inputs).output
    compiled = tf.function(lambda *xs: analyzer.forward(list(xs)).output)(*inputs)
    scale = np.abs(expected).max() * (FLOAT32_STEPS if name == "gemma" else 1e-12)
    np.testing.assert_allclose(eager, expected, atol=scale, rtol=0)
    np.testing.assert_allclose(compiled, expected, atol=scale, rtol=0)
    assert analyzer.graph.traced_calls


def test_the_traced_graph_reproduces_a_float32_model_to_1e_6():
    model = _randomized(_bert("float32"))
    x = _inputs("bert")
    analyzer = LRP(model, composites.AttnLRP())
    out = analyzer.forward([tf.constant(a) for a in analyzer.validate_inputs(x)]).output
    np.testing.assert_allclose(out, model(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_maps_are_keyed_like_the_inputs_and_padded_tokens_get_zero(float64, name, method):
    model = _randomized(MODELS[name]())
    x = _inputs(name)
    analyzer = LRP(model, METHODS[method]())
    maps = analyzer.analyze(x)
    expected = ["images"] if name == "vit" else ["token_ids"]  # no maps for masks and segment ids
    assert sorted(maps) == expected
    for key, r in maps.items():
        assert r.shape == x[key].shape and np.all(np.isfinite(r)) and np.abs(r).max() > 0
    if name != "vit":
        assert np.all(maps["token_ids"][0, 5:] == 0.0)  # exactly: padded positions
    before = analyzer.trace_count
    analyzer.analyze(x)
    assert analyzer.trace_count == before  # the same shapes: no new trace


def _twin_of_encoder(encoder, hidden):
    """The hand-written block of the attention tests with the encoder's layers: post-norm
    attention and feed-forward, the padding mask as MultiHeadAttention's attention_mask."""
    x, padding = keras.Input((T, hidden), dtype=F64), keras.Input((T,), dtype="int32")
    mask = keras.ops.cast(keras.ops.expand_dims(padding, 1), "int32")
    attention = L.MultiHeadAttention(2, hidden // 2, dtype=F64)
    norm_1, norm_2 = (
        L.LayerNormalization(epsilon=1e-5, dtype=F64),
        L.LayerNormalization(epsilon=1e-5, dtype=F64),
    )
    up, down = L.Dense(32, activation="relu", dtype=F64), L.Dense(hidden, dtype=F64)
    h = norm_1(L.Add(dtype=F64)([x, attention(x, x, attention_mask=mask)]))
    y = norm_2(L.Add(dtype=F64)([h, down(up(h))]))
    top = L.Dense(1, dtype=F64)
    twin = keras.Model([padding, x], top(L.Flatten(dtype=F64)(y)))
    attention.set_weights(encoder._self_attention_layer.get_weights())
    for mine, theirs in (
        (norm_1, encoder._self_attention_layer_norm),
        (norm_2, encoder._feedforward_layer_norm),
        (up, encoder._feedforward_intermediate_dense),
        (down, encoder._feedforward_output_dense),
    ):
        mine.set_weights(theirs.get_weights())
    return twin, top


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_transformer_encoder_gives_the_maps_of_the_hand_written_block(method):
    hidden = 16
    x, padding = keras.Input((T, hidden), dtype=F64), keras.Input((T,), dtype="int32")
    encoder = keras_hub.layers.TransformerEncoder(32, 2, dtype=F64)
    top = L.Dense(1, dtype=F64)
    model = _randomized(
        keras.Model([padding, x], top(L.Flatten(dtype=F64)(encoder(x, padding_mask=padding))))
    )
    twin, twin_top = _twin_of_encoder(encoder, hidden)
    twin_top.set_weights(top.get_weights())
    rng = np.random.default_rng(3)
    mask = np.ones((4, T), "int32")
    mask[1, 4:] = 0
    inputs = [mask, rng.normal(size=(4, T, hidden))]
    np.testing.assert_allclose(model(inputs), twin(inputs), atol=1e-12)
    ours = LRP(model, METHODS[method]()).analyze(inputs, neuron_selection=0)[1]
    theirs = LRP(twin, METHODS[method]()).analyze(inputs, neuron_selection=0)[1]
    np.testing.assert_allclose(ours, theirs, atol=1e-10 * np.abs(theirs).max(), rtol=0)


class OpAttention(L.Layer):
    """Self-attention written with keras.ops, as KerasHub's Gemma attention is: projections,
    einsum scores, a Softmax layer with a mask, einsum with the values, output projection."""

    def __init__(self, heads, key_dim, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.key_dim = heads, key_dim

    def build(self, input_shape):
        hidden = input_shape[-1]
        shape = (None, self.heads, self.key_dim)
        dense = dict(dtype=self.dtype_policy)
        self.query = L.EinsumDense("btd,dnh->btnh", shape, bias_axes="nh", **dense)
        self.key = L.EinsumDense("bsd,dnh->bsnh", shape, bias_axes="nh", **dense)
        self.value = L.EinsumDense("bsd,dnh->bsnh", shape, bias_axes="nh", **dense)
        self.out = L.EinsumDense("btnh,nhd->btd", (None, hidden), bias_axes="d", **dense)
        self.softmax = L.Softmax(dtype=self.dtype_policy)
        for layer, shape in ((self.query, input_shape), (self.key, input_shape), (self.value, input_shape)):
            layer.build(shape)
        self.out.build((None, None, self.heads, self.key_dim))

    def call(self, x, mask):
        q = self.query(x) * (1.0 / np.sqrt(self.key_dim))
        scores = keras.ops.einsum("btnh,bsnh->bnts", q, self.key(x))
        weights = self.softmax(scores, mask=keras.ops.cast(mask[:, None, None, :], "bool"))
        return self.out(keras.ops.einsum("bnts,bsnh->btnh", weights, self.value(x)))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_attention_traced_from_ops_matches_the_multi_head_attention_rule(method):
    """The op-level rules (UniformProduct on einsum, Softmax; CP-LRP's weights held constant)
    give the maps of the MultiHeadAttention rule, which reproduces LXT (test_attention.py)."""
    hidden = 8
    x, padding = keras.Input((T, hidden), dtype=F64), keras.Input((T,), dtype="int32")
    traced = OpAttention(2, 4, dtype=F64)
    attention = L.MultiHeadAttention(2, 4, dtype=F64)
    top = L.Dense(1, dtype=F64)
    head = L.Flatten(dtype=F64)
    model = keras.Model([padding, x], top(head(traced(x, padding))))
    mask = keras.ops.cast(keras.ops.expand_dims(padding, 1), "bool")
    twin = keras.Model([padding, x], top(head(attention(x, x, attention_mask=mask))))
    _randomized(model, scale=0.4)
    attention.set_weights(
        [w for layer in (traced.query, traced.key, traced.value, traced.out) for w in layer.get_weights()]
    )
    rng = np.random.default_rng(5)
    masks = np.ones((3, T), "int32")
    masks[2, 3:] = 0
    inputs = [masks, rng.normal(size=(3, T, hidden))]
    np.testing.assert_allclose(model(inputs), twin(inputs), atol=1e-12)
    ours = LRP(model, METHODS[method](EPS)).analyze(inputs, neuron_selection=0)[1]
    theirs = LRP(twin, METHODS[method](EPS)).analyze(inputs, neuron_selection=0)[1]
    np.testing.assert_allclose(ours, theirs, atol=1e-9 * np.abs(theirs).max(), rtol=0)


def test_rms_norm_and_a_gated_product_follow_their_formulas():
    """Dense → Gemma's RMSNormalization (1/σ held constant: relevance passes) → GeGLU
    (gelu(x·W_g) ⊙ x·W_u: AttnLRP halves, CP-LRP all to the linear factor) → Dense, float64."""
    from keras_hub.src.models.gemma.rms_normalization import RMSNormalization

    x = keras.Input((6,), dtype=F64)
    first, norm = L.Dense(5, dtype=F64), RMSNormalization(dtype=F64)
    gate, up, top = L.Dense(4, dtype=F64), L.Dense(4, dtype=F64), L.Dense(1, use_bias=False, dtype=F64)
    h = norm(first(x))
    model = _randomized(keras.Model(x, top(keras.ops.gelu(gate(h), approximate=True) * up(h))))
    (w1, b1), scale, (wg, bg), (wu, bu), (w,) = (
        layer.get_weights() for layer in (first, norm, gate, up, top)
    )
    data = np.random.default_rng(2).normal(size=(4, 6))
    for method, share in (("attnlrp", 0.5), ("cplrp", None)):
        maps = LRP(model, METHODS[method](EPS)).analyze(data, neuron_selection=0)
        for xs, r in zip(data, maps):
            z1 = xs @ w1 + b1
            hs = z1 / np.sqrt(np.mean(z1**2) + 1e-6) * (1 + scale[0])
            zg, zu = hs @ wg + bg, hs @ wu + bu
            gelu = 0.5 * zg * (1 + np.tanh(np.sqrt(2 / np.pi) * (zg + 0.044715 * zg**3)))
            y = gelu * zu
            f = y @ w[:, 0]
            r_y = y * w[:, 0] * f / _stab(np.array(f))
            if share is None:  # signal-take-all: the linear factor keeps r_y
                r_h = hs * ((r_y / _stab(zu)) @ wu.T)
            else:
                r_half = share * y / _stab(y) * r_y
                r_h = hs * ((r_half / _stab(zu)) @ wu.T) + hs * ((r_half / _stab(zg)) @ wg.T)
            expected = xs * ((r_h / _stab(z1)) @ w1.T)  # the RMSNorm passes r_h to z1 unchanged
            np.testing.assert_allclose(r, expected, atol=FLOAT32_STEPS * np.abs(expected).max(), rtol=0)


def test_the_language_model_head_is_the_transposed_embedding(float64):
    """Gemma's logits = h·Eᵀ (token_embedding called with reverse=True): a linear map under ε,
    R_h = h ⊙ E_v · f / stab(f) at the selected position; the same embedding at the input is a
    lookup. The default selection is each sample's last unpadded position's top token."""
    model = _randomized(_gemma(), scale=0.3)
    analyzer = LRP(model, composites.AttnLRP(EPS))
    kinds = {node.path: node.kind for node in analyzer.graph.nodes}
    backbone = model.backbone.name
    assert kinds[f"{backbone}/token_embedding"] == "embedding"
    assert kinds["token_embedding/matmul"] == "kernel"
    x = _tokens()
    explanation = analyzer.explain(x, return_layers=True)
    logits = np.asarray(model(x))
    rows, last = np.arange(3), np.array([4, T - 1, T - 1])  # sample 0 is padded from position 5 on
    best = logits[rows, last].argmax(-1)
    f = logits[rows, last, best]
    np.testing.assert_allclose(explanation.score, f, rtol=FLOAT32_STEPS)
    path = f"{backbone}/final_normalization/cast#1"  # h, the head's input
    h = np.asarray(analyzer.forward([tf.constant(a) for a in analyzer.validate_inputs(x)]).layers[path])
    table = model.backbone.token_embedding.embeddings.numpy()
    expected = np.zeros_like(h)
    f = explanation.score  # as the analyzer computes it (to FLOAT32_STEPS the model's, above)
    expected[rows, last] = h[rows, last] * table[best] * (f / _stab(f))[:, None]
    np.testing.assert_allclose(  # h here eager, there in the compiled pass: float32 roundings apart
        explanation.layers[path], expected, atol=FLOAT32_STEPS * np.abs(expected).max(), rtol=0
    )


def test_next_token_selection_by_position_and_token(float64):
    model = _randomized(_gemma(), scale=0.3)
    analyzer = LRP(model, composites.AttnLRP())
    x = _tokens()
    logits = np.asarray(model(x))
    rows = np.arange(3)
    assert np.allclose(analyzer.explain(x, neuron_selection=7).score, logits[rows, [4, T - 1, T - 1], 7])
    assert np.allclose(analyzer.explain(x, neuron_selection=(2, 9)).score, logits[:, 2, 9])
    pairs = np.array([[0, 1], [-1, 2], [3, 4]])
    assert np.allclose(
        analyzer.explain(x, neuron_selection=pairs).score, logits[rows, [0, T - 1, 3], [1, 2, 4]]
    )
    maps = analyzer.analyze(x, neuron_selection=(2, 9))["token_ids"]
    assert np.all(maps[:, 3:] == 0.0)  # causal: later tokens cannot explain position 2
    with pytest.raises(ValueError, match="position out of range"):
        analyzer.analyze(x, neuron_selection=(T, 1))
    with pytest.raises(ValueError, match="token out of range"):
        analyzer.analyze(x, neuron_selection=50)


def test_dict_inputs_are_checked_by_name():
    analyzer = LRP(_bert("float32"), composites.AttnLRP())
    x = _inputs("bert")
    with pytest.raises(ValueError, match=r"lacks \['segment_ids'\]"):
        analyzer.analyze({k: v for k, v in x.items() if k != "segment_ids"})
    with pytest.raises(ValueError, match=r"unknown keys \['labels'\]"):
        analyzer.analyze({**x, "labels": x["token_ids"]})
    maps = InputTimesGradient(_bert("float32")).analyze(x)
    assert sorted(maps) == ["token_ids"]


def test_weights_changed_after_building_are_read():
    model = _randomized(_bert("float32"))
    analyzer = LRP(model, composites.AttnLRP())
    x = _inputs("bert")
    analyzer.analyze(x)
    table = model.backbone.get_layer("position_embedding").position_embeddings
    table.assign(table.numpy() + 1.0)
    dense = model.backbone.get_layer("transformer_layer_0")._feedforward_output_dense
    dense.kernel.assign(dense.kernel.numpy() * -2.0)
    np.testing.assert_allclose(
        analyzer.analyze(x)["token_ids"], LRP(model, composites.AttnLRP()).analyze(x)["token_ids"], atol=1e-6
    )


def test_analyzing_leaves_the_model_as_it_was():
    model = _bert("float32")
    layers = list(model._flatten_layers(include_self=True, recursive=True))
    before = [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers]
    LRP(model, composites.AttnLRP()).analyze(_inputs("bert"))
    assert [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers] == before


class Untraceable(L.Layer):
    def call(self, x):
        return tf.nn.relu(x) if x.shape[-1] else x  # a tf function on a symbolic tensor


class FusedAttention(L.Layer):
    def call(self, x):
        return keras.ops.dot_product_attention(x, x, x)


def test_what_cannot_be_traced_or_has_no_rule_is_refused_by_name():
    x = keras.Input((T, 4))
    with pytest.raises(keras_dtd.UnsupportedLayerError, match=r"'untraceable'.*cannot be traced.*keras\.ops"):
        LRP(keras.Model(x, L.Dense(1)(Untraceable(name="untraceable")(x))), composites.AttnLRP())
    x = keras.Input((T, 2, 2))
    model = keras.Model(x, L.Dense(1)(L.Flatten()(FusedAttention(name="fused")(x))))
    with pytest.raises(
        keras_dtd.UnsupportedLayerError, match=r"'fused/dot_product_attention'.*no relevance rule"
    ):
        LRP(model, composites.AttnLRP())


def test_keras_hub_is_installed_without_a_second_tensorflow():
    """The [hub] extra and `pip install --no-deps keras-hub` (README): tensorflow-text, which pulls
    the `tensorflow` distribution, stays out; one TensorFlow distribution is installed."""
    from importlib import metadata

    installed = {d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions()}
    assert "keras-hub" in installed and "tensorflow-text" not in installed
    assert len(installed & {"tensorflow", "tensorflow-cpu", "tensorflow-gpu"}) == 1


def test_a_float32_input_feeding_float64_layers_is_cast_as_keras_casts_it():
    """KerasHub's ViT built in float64 keeps a float32 image Input (floatx): the layers cast their
    inputs, and so do their maps; before, the first convolution failed with a raw dtype error."""
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32,
        dtype=F64,
    )  # fmt: skip
    model = _randomized(
        keras_hub.models.ViTImageClassifier(backbone, num_classes=4, preprocessor=None, dtype=F64)
    )
    assert model.inputs[0].dtype == "float32"
    x = {"images": np.random.default_rng(0).random((3, 16, 16, 3)).astype("float32")}
    analyzer = LRP(model, composites.AttnLRP())
    expected = np.asarray(model(x))
    out = analyzer.forward([tf.constant(x["images"])]).output
    np.testing.assert_allclose(out, expected, atol=1e-12 * np.abs(expected).max(), rtol=0)
    maps = analyzer.analyze(x)["images"]
    assert maps.shape == x["images"].shape and np.all(np.isfinite(maps)) and np.abs(maps).max() > 0
