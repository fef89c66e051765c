"""LRP through recurrent text classifiers against a plain gradient of the same model, in one process.

Model: Embedding(20000, 128) → Bidirectional(LSTM(128)) → Dense(2) (and the GRU and unidirectional
LSTM variants with --cells), token sequences of length 200, batch 32. The gradient is that of the
selected output at the embedding output (one full backward pass through the recurrence), compiled as
a tf.function. Reported: build s (analyzer built + first call: trace, compile, run) against the
gradient's first call; per-call ms, medians of interleaved (analyzer, gradient) pairs, and the median
of the per-pair ratios.

    .venv/bin/python benchmarks/bench_recurrent.py
    .venv/bin/python benchmarks/bench_recurrent.py --cells lstm,bilstm,gru --length 100 --repeats 10
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_dtd  # noqa: E402
from keras_dtd import rules  # noqa: E402

LAYERS = {
    "bilstm": lambda: keras.layers.Bidirectional(keras.layers.LSTM(128)),
    "lstm": lambda: keras.layers.LSTM(128),
    "gru": lambda: keras.layers.GRU(128),
}


def model_with(cell, length):
    keras.utils.set_random_seed(0)
    inp = keras.Input((length,), dtype="int32")
    embedded = keras.layers.Embedding(20000, 128, name="embedding")(inp)
    return keras.Model(inp, keras.layers.Dense(2)(LAYERS[cell]()(embedded)))


def gradient_function(model):
    embedding = model.get_layer("embedding")
    rest = keras.Model(embedding.output, model.output)

    @tf.function
    def gradient(tokens):
        e = embedding(tokens)
        with tf.GradientTape() as tape:
            tape.watch(e)
            f = rest(e, training=False)
            top = tf.reduce_max(f, axis=-1)
        return tape.gradient(top, e)

    return gradient


def measure(cell, length, batch, repeats):
    model = model_with(cell, length)
    tokens = np.random.default_rng(0).integers(1, 20000, (batch, length)).astype("int32")
    return against_gradient(
        model, tokens, lambda: keras_dtd.LRP(model, rules.Epsilon(0.001), batch_size=batch), repeats
    )


def against_gradient(model, tokens, make_analyzer, repeats, make_gradient=gradient_function):
    """(build s, gradient's first call s, analyzer ms, gradient ms, median ratio) on ``tokens``
    (an array, or a dict of arrays for a model with named inputs); ``make_gradient(model)``
    makes a fresh compiled gradient, so its first call includes its trace."""
    gradient = make_gradient(model)
    tensors = tf.nest.map_structure(tf.constant, tokens)
    start = time.perf_counter()
    gradient(tensors).numpy()
    gradient_first = time.perf_counter() - start
    start = time.perf_counter()
    analyzer = make_analyzer()
    analyzer.analyze(tokens)
    build = time.perf_counter() - start
    pairs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        analyzer.analyze(tokens)
        t1 = time.perf_counter()
        gradient(tensors).numpy()
        t2 = time.perf_counter()
        pairs.append((t1 - t0, t2 - t1))
    ours = statistics.median(p[0] for p in pairs) * 1e3
    theirs = statistics.median(p[1] for p in pairs) * 1e3
    ratio = statistics.median(p[0] / p[1] for p in pairs)
    return build, gradient_first, ours, theirs, ratio


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", default="bilstm")
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, CPU x{os.cpu_count()}, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}, length {args.length}, "
        f"batch {args.batch}, repeats {args.repeats}\n"
    )
    columns = ["model", "build s (LRP-ε)", "first call s (gradient)", "build ratio", "LRP ms/batch"]
    columns += ["gradient ms/batch", "ratio"]
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for cell in args.cells.split(","):
        build, first, ours, theirs, ratio = measure(cell, args.length, args.batch, args.repeats)
        print(
            f"| Embedding → {cell} → Dense | {build:.2f} | {first:.2f} | {build / first:.1f}× | {ours:.0f} | "
            f"{theirs:.0f} | {ratio:.2f}× |",
            flush=True,
        )


if __name__ == "__main__":
    main()
