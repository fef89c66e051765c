"""DTD on the keras.applications families: build time, speed, memory and conservation.

Each family (weights=None, include_top=True, classes=10) runs in its own subprocess
so that peak RSS is per family. Per family it measures:

- build s (DTD): DTD(model, input_range=pixel bounds) + first analyze (trace + compile + run);
- first call s (gradient): a tf.function input gradient, first call (trace + compile + run),
  and their ratio. Each of the two is measured in a fresh interpreter right after building
  the Keras model, so neither pays for the other's warm-up of TensorFlow;
- DTD and gradient ms/batch: medians of K interleaved (analyze, gradient) pairs after
  warm-up, and the median of the per-pair ratios;
- peak RSS (ru_maxrss) after building the Keras model and after the first analyze;
- conservation error: max over samples of |Σ relevance - target| / target, and the
  share of negative relevance: Σ|R<0| / Σ|R|.

Inputs are uniform random pixels in [0, 255] (numpy seed 0) put through the family's
preprocess_input; input_range is that function applied to all-0 and all-255 images.
Families with built-in preprocessing (MobileNetV3, EfficientNet, EfficientNetV2,
ConvNeXt) take raw pixels, bounds (0, 255). The gradient is of the model's output as
is (final softmax included; DTD strips it), which costs the same as the logits.

    .venv/bin/python benchmarks/bench_applications.py            # every family, smallest size, batch 2
    .venv/bin/python benchmarks/bench_applications.py --families VGG16,ResNet50 --repeats 5
    .venv/bin/python benchmarks/bench_applications.py \\
        --families ResNet50,DenseNet121,MobileNetV2,EfficientNetB0 --size 128 --batch 8
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

FAMILIES = {  # family: (keras.applications module with its preprocess_input, smallest input size)
    "VGG16": ("vgg16", 32),
    "ResNet50": ("resnet", 32),
    "ResNet50V2": ("resnet_v2", 32),
    "DenseNet121": ("densenet", 32),
    "InceptionV3": ("inception_v3", 75),
    "Xception": ("xception", 71),
    "NASNetMobile": ("nasnet", 32),
    "MobileNet": ("mobilenet", 32),
    "MobileNetV2": ("mobilenet_v2", 32),
    "MobileNetV3Small": ("mobilenet_v3", 32),
    "EfficientNetB0": ("efficientnet", 32),
    "EfficientNetV2B0": ("efficientnet_v2", 32),
    "ConvNeXtTiny": ("convnext", 32),
    "InceptionResNetV2": ("inception_resnet_v2", 75),
}
BUILT_IN_PREPROCESSING = {"MobileNetV3Small", "EfficientNetB0", "EfficientNetV2B0", "ConvNeXtTiny"}
COLUMNS = [
    "family",
    "input size",
    "layers",
    "build s (DTD)",
    "first call s (gradient)",
    "build ratio",
    "DTD ms/batch",
    "gradient ms/batch",
    "ratio",
    "peak RSS MB (model → after analyze)",
    "conservation error",
    "negative share",
]


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def worker(family, size, batch, repeats, gradient_only=False):
    """Measure one family; returns a dict (with "error" if something raised). With
    ``gradient_only``, only the gradient's first call."""
    result = {}
    try:
        import keras
        import numpy as np
        import tensorflow as tf

        import keras_dtd

        keras.utils.set_random_seed(0)
        model = getattr(keras.applications, family)(weights=None, input_shape=(size, size, 3), classes=10)
        result.update(layers=len(model.layers), rss_model=rss_mb())

        module = getattr(keras.applications, FAMILIES[family][0])

        def preprocess(pixels):  # preprocess_input may work in place: give it a copy
            if family in BUILT_IN_PREPROCESSING:
                return pixels
            return np.asarray(module.preprocess_input(pixels.copy()))

        edges = [preprocess(np.full((size, size, 3), v, "float32")) for v in (0.0, 255.0)]
        low, high = np.minimum(*edges), np.maximum(*edges)
        pixels = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
        x = preprocess(pixels).astype("float32")
        x_tensor = tf.constant(x)

        @tf.function
        def gradient(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                selected = tf.reduce_max(model(x, training=False), axis=-1)
            return tape.gradient(selected, x)

        if gradient_only:
            start = time.perf_counter()
            gradient(x_tensor).numpy()
            return {"grad_first_s": time.perf_counter() - start}

        start = time.perf_counter()
        analyzer = keras_dtd.DTD(model, input_range=(low, high))
        analyzer.analyze(x)
        result.update(build_s=time.perf_counter() - start, rss_analyze=rss_mb())

        analyzer.analyze(x)  # warm-up
        gradient(x_tensor).numpy()
        dtd_ms, grad_ms = [], []
        for _ in range(repeats):  # interleaved, so machine noise hits both alike
            start = time.perf_counter()
            analyzer.analyze(x)
            middle = time.perf_counter()
            gradient(x_tensor).numpy()
            dtd_ms.append(1000 * (middle - start))
            grad_ms.append(1000 * (time.perf_counter() - middle))
        result.update(
            dtd_ms=statistics.median(dtd_ms),
            grad_ms=statistics.median(grad_ms),
            ratio=statistics.median(d / g for d, g in zip(dtd_ms, grad_ms)),
        )

        explanation = analyzer.explain(x)
        relevance = explanation.relevance.reshape(batch, -1).astype("float64")
        target = explanation.target.astype("float64")
        error = np.abs(relevance.sum(axis=1) - target) / np.maximum(target, np.finfo("float32").tiny)
        result.update(
            conservation=float(error.max()),
            negative=float(np.abs(relevance[relevance < 0]).sum() / max(np.abs(relevance).sum(), 1e-300)),
        )
    except Exception as e:  # noqa: BLE001 - any failure becomes the family's error row
        result["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:120]}"
    return result


def run_family(family, size, batch, repeats):
    """Run worker() in fresh interpreters (the gradient's first call, then the rest); the
    last stdout line of each is its JSON result."""
    result = {}
    for extra in (["--gradient-only"], []):
        command = [
            sys.executable,
            __file__,
            "--worker",
            family,
            "--size",
            str(size),
            "--batch",
            str(batch),
            "--repeats",
            str(repeats),
            *extra,
        ]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            tail = " ".join(done.stderr.split())[-120:]
            return {"error": f"worker exited with code {done.returncode}: {tail}"}
        result.update(json.loads(lines[-1]))
        if "error" in result:
            return result
    return result


def row(family, size, r):
    head = [family, f"{size}×{size}", str(r.get("layers", "—"))]
    if "error" in r:
        rss = f"{r['rss_model']:.0f} → —" if "rss_model" in r else "—"
        return head + [f"**{r['error'].replace('|', '/')}**"] + ["—"] * 5 + [rss, "—", "—"]
    build_ratio = r["build_s"] / r["grad_first_s"]
    return head + [
        f"{r['build_s']:.2f}",
        f"{r['grad_first_s']:.2f}",
        f"{build_ratio:.1f}×",
        f"{r['dtd_ms']:.1f}",
        f"{r['grad_ms']:.1f}",
        f"{r['ratio']:.2f}×",
        f"{r['rss_model']:.0f} → {r['rss_analyze']:.0f}",
        f"{r['conservation']:.1e}",
        f"{r['negative']:.3g}",
    ]


def main():
    start = time.perf_counter()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated (default: all 14)")
    parser.add_argument("--size", type=int, help="input height = width (default: each family's smallest)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # measure one family, print JSON
    parser.add_argument("--gradient-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.size, args.batch, args.repeats, args.gradient_only)))
        return

    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TF default: on)")
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, CPU x{os.cpu_count()}, "
        f"TF_ENABLE_ONEDNN_OPTS={onednn}, batch {args.batch}, repeats {args.repeats}; "
        "gradient of the model output as is (softmax included)\n"
    )
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for family in families:
        size = args.size or FAMILIES[family][1]
        cells = row(family, size, run_family(family, size, args.batch, args.repeats))
        print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
