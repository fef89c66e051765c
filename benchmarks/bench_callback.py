"""Overhead of RelevanceMonitor on a small CNN training run, logging every epoch.

Trains the demo's digit CNN on scikit-learn's 8×8 digits for a few epochs, once plain
and once with a RelevanceMonitor (16 test digits, DTD bounded, grid image + scalars +
histogram each epoch), alternating runs; prints the median time of each and the ratio.

    .venv/bin/python benchmarks/bench_callback.py [--epochs 10] [--runs 3]
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from keras_dtd import datasets  # noqa: E402
from keras_dtd.callbacks import RelevanceMonitor  # noqa: E402
from keras_dtd.demo import digit_cnn  # noqa: E402


def fit_seconds(x, y, epochs, callbacks):
    keras.utils.set_random_seed(0)
    model = digit_cnn(x.shape[1:])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    (x, y), (x_test, y_test) = datasets.digits()
    plain, monitored = [], []
    for _ in range(args.runs):
        plain.append(fit_seconds(x, y, args.epochs, []))
        with tempfile.TemporaryDirectory() as log_dir:
            monitor = RelevanceMonitor(
                x_test[:16],
                log_dir,
                targets="true",
                labels=y_test[:16],
                method="deep_taylor.bounded",
                method_kwargs={"low": 0, "high": 1},
            )
            monitored.append(fit_seconds(x, y, args.epochs, [monitor]))
    p, m = statistics.median(plain), statistics.median(monitored)
    print(f"training {len(x)} digits x {args.epochs} epochs, median of {args.runs} runs")
    print(f"plain fit:                     {p:.2f} s")
    print(
        f"fit + RelevanceMonitor/epoch:  {m:.2f} s  ({1000 * (m - p) / args.epochs:.0f} ms per logged epoch)"
    )
    print(f"ratio:                         {m / p:.2f}x")


if __name__ == "__main__":
    main()
