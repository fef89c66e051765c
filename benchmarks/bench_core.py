"""Speed of DTD against a plain input gradient of the same model, in one process.

VGG-style CNN on 64×64×3 inputs (six 3×3 convolutions of 32/64/128 filters with max
pooling, Dense 256, Dense 10), batch of 32. Prints medians and the ratio; the goal
is DTD ≤ 1.5× the gradient and building the analyzer (trace + compile + first call)
under 3 s.

    .venv/bin/python benchmarks/bench_core.py [--repeats 20] [--jit]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dtd import DTD  # noqa: E402


def vgg_style():
    L = keras.layers
    inp = keras.Input((64, 64, 3))
    h = inp
    for filters in (32, 64, 128):
        h = L.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = L.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = L.MaxPooling2D(2)(h)
    h = L.Flatten()(h)
    h = L.Dense(256, activation="relu")(h)
    return keras.Model(inp, L.Dense(10)(h), name="vgg_style")


def gradient_function(model, jit):
    @tf.function(jit_compile=jit)
    def gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            scores = model(x, training=False)
            selected = tf.reduce_max(scores, axis=-1)
        return tape.gradient(selected, x)

    return gradient


def median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--jit", action="store_true", help="XLA for both DTD and the gradient")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    model = vgg_style()
    x = np.random.default_rng(0).uniform(0, 1, (args.batch, 64, 64, 3)).astype("float32")
    x_tensor = tf.constant(x)

    start = time.perf_counter()
    analyzer = DTD(model, input_range=(0.0, 1.0), batch_size=args.batch, jit_compile=args.jit)
    analyzer.analyze(x)
    build_s = time.perf_counter() - start

    gradient = gradient_function(model, args.jit)
    gradient(x_tensor).numpy()

    # interleave the two measurements so machine noise hits both alike
    dtd_ms, grad_ms = [], []
    for _ in range(args.repeats):
        dtd_ms.append(median_ms(lambda: analyzer.analyze(x), 1))
        grad_ms.append(median_ms(lambda: gradient(x_tensor).numpy(), 1))
    dtd, grad = statistics.median(dtd_ms), statistics.median(grad_ms)
    print(
        f"device: CPU x{os.cpu_count()}, jit_compile={args.jit}, batch={args.batch}, repeats={args.repeats}"
    )
    print(f"build DTD analyzer (trace + compile + first batch): {build_s:.2f} s")
    print(f"DTD(input_range=(0,1)).analyze: {dtd:.1f} ms per batch (median)")
    print(f"plain input gradient:           {grad:.1f} ms per batch (median)")
    print(f"ratio DTD / gradient:           {dtd / grad:.2f}x  (goal <= 1.5x)")


if __name__ == "__main__":
    main()
