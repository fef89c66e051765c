"""The README's code runs and does what it says."""

import pathlib
import re

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
        R, model = scope["R"], scope["model"]
        assert R.shape == (3, 5) and np.all(R >= 0)
    finally:
        keras_dtd.unregister_rule(scope["Double"])
