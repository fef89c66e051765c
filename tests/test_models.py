"""DTD on a zoo of models: conservation, positivity, and invariances of the analyzer."""

import warnings

import keras
import numpy as np
import pytest
import zoo

from keras_dtd import DTD, ZeroRelevanceWarning

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


def test_batch_norm_is_folded_into_the_kernel_layer():
    for name in ("conv_bn_relu", "channels_first_bn"):
        analyzer = DTD(model_named(name))
        folded = [n for n in analyzer._graph.nodes if n.op is not None and getattr(n.op, "batch_norm", None)]
        assert folded and not any(n.kind == "batch_norm" for n in analyzer._graph.nodes), name


def test_two_inputs_and_a_shared_layer():
    keras.utils.set_random_seed(3)
    shared = keras.layers.Dense(5, activation="relu")
    a, b = keras.Input((6,)), keras.Input((6,))
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([shared(a), shared(b)])))
    rng = np.random.default_rng(0)
    xa, xb = rng.uniform(0, 1, (8, 6)), rng.uniform(0, 1, (8, 6))
    f = model.predict_on_batch([xa, xb])
    analyzer = DTD(model, input_range=[(0, 1), (0, 1)])
    assert [n.path for n in analyzer._graph.nodes if n.layer is shared] == [shared.name, shared.name + "#1"]
    for selection in ("max_activation", np.arange(8) % 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ZeroRelevanceWarning)
            ra, rb = analyzer.analyze([xa, xb], neuron_selection=selection)
        chosen = f.argmax(axis=1) if isinstance(selection, str) else selection
        np.testing.assert_allclose(
            ra.sum(axis=1) + rb.sum(axis=1), np.maximum(f[np.arange(8), chosen], 0), rtol=1e-5, atol=1e-7
        )
        assert min(ra.min(), rb.min()) >= 0
