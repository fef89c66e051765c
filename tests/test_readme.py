"""The README's and the getting-started page's marked code blocks run and do what they say."""

import pathlib
import re

import keras
import numpy as np

import keras_dtd

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text() + (ROOT / "docs" / "index.md").read_text()


def _block(marker):
    match = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", README, re.S)
    assert match, f"README.md and docs/index.md have no python block after <!-- {marker} -->"
    return match.group(1)


def test_quickstart_is_five_lines_and_conservative():
    code = _block("quickstart")
    assert len([line for line in code.splitlines() if line.strip()]) <= 6
    scope = {}
    exec(code, scope)
    R, model, x = scope["R"], scope["model"], scope["x"]
    assert R.shape == x.shape and R.min() >= 0
    f = np.asarray(model.predict_on_batch(x)).max(axis=1)
    np.testing.assert_allclose(R.reshape(len(x), -1).sum(axis=1), np.maximum(f, 0), rtol=1e-5, atol=1e-7)


def test_custom_rule_example():
    scope = {}
    try:
        exec(_block("custom-rule"), scope)
        R, model, x = scope["R"], scope["model"], scope["x"]
        assert R.shape == (3, 5) and np.all(R >= 0)
        f = np.asarray(model.predict_on_batch(x)).max(axis=1)  # zero biases: DTD is conservative
        np.testing.assert_allclose(R.sum(axis=1), np.maximum(f, 0), rtol=1e-5, atol=1e-7)
        # PassThrough: the same as a model without Double whose top kernel is doubled (z⁺ is scale-free in x)
        first, top = model.layers[0], model.layers[2]
        twin = keras.Sequential(
            [keras.Input((5,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)]
        )
        twin.layers[0].set_weights(first.get_weights())
        twin.layers[1].set_weights([2 * top.get_weights()[0], top.get_weights()[1]])
        np.testing.assert_allclose(R, keras_dtd.DTD(twin).analyze(x), rtol=1e-5, atol=1e-7)
    finally:
        keras_dtd.unregister_rule(scope["Double"])


def test_register_layer_example():
    scope = {}
    try:
        exec(_block("register-layer"), scope)
        R, model, x = scope["R"], scope["model"], scope["x"]
        projection, top = model.layers[0], model.layers[2]
        twin = keras.Sequential(
            [
                keras.Input((5,)),
                keras.layers.Dense(3, use_bias=False),
                keras.layers.ReLU(),
                keras.layers.Dense(2),
            ]
        )
        twin.layers[0].set_weights(projection.get_weights())
        twin.layers[2].set_weights(top.get_weights())
        np.testing.assert_allclose(R, keras_dtd.DTD(twin).analyze(x), rtol=1e-6, atol=1e-7)  # the same maths
        f = np.asarray(model.predict_on_batch(x)).max(axis=1)  # zero biases: DTD is conservative
        np.testing.assert_allclose(R.sum(axis=1), np.maximum(f, 0), rtol=1e-5, atol=1e-7)
    finally:
        keras_dtd.unregister_layer(scope["Projection"])


def test_composite_example_runs_and_maps_have_the_input_shape():
    import ast

    import keras

    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(3, 3, activation="relu"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(4),
        ]
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (3, 6, 6, 1)).astype("float32")
    for layer in (model.layers[0], model.layers[-1]):  # biases ≠ 0: the rules' bias terms matter
        layer.bias.assign(rng.uniform(-0.2, 0.2, layer.bias.shape))
    # run the block as written, keeping the value of each top-level expression
    tree = ast.parse(_block("composites"))
    for k, statement in enumerate(tree.body):
        if isinstance(statement, ast.Expr):
            call = ast.Call(ast.Name("_keep", ast.Load()), [statement.value], [])
            tree.body[k] = ast.Expr(call)
    values = []
    scope = {"model": model, "x": x, "keras": keras, "_keep": values.append}
    exec(compile(ast.fix_missing_locations(tree), "README composites", "exec"), scope)
    assert len(values) == 2 and isinstance(values[0], keras_dtd.LRP)
    first, second = values[0].analyze(x), values[1]

    # the same maps in float64 numpy from the layers' weights (LRP explains the signed top logit)
    kernel, b1 = (w.astype(np.float64) for w in model.layers[0].get_weights())
    dense, b2 = (w.astype(np.float64) for w in model.layers[-1].get_weights())
    x64 = x[..., 0].astype(np.float64)
    patches = np.stack([x64[:, a : a + 4, b : b + 4] for a in range(3) for b in range(3)], -1)  # (n,4,4,9)
    w = kernel.reshape(9, 3)  # (a, b) of the 3×3 window → output channel
    hidden = np.maximum(patches @ w + b1, 0)
    pooled = hidden.reshape(3, 2, 2, 2, 2, 3).mean(axis=(2, 4))
    flat = pooled.reshape(3, 12)
    f = flat @ dense + b2
    top = f.argmax(axis=1)
    f_top = f[np.arange(3), top]

    def by_hand(epsilon, pool_stabilizer, conv):
        r_flat = flat * dense[:, top].T * (f_top / (f_top + epsilon * np.where(f_top >= 0, 1, -1)))[:, None]
        r_pooled = r_flat.reshape(3, 2, 2, 3)
        d = pooled + pool_stabilizer
        ratio = np.divide(r_pooled, d, out=np.zeros_like(d), where=d != 0)  # 0 / 0 gives 0
        up = np.repeat(np.repeat(ratio, 2, axis=1), 2, axis=2)
        r_hidden = np.where(hidden > 0, hidden / 4 * up, 0.0)  # Z on the pool: q = a_i / 4
        if conv == "flat":  # q_ij = 1: each output's relevance split evenly over its 9 inputs
            r_patches = np.broadcast_to(r_hidden.sum(axis=-1, keepdims=True) / 9, (3, 4, 4, 9))
        else:  # zennit's z⁺ (inputs ≥ 0): q = x w⁺, denominator Σ x w⁺ + b⁺ + 1e-6
            positive = np.maximum(w, 0)
            s = r_hidden / (patches @ positive + np.maximum(b1, 0) + 1e-6)
            r_patches = patches * (s @ positive.T)
        r = np.zeros((3, 6, 6))
        for k, (a, b) in enumerate((a, b) for a in range(3) for b in range(3)):
            r[:, a : a + 4, b : b + 4] += r_patches[..., k]
        return r[..., None]

    expected_first = by_hand(1e-6, 1e-6, "zplus")  # EpsilonPlus: ε 1e-6, Norm (z + 1e-6) on the pool
    expected_second = by_hand(0.1, 0.0, "flat")  # Dense ε 0.1, pool Z, first kernel layer Flat
    for got, expected in ((first, expected_first), (second, expected_second)):
        assert got.shape == x.shape and np.abs(expected).sum() > 0
        # float32 against float64 over four layers: atol 1e-6 of max |R|
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_kerashub_example_gives_token_maps_with_zeros_at_the_padding():
    namespace = {}
    exec(_block("kerashub"), namespace)
    maps, x = namespace["maps"], namespace["x"]
    assert sorted(maps) == ["token_ids"] and maps["token_ids"].shape == x["token_ids"].shape
    assert np.all(maps["token_ids"][1, 5:] == 0.0) and np.abs(maps["token_ids"][:, :5]).max() > 0
