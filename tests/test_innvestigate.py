"""create_analyzer against iNNvestigate 2.1.2's own maps.

The maps come from tests/fixtures/make_innvestigate.py (run in its own environment with
TensorFlow 2.14 and iNNvestigate; see its docstring): six small models, every one of
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

from keras_dtd import create_analyzer
from keras_dtd.compat import ANALYZERS

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
STOCHASTIC = _group("mean_std")


@pytest.fixture(scope="module")
def models():
    built = {}
    for name, build in parity_models.INNVESTIGATE_MODELS.items():
        model = build(keras)
        model.set_weights([DATA[f"{name}/weights/{i}"] for i in range(len(model.get_weights()))])
        built[name] = model
    return built


def _analyze(models, key, **overrides):
    case = CASES[key]
    model_name = key.split("/")[0]
    kwargs = {**(case.get("kwargs") or {}), **overrides}
    analyzer = create_analyzer(case["name"], models[model_name], neuron_selection_mode=case["mode"], **kwargs)
    x = DATA[f"{model_name}/x"]
    if case["mode"] == "index":
        return analyzer.analyze(x, neuron_selection=case["neuron_selection"])
    return analyzer.analyze(x)


def test_every_innvestigate_name_is_accepted():
    assert set(META["registry"]) <= set(ANALYZERS) and len(META["registry"]) == 28


def test_fixture_explains_negative_outputs():
    negative = META["negative_logits"]
    assert sum(len(negative[m]["index_2"]) for m in negative) >= 20


@pytest.mark.parametrize("name, kwargs", list(MAPS), ids=[f"{n}{k if k != '{}' else ''}" for n, k in MAPS])
def test_reproduces_innvestigate(models, name, kwargs):
    for key in MAPS[(name, kwargs)]:
        expected = DATA[key]
        got = _analyze(models, key)
        scale = max(np.abs(expected).max(), 1e-12)
        np.testing.assert_allclose(got, expected, atol=1e-4 * scale, rtol=0, err_msg=key)


@pytest.mark.parametrize("name, kwargs", [("lrp", {}), ("lrp.alpha_beta", {}), ("deep_taylor.bounded", {})])
def test_missing_required_arguments_are_named(models, name, kwargs):
    assert all(
        c.get("error") for c in CASES.values() if c["name"] == name and not c.get("kwargs")
    )  # so does iNNvestigate
    with pytest.raises(ValueError, match="needs"):
        create_analyzer(name, models["mlp"], **kwargs)


def test_random_is_the_input_plus_unit_noise(models):
    for key in STOCHASTIC[("random", "{}")]:
        noise = _analyze(models, key) - DATA[f"{key.split('/')[0]}/x"]
        assert abs(noise.mean()) < 4 / np.sqrt(noise.size) and abs(noise.std() - 1) < 0.2
        mean, std = DATA[key]  # iNNvestigate's map: the same x plus other draws of the noise
        got = _analyze(models, key)
        assert abs(got.mean() - mean) < 4 * np.sqrt(2 / got.size) and abs(
            got.std() - std
        ) < 4 * std / np.sqrt(got.size)


def test_smoothgrad_noise_free_limit_is_the_gradient(models):
    for key in MAPS[("gradient", "{}")]:
        got = _analyze(models, key)
        case = CASES[key]
        model = models[key.split("/")[0]]
        smooth = create_analyzer(
            "smoothgrad", model, neuron_selection_mode=case["mode"], noise_scale=0.0, augment_by_n=4
        )
        x = DATA[f"{key.split('/')[0]}/x"]
        selection = {"neuron_selection": case["neuron_selection"]} if case["mode"] == "index" else {}
        np.testing.assert_allclose(smooth.analyze(x, **selection), got, rtol=1e-5, atol=1e-7)


def test_smoothgrad_matches_innvestigates_distribution(models):
    """iNNvestigate adds N(0, 1) noise (it ignores noise_scale): our noise_scale=1 maps have
    its mean and spread, up to the noise of 64 draws."""
    for key in STOCHASTIC[("smoothgrad", "{}")]:
        mean, std = DATA[key]
        got = _analyze(models, key)
        assert abs(got.mean() - mean) < 0.25 * std + 1e-3 and abs(got.std() - std) < 0.25 * std, key


def test_unknown_keyword_is_named(models):
    with pytest.raises(ValueError, match="does not take epsilom"):
        create_analyzer("lrp.epsilon", models["mlp"], epsilom=0.1)
