"""create_analyzer against iNNvestigate 2.1.2's own maps.

The maps come from tests/fixtures/make_innvestigate.py (run in its own environment with
TensorFlow 2.14 and iNNvestigate; see its docstring): seven small models, every one of
iNNvestigate's 28 analyzer names (some with several keyword sets), for each sample's top
output and for outputs 0 and 2 (samples with negative selected outputs included).
``mlp_softmax`` ran on ``innvestigate.model_wo_softmax``; keras_dtd strips the final
softmax itself, so it gets the raw model.
"""

import json
import pathlib
import sys

import keras
import numpy as np
import pytest

from keras_dtd import Analyzer, composites, create_analyzer, rules
from keras_dtd.compat import ANALYZERS, CompatAnalyzer

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import parity_models  # noqa: E402

DATA = np.load(FIXTURES / "innvestigate.npz")
CASES = {k: c for k, c in json.loads(str(DATA["cases"])).items() if "@raw_softmax" not in k}
META = json.loads(str(DATA["meta"]))


def _group(stored):
    """{(name, kwargs as JSON): [case keys]} of the cases with the given ``stored`` kind."""
    groups = {}
    for key, case in CASES.items():
        if case.get("stored") == stored and not case.get("error"):
            groups.setdefault(
                (case["name"], json.dumps(case.get("kwargs") or {}, sort_keys=True)), []
            ).append(key)
    return groups


MAPS = _group("map")
# Both sides run in float64 from the same float32-exact weights and inputs (iNNvestigate with floatx float64).
# What separates them is rounding (u = 1.1e-16) amplified by the condition of the rules' denominators,
# largest in αβ with the whole bias in both denominators on cnn_strided_gap; measured: at most 4.0e-15 of
# max |R| over all 630 maps, with oneDNN on and off (tests/fixtures/README.md). 1e-9 leaves a margin of 10⁵
# for other CPUs and kernels; a rule or convention that differs (ε, a bias term, a flipped sign) moves maps by
# far more (iNNvestigate's default ε = 1e-7 made 1.1e-7 fails the three tests that use it).
TOLERANCE = 1e-9
STOCHASTIC = _group("mean_std")


@pytest.fixture(scope="module")
def models():
    """The fixture's models in float64, as iNNvestigate ran them (its weights are float32 values)."""
    built = {}
    for name, build in parity_models.INNVESTIGATE_MODELS.items():
        model = parity_models.build_in(keras, build, "float64")
        model.set_weights([DATA[f"{name}/weights/{i}"] for i in range(len(model.get_weights()))])
        built[name] = model
    return built


def _analyzers(models, keys):
    """{key: the case's analyzer}: one build per (model, name, kwargs), shared by its selection modes."""
    built, out = {}, {}
    for key in keys:
        case = CASES[key]
        model_name = key.split("/")[0]
        kwargs = case.get("kwargs") or {}
        which = (model_name, case["name"], json.dumps(kwargs, sort_keys=True))
        if which not in built:
            built[which] = create_analyzer(case["name"], models[model_name], **kwargs).analyzer
        out[key] = CompatAnalyzer(built[which], case["mode"])
    return out


def _analyze(analyzer, key):
    case = CASES[key]
    x = DATA[f"{key.split('/')[0]}/x"]
    if case["mode"] == "index":
        return analyzer.analyze(x, neuron_selection=case["neuron_selection"])
    return analyzer.analyze(x)


def test_deep_taylor_on_standalone_relus_is_innvestigates(models):
    """cnn_standalone_relu's second convolution and hidden Dense have their ReLUs as layers of their own.
    iNNvestigate gives them its rule for kernel layers with an activation (α1β0, as every Dense/Conv has
    an ``activation`` attribute); its w² rule for kernel layers without one would differ by far more."""
    keys = [k for k in MAPS[("deep_taylor", "{}")] if k.startswith("cnn_standalone_relu/")]
    assert len(keys) == 3
    model, x = models["cnn_standalone_relu"], DATA["cnn_standalone_relu/x"]
    expected = DATA["cnn_standalone_relu/deep_taylor/max_activation"]
    scale = np.abs(expected).max()
    got = create_analyzer("deep_taylor", model).analyze(x)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE * scale, rtol=0)
    composite = create_analyzer("deep_taylor", model).analyzer.composite
    for name in ("conv_2", "dense_1"):
        w2 = composites.Composite(composite.rules, composite.first, {name: rules.WSquare()}, name="w2")
        assert np.abs(Analyzer(model, w2).analyze(x) - expected).max() > 0.1 * scale, name


