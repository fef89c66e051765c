r"""iNNvestigate 2.1.2 on the suite's VGG-style case; run by ``benchmarks/suite.py`` with the
iNNvestigate environment's python (TF 2.14, graph mode)::

    $KERAS_DTD_INNVESTIGATE_PYTHON benchmarks/peers/innvestigate_vgg.py \
        --case case.npz --out maps.npz --repeats 9

``case.npz`` (written by keras_dtd's side of the suite) holds the layer list, the weights, the
inputs and keras_dtd's logits. Times iNNvestigate's ``lrp.epsilon`` (ε = 1e-7), ``deep_taylor``,
``deep_taylor.bounded`` (low 0, high 1) and its own ``gradient``, interleaved (the order rotates
every round), top output (``max_activation``); saves the maps to ``--out`` and prints one JSON line.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.compat.v1.disable_eager_execution()

import innvestigate  # noqa: E402
from tensorflow import keras  # noqa: E402

METHODS = {  # label: (iNNvestigate name, kwargs); the gradient first (it carries TF's warm-up)
    "gradient": ("gradient", {}),
    "LRP-ε": ("lrp.epsilon", {"epsilon": 1e-7}),
    "deep_taylor": ("deep_taylor", {}),
    "deep_taylor.bounded": ("deep_taylor.bounded", {"low": 0.0, "high": 1.0}),
}


def build(layers, weights, input_shape):
    model = keras.Sequential([keras.Input(input_shape)])
    for spec in layers:
        kind = spec["type"]
        if kind == "Conv2D":
            layer = keras.layers.Conv2D(
                spec["filters"],
                spec["kernel_size"],
                strides=spec["strides"],
                padding=spec["padding"],
                activation=spec["activation"],
                name=spec["name"],
            )
        elif kind == "MaxPooling2D":
            layer = keras.layers.MaxPooling2D(
                spec["pool_size"], spec["strides"], spec["padding"], name=spec["name"]
            )
        elif kind == "Flatten":
            layer = keras.layers.Flatten(name=spec["name"])
        elif kind == "Dense":
            layer = keras.layers.Dense(spec["units"], activation=spec["activation"], name=spec["name"])
        else:
            raise TypeError(f"no mapping for {kind}")
        model.add(layer)
        if kind in ("Conv2D", "Dense"):
            layer.set_weights([weights[f"{spec['name']}/kernel"], weights[f"{spec['name']}/bias"]])
    return model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()

    case = np.load(args.case)
    x = case["x"]
    model = build(json.loads(str(case["layers"])), case, x.shape[1:])
    logits = model.predict(x, verbose=0)

    result = {
        "version": "2.1.2",
        "tensorflow": tf.__version__,
        "methods": {},
        "logits_max_abs_diff": float(np.abs(logits - case["logits"]).max()),
        "notes": "TF %s graph mode (tf.compat.v1.disable_eager_execution); `gradient` is iNNvestigate's "
        "gradient analyzer" % tf.__version__,
    }
    analyzers, maps = {}, {}
    for label, (name, kwargs) in METHODS.items():
        start = time.perf_counter()
        analyzers[label] = innvestigate.create_analyzer(name, model, **kwargs)
        maps[label] = np.asarray(analyzers[label].analyze(x), dtype="float32")
        result["methods"][label] = {
            "build_s": time.perf_counter() - start,
            "label": f"{name}" + (f" ({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else ""),
        }
    np.savez(args.out, **maps)

    names = list(METHODS)
    times = {n: [] for n in names}
    for r in range(args.repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            start = time.perf_counter()
            analyzers[n].analyze(x)
            times[n].append(1000 * (time.perf_counter() - start))
    for n in names:
        result["methods"][n].update(
            ms=statistics.median(times[n]),
            ratio=statistics.median(a / b for a, b in zip(times[n], times["gradient"])),
            all=times[n],
        )
    result["rss_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
