"""Analyzers read weights when they run: a LoRA update made after an analyzer was built is in
its maps, a quantized kernel is explained through its dequantized values, and a mode that
cannot be dequantized is refused by name (float64 unless the mode needs otherwise)."""

import tempfile
import warnings

import keras
import numpy as np
import pytest

import keras_dtd
from keras_dtd import DTD, LRP, rules
from keras_dtd.callbacks import RelevanceMonitor
from keras_dtd.compat import ANALYZERS

F64 = "float64"
L = keras.layers


def _dense(first):
    inp = keras.Input((6,), dtype=F64)
    return keras.Model(inp, L.Dense(3, dtype=F64)(first(inp)))


def _conv(first):
    inp = keras.Input((6, 6, 2), dtype=F64)
    return keras.Model(inp, L.Dense(3, dtype=F64)(L.Flatten(dtype=F64)(first(inp))))


def _einsum(first):
    inp = keras.Input((4, 6), dtype=F64)
    return keras.Model(inp, L.Dense(3, dtype=F64)(L.Flatten(dtype=F64)(first(inp))))


LORA_CASES = {  # (model builder, first layer)
    "dense": (_dense, lambda: L.Dense(5, activation="relu", dtype=F64)),
    "conv2d": (_conv, lambda: L.Conv2D(4, 3, activation="relu", dtype=F64)),
    "einsum_dense": (
        _einsum,
        lambda: L.EinsumDense("abc,cd->abd", (4, 5), bias_axes="d", activation="relu", dtype=F64),
    ),
}


def _quiet(analyze, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.ZeroRelevanceWarning)
        return analyze(x)


def _base_kernel(layer):
    """The stored kernel variable (frozen under LoRA; the quantized values when quantized)."""
    (kernel,) = [v for v in layer.variables if v.name == "kernel"]
    return kernel.numpy()


def _merged(layer):
    """W + (α/r)·A·B, the kernel a LoRA-enabled layer computes with, in numpy."""
    a, b = layer.lora_kernel_a.numpy(), layer.lora_kernel_b.numpy()
    return _base_kernel(layer) + (layer.lora_alpha / layer.lora_rank) * (a @ b)


@pytest.mark.parametrize("name", list(LORA_CASES))
def test_an_analyzer_built_before_a_lora_update_follows_it(name):
    build, first = LORA_CASES[name]
    rng = np.random.default_rng(0)
    model = build(first())
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    x = rng.uniform(-1, 1, (5,) + model.input_shape[1:])
    layer = model.layers[1]
    analyzers = {"DTD": DTD(model), "LRP-ε": LRP(model, rules.Epsilon(0.01))}
    before = {k: _quiet(a.analyze, x) for k, a in analyzers.items()}  # traced before LoRA exists
    layer.enable_lora(2)
    layer.lora_kernel_a.assign(rng.normal(0, 0.5, layer.lora_kernel_a.shape))
    layer.lora_kernel_b.assign(rng.normal(0, 0.5, layer.lora_kernel_b.shape))
    twin = build(first())  # no LoRA: the merged kernel as its own
    twin.set_weights([_merged(layer), layer.bias.numpy(), *model.layers[-1].get_weights()])
    np.testing.assert_allclose(model.predict(x, verbose=0), twin.predict(x, verbose=0), rtol=1e-10)
    fresh = {"DTD": DTD(twin), "LRP-ε": LRP(twin, rules.Epsilon(0.01))}
    for key, analyzer in analyzers.items():
        after = _quiet(analyzer.analyze, x)
        np.testing.assert_allclose(after, _quiet(fresh[key].analyze, x), rtol=1e-10, atol=1e-13)
        assert np.abs(after - before[key]).max() > 1e-2 * np.abs(after).max(), key
        layer.lora_kernel_b.assign(layer.lora_kernel_b.numpy() * 0.5)  # a later update, same variables
        twin.layers[1].set_weights([_merged(layer), layer.bias.numpy()])
        np.testing.assert_allclose(
            _quiet(analyzer.analyze, x),
            _quiet(type(fresh[key])(twin, **_kwargs(key)).analyze, x),
            rtol=1e-10,
            atol=1e-13,
        )


def _kwargs(key):
    return {} if key == "DTD" else {"rule": rules.Epsilon(0.01)}