def test_every_innvestigate_name_is_accepted():
    assert set(META["registry"]) <= set(ANALYZERS) and len(META["registry"]) == 28


def test_fixture_explains_negative_outputs():
    negative = META["negative_logits"]
    assert sum(len(negative[m]["index_2"]) for m in negative) >= 20


@pytest.mark.parametrize("name, kwargs", list(MAPS), ids=[f"{n}{k if k != '{}' else ''}" for n, k in MAPS])
def test_reproduces_innvestigate(models, name, kwargs):
    for key, analyzer in _analyzers(models, MAPS[(name, kwargs)]).items():
        expected = DATA[key]
        got = _analyze(analyzer, key)
        assert got.dtype == np.float64, key
        scale = max(np.abs(expected).max(), 1e-300)
        np.testing.assert_allclose(got, expected, atol=TOLERANCE * scale, rtol=0, err_msg=key)


@pytest.mark.parametrize("name, kwargs", [("lrp", {}), ("lrp.alpha_beta", {}), ("deep_taylor.bounded", {})])
def test_missing_required_arguments_are_named(models, name, kwargs):
    assert all(
        c.get("error") for c in CASES.values() if c["name"] == name and not c.get("kwargs")
    )  # so does iNNvestigate
    with pytest.raises(ValueError, match="needs"):
        create_analyzer(name, models["mlp"], **kwargs)


def test_random_is_the_input_plus_unit_noise(models):
    for key, analyzer in _analyzers(models, STOCHASTIC[("random", "{}")]).items():
        noise = _analyze(analyzer, key) - DATA[f"{key.split('/')[0]}/x"]
        assert abs(noise.mean()) < 4 / np.sqrt(noise.size) and abs(noise.std() - 1) < 0.2
        mean, std = DATA[key]  # iNNvestigate's map: the same x plus other draws of the noise
        got = _analyze(analyzer, key)
        assert abs(got.mean() - mean) < 4 * np.sqrt(2 / got.size) and abs(
            got.std() - std
        ) < 4 * std / np.sqrt(got.size)


def test_smoothgrad_noise_free_limit_is_the_gradient(models):
    smooth = {}
    for key, gradient in _analyzers(models, MAPS[("gradient", "{}")]).items():
        model_name = key.split("/")[0]
        if model_name not in smooth:
            smooth[model_name] = create_analyzer(
                "smoothgrad", models[model_name], noise_scale=0.0, augment_by_n=4
            )
        got = _analyze(CompatAnalyzer(smooth[model_name].analyzer, CASES[key]["mode"]), key)
        np.testing.assert_allclose(got, _analyze(gradient, key), rtol=1e-12, atol=1e-15 * np.abs(got).max())


def test_smoothgrad_matches_innvestigates_distribution(models):
    """iNNvestigate adds N(0, 1) noise (it ignores noise_scale): our noise_scale=1 maps have
    its mean and spread, up to the noise of 64 draws."""
    for key, analyzer in _analyzers(models, STOCHASTIC[("smoothgrad", "{}")]).items():
        mean, std = DATA[key]
        got = _analyze(analyzer, key)
        assert abs(got.mean() - mean) < 0.25 * std + 1e-3 and abs(got.std() - std) < 0.25 * std, key


def test_unknown_keyword_is_named(models):
    with pytest.raises(ValueError, match="does not take epsilom"):
        create_analyzer("lrp.epsilon", models["mlp"], epsilom=0.1)
