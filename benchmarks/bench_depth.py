"""Build time against depth: DTD(model, input_range=(0, 1)) + its first analyze, against a
plain tf.function input gradient's first call, on the DenseNet-style chain of
``suite.py`` (Input 16×16×3, Conv2D stem, N × [BatchNorm, ReLU, Conv2D 3×3, Concatenate],
batch 8). Each measurement runs in a fresh interpreter right after building the Keras
model, alternating DTD and gradient; prints the medians and their ratio per depth.

    .venv/bin/python benchmarks/bench_depth.py                      # 25, 50, 100 blocks, 3 runs each
    .venv/bin/python benchmarks/bench_depth.py --blocks 100 --runs 5
"""

import argparse
import os
import statistics
import subprocess
import sys
import time


def worker(what, blocks):
    """Seconds to build and run the first call of ``what`` ("dtd" or "gradient")."""
    import keras
    import numpy as np
    import tensorflow as tf
    from bench_core import gradient_function
    from suite import build_model

    import keras_dtd

    keras.utils.set_random_seed(0)
    model = build_model("dense_chain", {"blocks": blocks})
    x = np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 3)).astype("float32")
    start = time.perf_counter()
    if what == "dtd":
        keras_dtd.DTD(model, input_range=(0.0, 1.0)).analyze(x)
    else:
        gradient_function(model, False)(tf.constant(x)).numpy()
    return time.perf_counter() - start


def measure(what, blocks):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, __file__, "--worker", what, "--blocks", str(blocks)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", default="25,50,100", help="comma-separated depths")
    parser.add_argument("--runs", type=int, default=3, help="fresh interpreters per depth and method")
    parser.add_argument("--worker", choices=["dtd", "gradient"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(worker(args.worker, int(args.blocks)))
        return
    print("| blocks | build s (DTD) | first call s (gradient) | ratio | runs (DTD / gradient) |")
    print("|---|---|---|---|---|")
    for blocks in (int(b) for b in args.blocks.split(",")):
        times = {"dtd": [], "gradient": []}
        for _ in range(args.runs):
            for what in times:
                times[what].append(measure(what, blocks))
        dtd, gradient = statistics.median(times["dtd"]), statistics.median(times["gradient"])
        runs = " / ".join(", ".join(f"{t:.2f}" for t in times[w]) for w in times)
        print(f"| {blocks} | {dtd:.2f} | {gradient:.2f} | {dtd / gradient:.1f}× | {runs} |", flush=True)


if __name__ == "__main__":
    main()