def test_the_training_callback_follows_a_lora_adapter_as_it_trains():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, 6)).astype("float32")
    y = (x[:, :3].sum(axis=1) > x[:, 3:].sum(axis=1)).astype("int32")
    model = keras.Sequential([keras.Input((6,)), L.Dense(5, activation="relu"), L.Dense(2)])
    model.layers[0].enable_lora(2)  # the base kernel is frozen: only the adapter trains
    frozen = _base_kernel(model.layers[0]).copy()
    model.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with tempfile.TemporaryDirectory() as log_dir:
        monitor = RelevanceMonitor(x[:4], log_dir, method="deep_taylor")  # each sample's predicted class
        model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[monitor])
    np.testing.assert_array_equal(_base_kernel(model.layers[0]), frozen)
    maps = [monitor.history[step] for step in sorted(monitor.history)]
    assert len(maps) >= 3 and np.abs(maps[-1] - maps[0]).max() > 1e-3 * np.abs(maps[-1]).max()
    fresh = ANALYZERS["deep_taylor"](model).analyze(x[:4])  # built after training
    np.testing.assert_allclose(maps[-1], fresh, rtol=1e-5, atol=1e-7)


def _one_hot_kernel(layer, n_in):
    """The kernel a quantized Dense (linear activation) computes with, read from its own call on
    one-hot inputs (which its input quantization represents exactly): W_i = layer(e_i) − b."""
    eye = np.eye(n_in, dtype=layer.compute_dtype)
    return np.asarray(layer(eye)) - layer.bias.numpy()


