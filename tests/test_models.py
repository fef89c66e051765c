"""DTD on a zoo of models: conservation, positivity, and invariances of the analyzer."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
import zoo

import keras_dtd
from keras_dtd import DTD, LRP, ZeroRelevanceWarning, rules

_MODELS = {}


def model_named(name):
    if name not in _MODELS:
        keras.utils.set_random_seed(42)
        _MODELS[name] = zoo.ZOO[name]()
    return _MODELS[name]


def _check_dtd(model, analyzer, x, selection="max_activation"):
    f = zoo.logits(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroRelevanceWarning)
        relevance = analyzer.analyze(x, neuron_selection=selection)
    if isinstance(selection, str):
        target = np.maximum(f.max(axis=1), 0)
    else:
        target = np.maximum(f[np.arange(len(x)), selection], 0)
    sums = relevance.reshape(len(x), -1).sum(axis=1)
    np.testing.assert_allclose(sums, target, rtol=1e-5, atol=1e-6)
    assert relevance.shape == x.shape
    assert relevance.min() >= -1e-7 * max(1.0, np.abs(relevance).max())
    return relevance


@pytest.mark.parametrize("name", list(zoo.ZOO))
@pytest.mark.parametrize("bounded", [False, True], ids=["w2", "zB"])
def test_conservative_and_positive(name, bounded):
    model = model_named(name)
    x = zoo.inputs_for(model)
    analyzer = DTD(model, input_range=(0.0, 1.0)) if bounded else DTD(model)
    relevance = _check_dtd(model, analyzer, x)
    assert np.mean(relevance.reshape(len(x), -1).sum(axis=1) > 0) >= 0.5  # mostly non-trivial maps
    n_out = model.outputs[0].shape[-1]
    _check_dtd(model, analyzer, x, selection=np.arange(len(x)) % n_out)


def test_layerwise_conservation_on_a_chain():
    model = model_named("cnn_max_avg")
    x = zoo.inputs_for(model)
    relevance, layers = DTD(model).analyze(x, return_layers=True)
    total = relevance.reshape(len(x), -1).sum(axis=1)
    assert list(layers) == [layer.name for layer in model.layers[1:]]
    for name, r in layers.items():
        np.testing.assert_allclose(r.reshape(len(x), -1).sum(axis=1), total, rtol=1e-5, err_msg=name)
        assert r.min() >= 0


def test_nested_model_equals_flattened_model():
    nested = model_named("nested_backbone")
    net = nested.get_layer("backbone")
    inp = keras.Input((12, 12, 1))
    h = inp
    for layer in net.layers:
        h = layer(h)
    h = nested.layers[-2](h)
    flat = keras.Model(inp, nested.layers[-1](h))
    x = zoo.inputs_for(nested)
    np.testing.assert_allclose(flat.predict_on_batch(x), nested.predict_on_batch(x), rtol=1e-6)
    np.testing.assert_allclose(DTD(flat).analyze(x), DTD(nested).analyze(x), rtol=1e-5, atol=1e-7)


def test_jit_matches_graph_mode():
    model = model_named("residual")
    x = zoo.inputs_for(model)
    plain = DTD(model, input_range=(0, 1), jit_compile=False).analyze(x)
    xla = DTD(model, input_range=(0, 1), jit_compile=True).analyze(x)
    np.testing.assert_allclose(xla, plain, rtol=1e-4, atol=1e-6)


def test_batch_equals_one_by_one_and_no_retrace():
    model = model_named("concat_branches")
    x = zoo.inputs_for(model, n=7)
    analyzer = DTD(model, batch_size=3)
    together = analyzer.analyze(x)
    assert analyzer.trace_count == 1
    singles = np.concatenate([analyzer.analyze(x[i : i + 1]) for i in range(len(x))])
    analyzer.analyze(x[:2])
    analyzer.analyze(x, neuron_selection=1)
    np.testing.assert_allclose(together, singles, rtol=1e-5, atol=1e-7)
    assert analyzer.trace_count == 1  # padding keeps one signature; selection modes share it


def test_softmax_is_stripped_and_selection_all_sums_positive_outputs():
    inp = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu")(inp)
    scores = keras.layers.Dense(4)(h)
    probs = keras.layers.Activation("softmax")(scores)
    with_softmax, without = keras.Model(inp, probs), keras.Model(inp, scores)
    x = np.random.uniform(0, 1, (5, 6)).astype("float32")
    np.testing.assert_allclose(DTD(with_softmax).analyze(x), DTD(without).analyze(x), rtol=1e-6)
    relevance = DTD(without).analyze(x, neuron_selection="all")
    f = without.predict_on_batch(x)
    np.testing.assert_allclose(relevance.sum(axis=1), np.maximum(f, 0).sum(axis=1), rtol=1e-5)


def test_analyzer_follows_live_weights():
    model = model_named("mlp")
    x = zoo.inputs_for(model)
    analyzer = DTD(model)
    before = analyzer.analyze(x)
    saved = model.get_weights()
    model.set_weights([w * 1.5 for w in saved])
    try:
        after = analyzer.analyze(x)
        fresh = DTD(model).analyze(x)
    finally:
        model.set_weights(saved)
    np.testing.assert_allclose(after, fresh, rtol=1e-5)
    assert not np.allclose(after, before)


def test_user_model_is_unchanged():
    model = model_named("conv_bn_relu")
    soft = model_named("conv3d_reshape")
    for m in (model, soft):
        weights = [w.copy() for w in m.get_weights()]
        config = m.get_config()
        x = zoo.inputs_for(m)
        before = m.predict_on_batch(x)
        DTD(m, input_range=(0, 1)).analyze(x)
        assert m.get_config() == config
        for a, b in zip(weights, m.get_weights()):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(m.predict_on_batch(x), before)


def _folded_by_hand(model):
    """A twin of a chain model without BatchNormalization: each one folded into the kernel
    layer before it in float64, W' = W·s, b' = (b − μ)·s + β, s = γ/√(σ² + ε)."""
    h = inp = keras.Input(model.inputs[0].shape[1:])
    layers = model.layers[1:]
    k = 0
    while k < len(layers):
        layer, config = layers[k], layers[k].get_config()
        weights = layer.get_weights()
        following = layers[k + 1] if k + 1 < len(layers) else None
        if isinstance(following, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = (w.astype(np.float64) for w in following.get_weights())
            s = gamma / np.sqrt(variance + following.epsilon)
            kernel = weights[0].astype(np.float64)  # output channels on the last axis
            bias = weights[1].astype(np.float64) if layer.use_bias else 0.0
            config["use_bias"] = True
            weights = [(kernel * s).astype("float32"), ((bias - mean) * s + beta).astype("float32")]
            k += 1
        twin = type(layer).from_config(config)
        h = twin(h)
        twin.set_weights(weights)
        k += 1
    return keras.Model(inp, h)


def test_batch_norm_is_folded_into_the_kernel_layer():
    rng = np.random.default_rng(2)
    for name in ("conv_bn_relu", "channels_first_bn"):
        keras.utils.set_random_seed(42)
        model = zoo.ZOO[name]()  # a copy of its own: biases ≠ 0 make b' = (b − μ)·s + β matter
        for layer in model.layers:
            if getattr(layer, "bias", None) is not None:
                layer.bias.assign(rng.uniform(-0.1, 0.1, layer.bias.shape))
        analyzer = DTD(model)
        folded = [
            n
            for n in analyzer.graph.nodes
            if n.linear_map is not None and getattr(n.linear_map, "batch_norm", None)
        ]
        assert folded and not any(n.kind == "batch_norm" for n in analyzer.graph.nodes), name
        twin = _folded_by_hand(model)
        assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in twin.layers)
        x = zoo.inputs_for(model)
        f = zoo.logits(model, x)
        # the hand fold is right: Keras' own forward passes agree (float32 rounding of W·s)
        np.testing.assert_allclose(zoo.logits(twin, x), f, rtol=1e-5, atol=1e-6 * np.abs(f).max())
        # the two folds round W·s and b' differently in float32: atol 1e-7 of max |R| on positive
        # DTD maps, 1e-6 on LRP-ε's signed ones (cancellation); measured: ≤ 0.4 of either is used
        analyzers = [  # ε and the bias in its denominator make LRP-ε see the folded scale and shift
            (analyzer, DTD(twin), 1e-7),
            (DTD(model, input_range=(0, 1)), DTD(twin, input_range=(0, 1)), 1e-7),
            (LRP(model, rules.Epsilon(0.1)), LRP(twin, rules.Epsilon(0.1)), 1e-6),
        ]
        for on_model, on_twin, floor in analyzers:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ZeroRelevanceWarning)
                expected = on_twin.analyze(x)
                got = on_model.analyze(x)
            assert np.abs(expected).sum() > 0
            np.testing.assert_allclose(
                got, expected, rtol=1e-5, atol=floor * np.abs(expected).max(), err_msg=name
            )


def test_two_inputs_and_a_shared_layer():
    keras.utils.set_random_seed(3)
    shared = keras.layers.Dense(5, activation="relu")
    a, b = keras.Input((6,)), keras.Input((6,))
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([shared(a), shared(b)])))
    rng = np.random.default_rng(0)
    xa, xb = rng.uniform(0, 1, (8, 6)), rng.uniform(0, 1, (8, 6))
    f = model.predict_on_batch([xa, xb])
    analyzer = DTD(model, input_range=[(0, 1), (0, 1)])
    assert [n.path for n in analyzer.graph.nodes if n.layer is shared] == [shared.name, shared.name + "#1"]
    for selection in ("max_activation", np.arange(8) % 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ZeroRelevanceWarning)
            ra, rb = analyzer.analyze([xa, xb], neuron_selection=selection)
        chosen = f.argmax(axis=1) if isinstance(selection, str) else selection
        np.testing.assert_allclose(
            ra.sum(axis=1) + rb.sum(axis=1), np.maximum(f[np.arange(8), chosen], 0), rtol=1e-5, atol=1e-7
        )
        assert min(ra.min(), rb.min()) >= 0


def test_relevance_pass_in_a_tf_function_is_what_explain_returns():
    model = model_named("residual")
    x = zoo.inputs_for(model, n=4)
    top = zoo.logits(model, x).argmax(axis=1)
    indices = [-1, 0, 2, -1]  # -1: the sample's top output
    for analyzer in (DTD(model), keras_dtd.Gradient(model)):
        compiled = tf.function(
            lambda x, a=analyzer: a.relevance_pass([x], tf.constant(indices), keep_layers=True)
        )
        result = compiled(tf.constant(x))
        assert isinstance(result, keras_dtd.RelevancePass)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ZeroRelevanceWarning)
            selection = [int(top[k]) if i < 0 else i for k, i in enumerate(indices)]
            explained = analyzer.explain(x, neuron_selection=selection, return_layers=True)
        for got, expected in zip(result[:3], (explained.relevance, explained.score, explained.target)):
            got = got[0] if isinstance(got, list) else got
            np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)
        assert set(result.layers) == set(explained.layers or {})
