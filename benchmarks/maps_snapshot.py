"""Snapshot every analyzer's maps, to show that a refactoring changes no number.

    .venv/bin/python benchmarks/maps_snapshot.py write before.npz       # on the old commit (a git worktree)
    .venv/bin/python benchmarks/maps_snapshot.py write after.npz        # on the new one, same machine
    .venv/bin/python benchmarks/maps_snapshot.py compare before.npz after.npz

What is written: for every model of tests/zoo.py, built in float32 and in float64, the maps of every
iNNvestigate analyzer name (``keras_dtd.compat.ANALYZERS``, seeded, each sample's top output), of ``DTD``
and of ``LRP(rules.Epsilon())``; for every keras.applications family of tests/test_applications.py
(float32, random weights), the maps of ``DTD`` (with the family's pixel bounds) and of
``LRP(rules.Epsilon())``. A case that raises is stored as its error message. ``compare`` prints, per
case, whether the maps are bit-identical or their largest difference relative to max |R|, and lists
the cases over 1e-12 (float64) or 1e-6 (float32) and those present or failing on one side only.
About 5 minutes on 2 cores.
"""

import argparse
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import parity_models  # noqa: E402
import test_applications  # noqa: E402
import zoo  # noqa: E402

import keras_dtd  # noqa: E402
from keras_dtd import rules  # noqa: E402
from keras_dtd.compat import ANALYZERS, create_analyzer  # noqa: E402

REQUIRED = {
    "deep_taylor.bounded": {"low": 0, "high": 1},
    "lrp": {"rule": "Z"},
    "lrp.alpha_beta": {"alpha": 2},
}
LIMITS = {"float64": 1e-12, "float32": 1e-6}


def _run(out, key, make):
    try:
        keras.utils.set_random_seed(3)  # random and smoothgrad draw the same noise on both sides
        out[key] = np.asarray(make())
    except Exception as error:  # stored: a refactoring must fail where the old code failed, and alike
        out[key + "#error"] = np.array(f"{type(error).__name__}: {error}"[:500])


def write(path):
    out = {}
    for floatx in ("float32", "float64"):
        for name, builder in zoo.ZOO.items():
            keras.utils.set_random_seed(0)
            model = parity_models.build_in(keras, lambda _, build=builder: build(), floatx)
            x = zoo.inputs_for(model).astype(floatx)
            for method in sorted(ANALYZERS):
                _run(
                    out,
                    f"{floatx}/{name}/{method}",
                    lambda: create_analyzer(method, model, **REQUIRED.get(method, {})).analyze(x),
                )
            _run(out, f"{floatx}/{name}/DTD", lambda: keras_dtd.DTD(model).analyze(x))
            _run(
                out, f"{floatx}/{name}/LRP-epsilon", lambda: keras_dtd.LRP(model, rules.Epsilon()).analyze(x)
            )
            print(f"{floatx} {name}", flush=True)
    for family in test_applications.FAMILIES:
        model, x, bounds = test_applications.family_case(family)
        _run(out, f"float32/{family}/DTD", lambda: keras_dtd.DTD(model, input_range=bounds).analyze(x))
        _run(out, f"float32/{family}/LRP-epsilon", lambda: keras_dtd.LRP(model, rules.Epsilon()).analyze(x))
        print(family, flush=True)
    np.savez_compressed(path, **out)
    print(f"wrote {path}: {len(out)} cases")


def compare(before_path, after_path):
    before, after = np.load(before_path), np.load(after_path)
    only = sorted(set(before.files) ^ set(after.files))
    identical, moved, over = 0, [], []
    for key in sorted(set(before.files) & set(after.files)):
        a, b = before[key], after[key]
        if key.endswith("#error"):
            if str(a) != str(b):
                over.append((key, "different error"))
            continue
        if a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True):
            identical += 1
            continue
        if a.shape != b.shape:
            over.append((key, f"shape {a.shape} → {b.shape}"))
            continue
        ratio = float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(a).max(), 1e-300))
        moved.append((ratio, key))
        if ratio > LIMITS[key.split("/")[0]]:
            over.append((key, f"{ratio:.1e} of max |R|"))
    print(f"{identical} cases bit-identical, {len(moved)} moved, {len(only)} on one side only")
    for ratio, key in sorted(moved, reverse=True)[:20]:
        print(f"  moved {ratio:.1e}  {key}")
    for key in only:
        print(f"  only in {'before' if key in before.files else 'after'}: {key}")
    for key, why in over:
        print(f"  OVER THE LIMIT: {key}: {why}")
    return 1 if over or only else 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("write").add_argument("path")
    both = commands.add_parser("compare")
    both.add_argument("before")
    both.add_argument("after")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.command == "write":
        write(args.path)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