def _quantizable(dtype):
    inp = keras.Input((6,), dtype=dtype)
    h = L.ReLU(dtype=dtype)(L.Dense(5, dtype=dtype, name="d1")(inp))
    return keras.Model(inp, L.Dense(3, dtype=dtype, name="d2")(h))


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_int_quantized_kernels_are_explained_through_their_dequantized_values(mode):
    rng = np.random.default_rng(1)
    model = _quantizable(F64)
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    x = rng.uniform(-1, 1, (5, 6))
    analyzer = DTD(model)  # built before quantizing: it must follow
    _quiet(analyzer.analyze, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras: "InputLayer does not have a quantize method"
        model.quantize(mode)
    d1, d2 = model.get_layer("d1"), model.get_layer("d2")
    assert d1.quantization_mode == mode
    twin = _quantizable(F64)
    twin.set_weights([_one_hot_kernel(d1, 6), d1.bias.numpy(), _one_hot_kernel(d2, 5), d2.bias.numpy()])
    assert np.abs(twin.get_weights()[0] - model.get_weights()[0]).max() > 0  # the kernels are rounded
    expected = _quiet(DTD(twin).analyze, x)

    # the reference goes through Keras' own int8 call, whose input scale is float32: its W carries
    # float32 rounding (2^-24 ≈ 6e-8 per entry), the maps a few times that relative to max |R|; a
    # wrong dequantization (q·s for q/s, a missing zero point) moves them by orders of magnitude more
    def close(actual, desired):
        assert np.abs(actual - desired).max() <= 2e-6 * np.abs(desired).max()

    close(_quiet(analyzer.analyze, x), expected)
    close(_quiet(DTD(model).analyze, x), expected)
    epsilon = rules.Epsilon(0.01)
    close(_quiet(LRP(model, epsilon).analyze, x), _quiet(LRP(twin, epsilon).analyze, x))


def test_a_float8_layer_keeps_its_float_kernel():
    rng = np.random.default_rng(2)
    model, twin = _quantizable(F64), _quantizable(F64)
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    twin.set_weights(model.get_weights())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.quantize("float8")
    x = rng.uniform(-1, 1, (5, 6))
    np.testing.assert_allclose(_quiet(DTD(model).analyze, x), _quiet(DTD(twin).analyze, x), rtol=1e-12)


def test_a_quantized_embedding_is_explained_through_its_own_lookup():
    rng = np.random.default_rng(3)
    inp = keras.Input((4,), dtype="int32")
    model = keras.Model(inp, L.Dense(3, name="d")(L.Flatten()(L.Embedding(10, 3, name="e")(inp))))
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.quantize("int8")
    twin_input = keras.Input((4,), dtype="int32")
    twin = keras.Model(twin_input, L.Dense(3)(L.Flatten()(L.Embedding(10, 3)(twin_input))))
    table = np.asarray(model.get_layer("e")(np.arange(10)))  # the dequantized table, from the layer
    twin.set_weights([table, _one_hot_kernel(model.get_layer("d"), 12), model.get_layer("d").bias.numpy()])
    tokens = rng.integers(0, 10, (5, 4))
    r = LRP(model, rules.Epsilon(0.01)).analyze(tokens)
    np.testing.assert_allclose(r, LRP(twin, rules.Epsilon(0.01)).analyze(tokens), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy", ["gptq/4/-1_from_float32", "awq/4/-1_from_float32"])
def test_modes_without_dequantization_are_refused_by_name(policy):
    inp = keras.Input((6,))
    model = keras.Model(inp, L.Dense(3, dtype=policy, name="packed")(L.Dense(4, activation="relu")(inp)))
    mode = policy.split("/")[0]
    with pytest.raises(
        keras_dtd.UnsupportedLayerError, match=rf"'packed'.*mode '{mode}'.*before model.quantize"
    ):
        DTD(model)


def test_a_layer_quantized_after_the_analyzer_was_built_is_refused_at_the_next_call():
    inp = keras.Input((4, 6))
    model = keras.Model(inp, L.Flatten()(L.EinsumDense("abc,cd->abd", (4, 3), name="e")(inp)))
    analyzer = LRP(model, rules.Epsilon())
    x = np.random.default_rng(4).uniform(-1, 1, (2, 4, 6)).astype("float32")
    analyzer.analyze(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.quantize("int8")
    with pytest.raises(keras_dtd.UnsupportedLayerError, match=r"'e' \(EinsumDense\).*mode 'int8'"):
        analyzer.analyze(x)


def test_an_analyzer_follows_a_lora_embedding():
    rng = np.random.default_rng(5)

    def build():
        inp = keras.Input((4,), dtype="int32")
        return keras.Model(
            inp, L.Dense(3, dtype=F64)(L.Flatten(dtype=F64)(L.Embedding(10, 3, dtype=F64)(inp)))
        )

    model, twin = build(), build()
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    tokens = rng.integers(0, 10, (5, 4))
    analyzer = LRP(model, rules.Epsilon(0.01))
    before = analyzer.analyze(tokens)
    embedding = model.layers[1]
    embedding.enable_lora(2)
    embedding.lora_embeddings_a.assign(rng.normal(0, 0.5, embedding.lora_embeddings_a.shape))
    embedding.lora_embeddings_b.assign(rng.normal(0, 0.5, embedding.lora_embeddings_b.shape))
    a, b = embedding.lora_embeddings_a.numpy(), embedding.lora_embeddings_b.numpy()
    (table,) = [v.numpy() for v in embedding.variables if v.name == "embeddings"]
    scale = embedding.lora_alpha / embedding.lora_rank
    twin.set_weights([table + scale * (a @ b), *model.layers[-1].get_weights()])
    after = analyzer.analyze(tokens)
    np.testing.assert_allclose(after, LRP(twin, rules.Epsilon(0.01)).analyze(tokens), rtol=1e-10, atol=1e-13)
    assert np.abs(after - before).max() > 1e-2 * np.abs(after).max()


def test_taylor_follows_a_lora_update():
    rng = np.random.default_rng(6)
    build, first = LORA_CASES["dense"]
    model, twin = build(first()), build(first())
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    x = rng.uniform(-1, 1, (4, 6))
    taylor = keras_dtd.Taylor(model, root=np.zeros(6))
    before = taylor.analyze(x)
    layer = model.layers[1]
    layer.enable_lora(2)
    layer.lora_kernel_a.assign(rng.normal(0, 0.5, layer.lora_kernel_a.shape))
    layer.lora_kernel_b.assign(rng.normal(0, 0.5, layer.lora_kernel_b.shape))
    twin.set_weights([_merged(layer), layer.bias.numpy(), *model.layers[-1].get_weights()])
    after = taylor.analyze(x)
    np.testing.assert_allclose(
        after, keras_dtd.Taylor(twin, root=np.zeros(6)).analyze(x), rtol=1e-10, atol=1e-13
    )
    assert np.abs(after - before).max() > 1e-2 * np.abs(after).max()
