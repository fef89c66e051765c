"""Where keras_dtd's DTD deliberately differs from iNNvestigate's deep_taylor: conservation
and negative share on the parity models (tests/fixtures).

    .venv/bin/python benchmarks/conventions.py

For the models iNNvestigate 2.1.2 was run on (innvestigate.npz), its stored maps are used
("iNNvestigate 2.1.2"). The residual model was run through zennit only; there, iNNvestigate's
conventions (the gradient through Add, which copies relevance to both summands) are applied
by ``create_analyzer``, which reproduces iNNvestigate on every fixture model
(tests/test_innvestigate.py).
"""

import json
import pathlib
import sys
import warnings

import keras
import numpy as np

import keras_dtd

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import parity_models  # noqa: E402


def _errors(relevance, f):
    """(max relative conservation error over samples with f > 0, max negative share)."""
    flat = relevance.reshape(len(relevance), -1).astype(np.float64)
    ok = f > 0
    error = np.abs(flat.sum(axis=1)[ok] - f[ok]) / f[ok]
    negative = np.abs(np.minimum(flat, 0)).sum(axis=1) / np.maximum(np.abs(flat).sum(axis=1), 1e-300)
    return error.max(), negative.max()


def _model(name, data):
    model = parity_models.ZENNIT_MODELS.get(name) or parity_models.INNVESTIGATE_MODELS[name]
    model = model(keras)
    model.set_weights([data[f"{name}/weights/{i}"] for i in range(len(model.get_weights()))])
    return model


def main():
    warnings.simplefilter("ignore")
    fixtures = ROOT / "tests" / "fixtures"
    innvestigate, zennit = np.load(fixtures / "innvestigate.npz"), np.load(fixtures / "zennit.npz")
    cases = json.loads(str(innvestigate["cases"]))
    print(
        "| model | analyzer | max relative conservation error | max negative share "
        "| distance to DTD: max abs(R − R_DTD) / max abs(R_DTD) |"
    )
    print("|---|---|---|---|---|")
    for name, data in (
        ("cnn_pool", innvestigate),
        ("cnn_strided_gap", innvestigate),
        ("concat", innvestigate),
        ("residual", zennit),
    ):
        model, x = _model(name, data), data[f"{name}/x"]
        f = model.predict(x, verbose=0).max(axis=1)
        rows = {"keras_dtd DTD(input_range=(-1, 1))": keras_dtd.DTD(model, input_range=(-1, 1)).analyze(x)}
        key = f"{name}/deep_taylor.bounded[low=-1;high=1]/max_activation"
        if key in cases:
            rows["iNNvestigate 2.1.2 deep_taylor.bounded (its own maps)"] = innvestigate[key]
        else:
            analyzer = keras_dtd.create_analyzer("deep_taylor.bounded", model, low=-1, high=1)
            rows["iNNvestigate's conventions (create_analyzer)"] = analyzer.analyze(x)
        reference = next(iter(rows.values()))
        for label, relevance in rows.items():
            error, negative = _errors(relevance, f)
            gap = np.abs(relevance - reference).max() / np.abs(reference).max()
            print(f"| {name} | {label} | {error:.3g} | {negative:.3g} | {gap:.3g} |")


if __name__ == "__main__":
    main()
