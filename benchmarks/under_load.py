"""keras_dtd under load: the longer versions of tests/test_load.py, on the VGG-style CNN of bench_core.

    .venv/bin/python benchmarks/under_load.py [--quick]     (also section 4 of benchmarks/suite.py)

- threads: T threads × C calls of ``analyze`` on different batches (sizes 1..32) against the same calls made
  serially: largest difference, traces of the compiled function, wall time of both;
- many calls: N calls on batches of varying size (1..32): traces, peak RSS growth after a warm-up of 50 calls;
- streaming: a ``tf.data.Dataset`` of n generated 64×64×3 images (never held in memory) through
  ``analyze(dataset, out=".npy")``, for two dataset sizes: images per second and peak RSS growth, which must
  not grow with n (memory bounded by the batch).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

FULL = {"threads": 8, "calls": 50, "many": 1000, "stream": [1000, 10000], "batch": 32}
QUICK = {"threads": 4, "calls": 5, "many": 60, "stream": [64, 256], "batch": 32}


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def threads_against_serial(analyzer, spec, rng):
    """T threads × C calls of ``analyze`` on batches of their own, against the same calls made serially."""
    import numpy as np

    b = spec["batch"]
    sizes = rng.integers(1, b + 1, (spec["threads"], spec["calls"]))
    batches = [[rng.uniform(0, 1, (int(n), 64, 64, 3)).astype("float32") for n in row] for row in sizes]
    analyzer.analyze(batches[0][0])
    start = time.perf_counter()
    serial = [[analyzer.analyze(x) for x in row] for row in batches]
    serial_s = time.perf_counter() - start
    threaded = [[None] * spec["calls"] for _ in range(spec["threads"])]

    def run(t):
        for c, x in enumerate(batches[t]):
            threaded[t][c] = analyzer.analyze(x)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(spec["threads"])]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return {
        "threads": spec["threads"],
        "calls": spec["calls"],
        "samples": int(sizes.sum()),
        "max_abs_diff": float(
            max(np.abs(a - s).max() for ra, rs in zip(threaded, serial) for a, s in zip(ra, rs))
        ),
        "identical": all(np.array_equal(a, s) for ra, rs in zip(threaded, serial) for a, s in zip(ra, rs)),
        "serial_s": serial_s,
        "threaded_s": time.perf_counter() - start,
        "traces": analyzer.trace_count,
    }


def worker(spec):
    import keras
    import numpy as np
    import tensorflow as tf
    from bench_core import vgg_style

    import keras_dtd

    keras.utils.set_random_seed(0)
    model = vgg_style()
    b = spec["batch"]
    analyzer = keras_dtd.DTD(model, input_range=(0.0, 1.0), batch_size=b)
    rng = np.random.default_rng(0)
    result = {"keras_dtd_file": keras_dtd.__file__}

    result["threads"] = threads_against_serial(analyzer, spec, rng)

    # many calls of varying size
    pool_x = rng.uniform(0, 1, (b, 64, 64, 3)).astype("float32")
    for n in rng.integers(1, b + 1, 50):
        analyzer.analyze(pool_x[:n])
    before, traces = rss_mb(), analyzer.trace_count
    times = []
    for n in rng.integers(1, b + 1, spec["many"]):
        start = time.perf_counter()
        analyzer.analyze(pool_x[:n])
        times.append(time.perf_counter() - start)
    result["many"] = {
        "calls": spec["many"],
        "rss_growth_mb": rss_mb() - before,
        "new_traces": analyzer.trace_count - traces,
        "median_ms": 1000 * statistics.median(times),
    }

    # streaming generated images to a .npy file
    result["stream"] = []
    with tempfile.TemporaryDirectory() as folder:
        for n in spec["stream"]:

            def images(k):
                return tf.random.stateless_uniform((64, 64, 3), [0, k])

            dataset = tf.data.Dataset.range(n).map(images).batch(b).prefetch(1)
            before = rss_mb()
            start = time.perf_counter()
            maps = analyzer.analyze(dataset, out=os.path.join(folder, f"maps_{n}.npy"), verbose=0)
            seconds = time.perf_counter() - start
            probe = int(n // 2)
            expected = analyzer.analyze(images(probe).numpy()[None])[0]
            result["stream"].append(
                {
                    "images": n,
                    "seconds": seconds,
                    "images_per_s": n / seconds,
                    "rss_growth_mb": rss_mb() - before,
                    "file_mb": os.path.getsize(os.path.join(folder, f"maps_{n}.npy")) / 2**20,
                    "shape": list(maps.shape),
                    "probe_max_abs_diff": float(np.abs(np.asarray(maps[probe]) - expected).max()),
                }
            )
            del maps
    result["traces_end"] = analyzer.trace_count
    return result


def report_lines(r):
    """Markdown lines for one worker result."""
    if "error" in r:
        return [f"**not measured**: {r['error']}"]
    t, m = r["threads"], r["many"]
    lines = [
        f"- threads: {t['threads']} threads × {t['calls']} calls ({t['samples']} samples, batches of 1–32) → "
        f"results {'identical to' if t['identical'] else 'DIFFERENT from'} the serial calls (max abs diff "
        f"{t['max_abs_diff']:.1e}); traces of the compiled function: {t['traces']}; wall time serial "
        f"{t['serial_s']:.1f} s, threaded {t['threaded_s']:.1f} s",
        f"- many calls: {m['calls']} calls on batches of 1–32 samples, after 50 warm-up calls: "
        f"peak RSS growth {m['rss_growth_mb']:.1f} MB, new traces {m['new_traces']}, "
        f"median {m['median_ms']:.1f} ms per call",
        "- streaming a `tf.data.Dataset` of generated 64×64×3 images to `.npy` "
        "(`analyze(dataset, out=...)`):",
        "",
        "| images | seconds | images/s | peak RSS growth MB | .npy MB | a sample vs analyze on it alone |",
        "|---|---|---|---|---|---|",
    ]
    for s in r["stream"]:
        lines.append(
            f"| {s['images']} | {s['seconds']:.1f} | {s['images_per_s']:.0f} | {s['rss_growth_mb']:.1f} | "
            f"{s['file_mb']:.0f} | {s['probe_max_abs_diff']:.1e} |"
        )
    if len(r["stream"]) > 1:
        first, last = r["stream"][0], r["stream"][-1]
        bounded = last["rss_growth_mb"] < max(16.0, 0.1 * last["file_mb"])
        lines += [
            "",
            f"{last['images'] // first['images']}× the images: output {last['file_mb']:.0f} MB against "
            f"{first['file_mb']:.0f} MB; peak RSS growth {first['rss_growth_mb']:.1f} → "
            f"{last['rss_growth_mb']:.1f} MB "
            f"→ memory {'bounded by the batch, not the dataset' if bounded else 'GROWS with the dataset'} "
            "(criterion: growth on the largest stream below 16 MB or 10 % of its output).",
        ]
    return lines


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a much smaller run, for a smoke check")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = worker(QUICK if args.quick else FULL)
    print("\n".join(report_lines(result)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
