"""keras_dtd's composites and rules against zennit 1.0.0's own maps.

The maps come from tests/fixtures/make_zennit.py (run in its own environment with
PyTorch and zennit; see its docstring): six small models, zennit's five composites and
nine single rules (one rule on every Dense/Conv, zennit's defaults elsewhere), each
starting from the signed selected logit, for each sample's top class and for class 2.
"""

import json
import pathlib
import sys

import keras
import numpy as np
import pytest

from keras_dtd import LRP, composites, rules

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import parity_models  # noqa: E402

DATA = np.load(FIXTURES / "zennit.npz")
CASES = json.loads(str(DATA["cases"]))["cases"]
EPS = 1e-6  # zennit's stabilizer
# Both sides in float64 (the fixture's maps are zennit's float64 attributions from float32-exact weights and
# inputs). What separates them is rounding (u = 1.1e-16) amplified by the condition of the rules'
# denominators, which the ε = 1e-6 stabilizer bounds; measured: at most 2.3e-15 of max |R| over all 168 maps,
# with oneDNN on and off (tests/fixtures/README.md). 1e-9 leaves a margin of 10⁵ for other CPUs and kernels,
# and is far below what a different rule or convention changes (ε = 1e-6 against 0.1, the bias in or out of
# the denominator: ≥ 1e-4 of max |R|).
TOLERANCE = 1e-9

COMPOSITES = {
    "EpsilonPlus": composites.EpsilonPlus,
    "EpsilonPlusFlat": composites.EpsilonPlusFlat,
    "EpsilonGammaBox": lambda: composites.EpsilonGammaBox(low=parity_models.LOW, high=parity_models.HIGH),
    "EpsilonAlpha2Beta1": composites.EpsilonAlpha2Beta1,
    "EpsilonAlpha2Beta1Flat": composites.EpsilonAlpha2Beta1Flat,
}
RULES = {  # zennit's rule → keras_dtd's rule with zennit's conventions
    "Epsilon": rules.Epsilon(1e-6),
    "Epsilon_0.1": rules.Epsilon(0.1),
    "ZPlus": rules.AlphaBeta(1, 0, bias="include", stabilizer=EPS),
    "AlphaBeta_2_1": rules.AlphaBeta(2, 1, bias="include", stabilizer=EPS),
    "AlphaBeta_1_0": rules.AlphaBeta(1, 0, bias="include", stabilizer=EPS),
    "Gamma_0.25": rules.Gamma(0.25, bias="include", stabilizer=EPS, sign_aware=True),
    "WSquare": rules.WSquare(bias="include", stabilizer=EPS),
    "Flat": rules.Flat(stabilizer=EPS),
    "ZBox": rules.ZBox(parity_models.LOW, parity_models.HIGH, stabilizer=EPS),
}


def _single_rule(rule):
    """``rule`` on every Dense/Conv, and zennit's layer_map_base elsewhere: Norm (z with the
    stabilizer) on average pooling and sums, Pass on BatchNorm and activations."""
    norm = rules.Z(stabilizer=EPS)
    return composites.Composite(
        {"kernel": rule, "pool": norm, "add": norm, "batch_norm": rules.PassThrough()}
    )


@pytest.fixture(scope="module")
def models():
    built = {}
    for name, build in parity_models.ZENNIT_MODELS.items():
        model = parity_models.build_in(keras, build, "float64")
        weights = [DATA[f"{name}/weights/{i}"] for i in range(len(model.get_weights()))]
        model.set_weights(weights)
        logits = model.predict(DATA[f"{name}/x"].astype("float64"), verbose=0)
        np.testing.assert_allclose(
            logits, DATA[f"{name}/logits64"], rtol=0, atol=1e-12 * np.abs(logits).max()
        )
        built[name] = model
    return built


def _compare(model, composite, model_name, case):
    x = DATA[f"{model_name}/x"].astype("float64")  # float32 values, exact in float64
    analyzer = LRP(model, composite)
    for mode, selection in (("max_activation", "max_activation"), ("index_2", 2)):
        expected = DATA[f"{model_name}/{case}/{mode}"]
        got = analyzer.analyze(x, neuron_selection=selection)
        assert got.dtype == expected.dtype == np.float64
        scale = max(np.abs(expected).max(), 1e-300)
        np.testing.assert_allclose(
            got, expected, atol=TOLERANCE * scale, rtol=0, err_msg=f"{model_name} {case} {mode}"
        )


@pytest.mark.parametrize("model_name", parity_models.ZENNIT_MODELS)
@pytest.mark.parametrize("name", COMPOSITES)
def test_composites_reproduce_zennit(models, model_name, name):
    _compare(models[model_name], COMPOSITES[name](), model_name, f"composite/{name}")


@pytest.mark.parametrize("model_name", parity_models.ZENNIT_MODELS)
@pytest.mark.parametrize("name", RULES)
def test_rules_with_zennits_conventions_reproduce_zennit(models, model_name, name):
    _compare(models[model_name], _single_rule(RULES[name]), model_name, f"rule/{name}")


def test_fixture_covers_negative_selected_outputs():
    """The class-2 cases include samples whose selected logit is negative (signed start)."""
    negative = [k for k, c in CASES.items() if c["mode"] == "index_2" and min(c["selected_logit"]) < 0]
    assert len(negative) > 50
