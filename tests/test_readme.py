"""The README's code runs and does what it says."""

import pathlib
import re

import keras
import numpy as np

import keras_dtd

README = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()


def _block(marker):
    match = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", README, re.S)
    assert match, f"README has no python block after <!-- {marker} -->"
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


def test_composite_example_runs_and_maps_have_the_input_shape():
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
    x = np.random.default_rng(0).uniform(0, 1, (3, 6, 6, 1)).astype("float32")
    scope = {"model": model, "x": x, "keras": keras}
    exec(
        _block("composites")
        .replace(
            "LRP(model, composites.EpsilonPlus())", "first = LRP(model, composites.EpsilonPlus()).analyze(x)"
        )
        .replace("LRP(model, composites.Composite(", "second = LRP(model, composites.Composite("),
        scope,
    )
    assert scope["first"].shape == x.shape and scope["second"].shape == x.shape
    assert np.all(np.isfinite(scope["first"])) and np.abs(scope["second"]).sum() > 0
