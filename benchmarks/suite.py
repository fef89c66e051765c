"""The benchmark suite: one command writes ``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/suite.py            # full run (about 14 min on 2 CPU cores)
    .venv/bin/python benchmarks/suite.py --quick    # smoke check (about 4 min); writes to a temp file

Every measurement runs in a fresh interpreter (one subprocess per case), so that peak RSS
(``ru_maxrss``) is per case and no case pays for another's warm-up of TensorFlow.

1. **Models** - an MLP, the VGG-style CNN of ``bench_core.py``, ResNet50
   (``keras.applications``, ``weights=None``, 64×64, 10 classes, logits) and a DenseNet-style
   net (three stages of BatchNorm, ReLU, Conv2D 3×3, Concatenate with the block input, with
   BN-ReLU-1×1-AvgPool transitions), each with ``jit_compile`` False and True:

   - build s: ``DTD(model, input_range=(0, 1), jit_compile=...)`` + the first ``analyze`` of a
     batch of 32 (trace + compile + first call);
   - gradient first call s: a ``tf.function`` input gradient of the top logit (``bench_core.
     gradient_function``, same jit setting), first call on the batch of 32, measured in a
     second fresh interpreter (so neither pays for the other's warm-up);
   - ms per batch for batch sizes 1, 8, 32, 128: after one warm-up call per batch size, R rounds;
     each round times one (DTD, gradient) pair per batch size, alternating which of the two goes
     first. Medians of each, and the median of the per-pair ratios DTD / gradient;
   - peak RSS (MB): after building the Keras model, after the DTD build, at the end of the case
     (all batch sizes of DTD and gradient), and in the gradient-only interpreter.

2. **Growth** (jit off): a plain conv chain (Conv2D 3×3, 32 filters, ReLU, 32×32 input; GAP, Dense)
   of 4/8/16/32 conv layers, the DenseNet-style chain of 10/20/40 blocks (16×16, growth 12; the
   channel count grows with depth, so its multiply-adds grow quadratically), and the VGG-style CNN
   at 32/64/128 px; build time and ms per batch of DTD and gradient, with the marginal cost per
   added layer / multiply-add / pixel.

3. **Peers** on the same VGG-style case (64×64×3, batch 32, weights generated in keras_dtd's
   interpreter and saved to an .npz in a temp dir): iNNvestigate 2.1.2 (TF 2.14, graph mode) and
   zennit 1.0.0 (torch CPU), each in its own environment (``KERAS_DTD_INNVESTIGATE_PYTHON``,
   ``KERAS_DTD_ZENNIT_PYTHON``) running ``benchmarks/peers/*_vgg.py``; their LRP-ε, z⁺/DeepTaylor
   and plain gradient, next to keras_dtd's DTD, LRP-ε and gradient, and the agreement of the LRP-ε
   maps (max abs difference / max abs of keras_dtd's map).
"""

import argparse
import datetime
import io
import json
import math
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = {  # library: (environment variable, default python, script)
    "iNNvestigate": (
        "KERAS_DTD_INNVESTIGATE_PYTHON",
        "/work/fixture-envs/innvestigate/bin/python",
        HERE / "peers" / "innvestigate_vgg.py",
    ),
    "zennit": (
        "KERAS_DTD_ZENNIT_PYTHON",
        "/work/fixture-envs/zennit/bin/python",
        HERE / "peers" / "zennit_vgg.py",
    ),
}

FULL = {
    "models": ["mlp", "vgg", "resnet50", "densenet"],
    "batches": [1, 8, 32, 128],
    "build_batch": 32,
    "repeats": {"mlp": 15, "vgg": 15, "resnet50": 7, "densenet": 9},
    "jit": [False, True],
    "conv_chain": [4, 8, 16, 32],
    "dense_chain": [10, 20, 40],
    "vgg_sizes": [32, 64, 128],
    "growth_batch": {"conv_chain": 32, "dense_chain": 32, "vgg_size": 32},
    "growth_repeats": 11,
    "peer_repeats": 10,
    "peer_passes": 2,
    "timeout": 1200,
}
QUICK = {
    "models": ["mlp", "vgg", "resnet50", "densenet"],
    "batches": [1, 8],
    "build_batch": 8,
    "repeats": {"mlp": 2, "vgg": 2, "resnet50": 2, "densenet": 2},
    "jit": [False, True],
    "conv_chain": [2, 4],
    "dense_chain": [2, 4],
    "vgg_sizes": [32, 64],
    "growth_batch": {"conv_chain": 8, "dense_chain": 8, "vgg_size": 8},
    "growth_repeats": 2,
    "peer_repeats": 2,
    "peer_passes": 1,
    "timeout": 600,
}
MODEL_TITLES = {
    "mlp": "MLP 3072-1024-1024-512-10",
    "vgg": "VGG-style CNN (bench_core)",
    "resnet50": "ResNet50 (keras.applications)",
    "densenet": "DenseNet-style (3×6 blocks)",
}


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


# ------------------------------------------------------------------------------------------- models
def build_model(name, params):
    """A Keras model and its input shape (without the batch axis). Inputs are in [0, 1]."""
    import keras
    from bench_core import vgg_style

    L = keras.layers
    if name == "mlp":
        inp = keras.Input((3072,))
        h = inp
        for units in (1024, 1024, 512):
            h = L.Dense(units, activation="relu")(h)
        return keras.Model(inp, L.Dense(10)(h), name="mlp")
    if name == "vgg":
        model = vgg_style()
        size = params.get("size", 64)
        if size != 64:  # the same layers on another input size (Dense after Flatten resized)
            model = keras.models.clone_model(model, input_tensors=keras.Input((size, size, 3)))
        return model
    if name == "resnet50":
        size = params.get("size", 64)
        return keras.applications.ResNet50(
            weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None
        )
    if name == "densenet":  # DenseNet-style: dense stages with transitions
        growth = 12
        inp = keras.Input((64, 64, 3))
        h = L.Conv2D(24, 3, padding="same", name="stem")(inp)
        for stage in range(3):
            for _ in range(6):
                h = dense_block(L, h, growth)
            if stage < 2:
                h = L.BatchNormalization()(h)
                h = L.ReLU()(h)
                h = L.Conv2D(h.shape[-1] // 2, 1)(h)
                h = L.AveragePooling2D(2)(h)
        h = L.ReLU()(L.BatchNormalization()(h))
        h = L.GlobalAveragePooling2D()(h)
        return keras.Model(inp, L.Dense(10)(h), name="densenet_style")
    if name == "conv_chain":
        inp = keras.Input((32, 32, 3))
        h = inp
        for _ in range(params["depth"]):
            h = L.Conv2D(32, 3, padding="same", activation="relu")(h)
        h = L.GlobalAveragePooling2D()(h)
        return keras.Model(inp, L.Dense(10)(h), name=f"conv_chain_{params['depth']}")
    if name == "dense_chain":
        inp = keras.Input((16, 16, 3))
        h = L.Conv2D(16, 3, padding="same", name="stem")(inp)
        for _ in range(params["blocks"]):
            h = dense_block(L, h, 12)
        h = L.ReLU()(L.BatchNormalization()(h))
        h = L.GlobalAveragePooling2D()(h)
        return keras.Model(inp, L.Dense(10)(h), name=f"dense_chain_{params['blocks']}")
    raise KeyError(name)


def dense_block(L, h, growth):
    new = L.Conv2D(growth, 3, padding="same")(L.ReLU()(L.BatchNormalization()(h)))
    return L.Concatenate()([h, new])


def forward_macs(model):
    """Multiply-adds of one forward pass per sample, of the Conv2D and Dense layers."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            out = layer.output.shape
            total += out[1] * out[2] * out[3] * kh * kw * layer.input.shape[-1] // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


# ------------------------------------------------------------------------------- worker: one case
def case_worker(spec):
    """DTD vs gradient on one model: build, interleaved timings per batch size, RSS."""
    import keras
    import numpy as np
    import tensorflow as tf
    from bench_core import gradient_function

    import keras_dtd

    batches, jit, repeats, build_batch = spec["batches"], spec["jit"], spec["repeats"], spec["build_batch"]
    keras.utils.set_random_seed(0)
    origin = keras_dtd.__file__
    model = build_model(spec["model"], spec.get("params", {}))
    result = {
        "layers": len(model.layers),
        "params": int(model.count_params()),
        "macs": forward_macs(model),
        "rss_model": rss_mb(),
        "keras_dtd_file": origin,
    }
    shape = tuple(model.input_shape[1:])
    x = np.random.default_rng(0).uniform(0, 1, (max(batches + [build_batch]),) + shape).astype("float32")
    xs = {b: x[:b] for b in set(batches + [build_batch])}
    xt = {b: tf.constant(v) for b, v in xs.items()}
    gradient = gradient_function(model, jit)

    if spec.get("gradient_only"):
        start = time.perf_counter()
        gradient(xt[build_batch]).numpy()
        result["grad_first_s"] = time.perf_counter() - start
        result["rss_grad_first"] = rss_mb()
        for b in batches:
            gradient(xt[b]).numpy()
        result["rss_grad_peak"] = rss_mb()
        return result

    start = time.perf_counter()
    analyzer = keras_dtd.DTD(
        model, input_range=(0.0, 1.0), batch_size=max(batches + [build_batch]), jit_compile=jit
    )
    analyzer.analyze(xs[build_batch])
    result["build_s"] = time.perf_counter() - start
    result["rss_build"] = rss_mb()

    start = time.perf_counter()  # one call per batch size (XLA compiles each shape)
    for b in batches:
        analyzer.analyze(xs[b])
    result["dtd_warmup_s"] = time.perf_counter() - start
    result["rss_dtd_all"] = rss_mb()  # DTD at every batch size, before the gradient ran
    start = time.perf_counter()
    for b in batches:
        gradient(xt[b]).numpy()
    result["grad_warmup_s"] = time.perf_counter() - start

    calls = {
        "dtd": lambda b: analyzer.analyze(xs[b]),
        "grad": lambda b: gradient(xt[b]).numpy(),
    }
    times = {b: {"dtd": [], "grad": []} for b in batches} if repeats else {}
    for r in range(repeats):
        for b in batches:
            order = ("dtd", "grad") if r % 2 == 0 else ("grad", "dtd")
            for name in order:
                start = time.perf_counter()
                calls[name](b)
                times[b][name].append(1000 * (time.perf_counter() - start))
    result["per_batch"] = {
        str(b): {
            "dtd_ms": statistics.median(t["dtd"]),
            "grad_ms": statistics.median(t["grad"]),
            "ratio": statistics.median(d / g for d, g in zip(t["dtd"], t["grad"])),
            "dtd_all": t["dtd"],
            "grad_all": t["grad"],
        }
        for b, t in times.items()
    }
    result["rss_peak"] = rss_mb()

    explanation = analyzer.explain(xs[build_batch])  # sanity: DTD's conservation on this case
    relevance = explanation.relevance.reshape(build_batch, -1).astype("float64")
    target = explanation.target.astype("float64")
    positive = target > 0
    error = np.abs(relevance.sum(axis=1) - target)[positive] / target[positive]
    result["conservation"] = float(error.max()) if positive.any() else None
    result["trace_count"] = analyzer.trace_count
    return result


# ----------------------------------------------------------------------- worker: one growth sweep
def sweep_worker(spec):
    """Every size of a growth sweep in one interpreter: each model's DTD and gradient are built and
    warmed, then timed in interleaved rounds; each round visits every size (the order rotating)
    and times one (DTD, gradient) pair per size (which goes first alternating), so that a change
    of the shared machine's load hits all sizes alike."""
    import keras
    import numpy as np
    import tensorflow as tf
    from bench_core import gradient_function

    import keras_dtd

    b, repeats = spec["batch"], spec["repeats"]
    entries = []
    for n in spec["values"]:
        keras.utils.set_random_seed(0)
        model = build_model(spec["model"], {spec["param"]: n})
        x = np.random.default_rng(0).uniform(0, 1, (b,) + tuple(model.input_shape[1:])).astype("float32")
        x_tensor = tf.constant(x)
        analyzer = keras_dtd.DTD(model, input_range=(0.0, 1.0), batch_size=b)
        gradient = gradient_function(model, False)
        for _ in range(2):  # build, then one warm call each
            analyzer.analyze(x)
            gradient(x_tensor).numpy()
        entries.append(
            (
                n,
                {
                    "dtd": lambda a=analyzer, x=x: a.analyze(x),
                    "grad": lambda g=gradient, t=x_tensor: g(t).numpy(),
                },
            )
        )
    for (
        _,
        calls,
    ) in entries:  # one untimed round once all are built: the first after a build of others is slow
        calls["dtd"]()
        calls["grad"]()
    times = {n: {"dtd": [], "grad": []} for n, _ in entries}
    for r in range(repeats):
        k = r % len(entries)
        for n, calls in entries[k:] + entries[:k]:
            for name in ("dtd", "grad") if r % 2 == 0 else ("grad", "dtd"):
                start = time.perf_counter()
                calls[name]()
                times[n][name].append(1000 * (time.perf_counter() - start))
    return {
        "keras_dtd_file": keras_dtd.__file__,
        "per_value": {
            str(n): {
                "dtd_ms": statistics.median(t["dtd"]),
                "grad_ms": statistics.median(t["grad"]),
                "ratio": statistics.median(d / g for d, g in zip(t["dtd"], t["grad"])),
                "dtd_all": t["dtd"],
                "grad_all": t["grad"],
            }
            for n, t in times.items()
        },
    }


# ----------------------------------------------------------------- worker: keras_dtd on the peers' case
LABELS = {
    "gradient": "tf.function gradient (bench_core.gradient_function)",
    "DTD": "DTD(input_range=(0, 1))",
    "LRP-ε": "LRP(rules.Epsilon(1e-7))",
    "LRP EpsilonPlus": "LRP(composites.EpsilonPlus()) (ε 1e-6 on Dense, z⁺ on conv)",
    "LRP z⁺": "LRP(rules.ZPlus())",
    "Gradient analyzer": "keras_dtd.Gradient analyzer",
}


def peers_worker(spec):
    """Generate the shared VGG-style case (weights, inputs) into spec["dir"], time keras_dtd's
    analyzers on it, save their maps."""
    import keras
    import numpy as np
    import tensorflow as tf
    from bench_core import gradient_function, vgg_style

    import keras_dtd
    from keras_dtd import composites, rules

    batch, repeats, out = spec["batch"], spec["repeats"], Path(spec["dir"])
    keras.utils.set_random_seed(0)
    model = vgg_style()
    rng = np.random.default_rng(1)
    x = np.random.default_rng(2).uniform(0, 1, (batch, 64, 64, 3)).astype("float32")
    layers, arrays = [], {}
    for layer in model.layers:
        config = {"name": layer.name, "type": type(layer).__name__}
        if isinstance(layer, keras.layers.Conv2D):
            config.update(
                filters=layer.filters,
                kernel_size=list(layer.kernel_size),
                strides=list(layer.strides),
                padding=layer.padding,
                activation=keras.activations.serialize(layer.activation),
            )
        elif isinstance(layer, keras.layers.MaxPooling2D):
            config.update(pool_size=list(layer.pool_size), strides=list(layer.strides), padding=layer.padding)
        elif isinstance(layer, keras.layers.Dense):
            config.update(units=layer.units, activation=keras.activations.serialize(layer.activation))
        elif not isinstance(layer, (keras.layers.InputLayer, keras.layers.Flatten)):
            raise TypeError(f"peers: no mapping for {layer.name} ({type(layer).__name__})")
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            # LSUV-style scaling, so that logits are O(1) as in a trained net: the kernel is scaled so
            # that this layer's pre-activations on x have std 1; biases uniform(-0.05, 0) (<= 0, so
            # DTD stays conservative, and the ε rule's bias term is exercised)
            kernel, bias = layer.get_weights()
            inputs = keras.ops.convert_to_numpy(keras.Model(model.input, layer.input)(x, training=False))
            if isinstance(layer, keras.layers.Conv2D):
                pre = keras.ops.conv(inputs, kernel, strides=layer.strides, padding=layer.padding)
            else:
                pre = keras.ops.matmul(inputs, kernel)
            kernel = (kernel / float(np.std(keras.ops.convert_to_numpy(pre)))).astype("float32")
            bias = rng.uniform(-0.05, 0.0, bias.shape).astype("float32")
            layer.set_weights([kernel, bias])
            arrays[f"{layer.name}/kernel"], arrays[f"{layer.name}/bias"] = kernel, bias
        if not isinstance(layer, keras.layers.InputLayer):
            layers.append(config)
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    np.savez(out / "case.npz", x=x, logits=logits, layers=json.dumps(layers), **arrays)

    x_tensor = tf.constant(x)
    gradient = gradient_function(model, False)
    analyzers = {  # name: constructor; built in this order, the plain gradient first (TF warm-up)
        "DTD": lambda: keras_dtd.DTD(model, input_range=(0.0, 1.0)),
        "LRP-ε": lambda: keras_dtd.LRP(model, rules.Epsilon(1e-7)),
        "LRP EpsilonPlus": lambda: keras_dtd.LRP(model, composites.EpsilonPlus()),
        "LRP z⁺": lambda: keras_dtd.LRP(model, rules.ZPlus()),
        "Gradient analyzer": lambda: keras_dtd.Gradient(model),
    }
    result = {
        "methods": {},
        "version": getattr(keras_dtd, "__version__", ""),
        "keras_dtd_file": keras_dtd.__file__,
        "logits_max_abs": float(np.abs(logits).max()),
        "negative_top_logits": int((logits.max(axis=1) <= 0).sum()),
    }
    start = time.perf_counter()
    gradient(x_tensor).numpy()
    result["methods"]["gradient"] = {"build_s": time.perf_counter() - start, "label": LABELS["gradient"]}
    built, maps = {}, {}
    for name, make in analyzers.items():
        start = time.perf_counter()
        built[name] = make()
        maps[name] = built[name].analyze(x)
        result["methods"][name] = {"build_s": time.perf_counter() - start, "label": LABELS[name]}
    maps["gradient"] = gradient(x_tensor).numpy()
    np.savez(out / "keras_dtd_maps.npz", **maps)

    calls = {name: (lambda a=a: a.analyze(x)) for name, a in built.items()}
    calls["gradient"] = lambda: gradient(x_tensor).numpy()
    result["methods"].update(time_interleaved(calls, repeats, "gradient", result["methods"]))
    result["rss_peak"] = rss_mb()
    return result


def time_interleaved(calls, repeats, reference, into):
    """Median ms of each call over ``repeats`` rounds (the order rotates every round) and the
    median of the per-round ratios to ``reference``."""
    names = list(calls)
    times = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            start = time.perf_counter()
            calls[n]()
            times[n].append(1000 * (time.perf_counter() - start))
    out = {}
    for n in names:
        out[n] = dict(into.get(n, {}))
        out[n].update(
            ms=statistics.median(times[n]),
            ratio=statistics.median(a / b for a, b in zip(times[n], times[reference])),
            all=times[n],
        )
    return out


# ----------------------------------------------------------------------------------- orchestration
def run_worker(kind, spec, timeout, python=None, script=None):
    """Run a worker in a fresh interpreter; its last stdout line is its JSON result."""
    if script is None:
        command = [
            python or sys.executable,
            str(Path(__file__)),
            "--worker",
            kind,
            "--spec",
            json.dumps(spec),
        ]
    else:
        command = [python, str(script), *spec]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=timeout, cwd=str(ROOT)
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "wall_s": time.perf_counter() - start}
    lines = [line for line in done.stdout.strip().splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = " ".join(done.stderr.split())[-300:]
        return {"error": f"exit code {done.returncode}: {tail}", "wall_s": time.perf_counter() - start}
    result = json.loads(lines[-1])
    result["wall_s"] = time.perf_counter() - start
    return result


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


LOADS = []  # 1-minute load average before each case


def run_case(cfg, model, params, batches, build_batch, jit, repeats):
    load = os.getloadavg()[0]
    LOADS.append(load)
    spec = {
        "model": model,
        "params": params,
        "batches": batches,
        "build_batch": build_batch,
        "jit": jit,
        "repeats": repeats,
    }
    grad = run_worker("case", dict(spec, gradient_only=True), cfg["timeout"])
    result = run_worker("case", spec, cfg["timeout"])
    if "error" in grad:
        result.setdefault("error", "gradient-only run: " + grad["error"])
    for key in ("grad_first_s", "rss_grad_first", "rss_grad_peak"):
        if key in grad:
            result[key] = grad[key]
    result["wall_s"] = result.get("wall_s", 0) + grad.get("wall_s", 0)
    result["load"] = load
    log(
        f"{model} {params} jit={jit}: {'ERROR ' + result['error'] if 'error' in result else 'ok'} "
        f"({result['wall_s']:.0f} s)"
    )
    return result


def run_peers(cfg):
    """keras_dtd's worker writes the case into a temp dir; each peer reads it there. The three
    run one after the other, ``peer_passes`` times, and the rounds of all passes are pooled, so
    that a slow spell of the shared machine does not hit one library only."""
    passes = {}
    maps = {}
    with tempfile.TemporaryDirectory(prefix="keras_dtd_peers_") as tmp:
        for k in range(cfg["peer_passes"]):
            spec = {"dir": tmp, "batch": 32, "repeats": cfg["peer_repeats"]}
            load = os.getloadavg()[0]
            r = run_worker("peers", spec, cfg["timeout"])
            r["load"] = load
            passes.setdefault("keras_dtd", []).append(r)
            log(f"peers pass {k + 1} keras_dtd: {r.get('error', 'ok')} ({r['wall_s']:.0f} s)")
            if "error" in r:
                break
            if k == 0:
                maps["keras_dtd"] = load_npz(Path(tmp) / "keras_dtd_maps.npz")
            for library, (variable, default, script) in PEERS.items():
                python = os.environ.get(variable, default)
                if not Path(python).exists():
                    passes[library] = [{"missing": f"not run (no environment at {python}; set {variable})"}]
                    if k == 0:
                        log(f"peers {library}: {passes[library][0]['missing']}")
                    continue
                out = Path(tmp) / f"{library}_maps.npz"
                args = [
                    "--case",
                    str(Path(tmp) / "case.npz"),
                    "--out",
                    str(out),
                    "--repeats",
                    str(cfg["peer_repeats"]),
                ]
                load = os.getloadavg()[0]
                r = run_worker(library, args, cfg["timeout"], python=python, script=script)
                r["python"], r["load"] = python, load
                passes.setdefault(library, []).append(r)
                log(f"peers pass {k + 1} {library}: {r.get('error', 'ok')} ({r['wall_s']:.0f} s)")
                if k == 0 and out.exists():
                    maps[library] = load_npz(out)
    return {library: pool(runs) for library, runs in passes.items()}, maps


def pool(runs):
    """Merge the passes of one library: rounds pooled (medians and per-round ratios over all of
    them), build s the median over passes, peak RSS the largest."""
    good = [r for r in runs if "error" not in r and "missing" not in r]
    if not good:
        return runs[0]
    if len(good) < len(runs):  # keep the passes that worked, say that one failed
        bad = next(r for r in runs if r not in good)
        good[0] = dict(
            good[0], notes=f"{good[0].get('notes', '')}; a pass failed: {bad.get('error')}".lstrip("; ")
        )
    runs = good
    merged = {k: v for k, v in runs[0].items() if k != "methods"}
    merged["passes"] = len(runs)
    merged["loads"] = [r.get("load") for r in runs]
    merged["rss_peak"] = max(r["rss_peak"] for r in runs)
    reference = [t for r in runs for t in r["methods"]["gradient"]["all"]]
    merged["methods"] = {}
    for name, first in runs[0]["methods"].items():
        times = [t for r in runs for t in r["methods"][name]["all"]]
        merged["methods"][name] = dict(
            first,
            build_s=statistics.median(r["methods"][name]["build_s"] for r in runs),
            ms=statistics.median(times),
            ratio=statistics.median(a / b for a, b in zip(times, reference)),
            all=times,
        )
    return merged


def load_npz(path):
    import numpy as np

    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def agreement(maps):
    """max |R_peer − R_keras_dtd| / max |R_keras_dtd| for the pairs that compute the same thing."""
    import numpy as np

    pairs = [  # (library, its method, keras_dtd's method, note)
        ("iNNvestigate", "LRP-ε", "LRP-ε", "lrp.epsilon(ε=1e-7) vs LRP(Epsilon(1e-7))"),
        ("zennit", "LRP-ε", "LRP-ε", "Epsilon(1e-7) on every layer vs LRP(Epsilon(1e-7))"),
        ("zennit", "EpsilonPlus", "LRP EpsilonPlus", "EpsilonPlus vs LRP(composites.EpsilonPlus())"),
        ("zennit", "ZPlus", "LRP z⁺", "ZPlus on every layer vs LRP(rules.ZPlus())"),
        ("zennit", "ZBox+ZPlus", "DTD", "ZBox(0, 1) first, ZPlus above vs DTD(input_range=(0, 1))"),
        (
            "iNNvestigate",
            "deep_taylor.bounded",
            "DTD",
            "deep_taylor.bounded(0, 1) vs DTD(input_range=(0, 1))",
        ),
        ("iNNvestigate", "deep_taylor", "LRP z⁺", "deep_taylor vs LRP(rules.ZPlus())"),
        ("iNNvestigate", "gradient", "gradient", "gradient vs tf.function gradient"),
        ("zennit", "gradient", "gradient", "torch autograd gradient vs tf.function gradient"),
    ]

    def per_sample(a, b):
        a, b = a.astype("float64").reshape(len(a), -1), b.astype("float64").reshape(len(b), -1)
        return np.abs(a - b).max(1) / np.maximum(np.abs(b).max(1), 1e-300)

    rows = []
    for library, theirs, ours, note in pairs:
        if library not in maps or theirs not in maps[library] or ours not in maps["keras_dtd"]:
            continue
        a, b = maps[library][theirs].astype("float64"), maps["keras_dtd"][ours].astype("float64")
        if a.shape != b.shape:
            rows.append((library, theirs, ours, note, f"shape {a.shape} vs {b.shape}", None, "—", "—"))
            continue
        scale = np.abs(b).max()
        samples = per_sample(a, b)
        above = samples > 1e-4
        gradients = maps[library].get("gradient"), maps["keras_dtd"].get("gradient")
        also = "—"
        if theirs != "gradient" and gradients[0] is not None and gradients[1] is not None:
            also = str(int((above & (per_sample(*gradients) > 1e-4)).sum()))
        rows.append(
            (
                library,
                theirs,
                ours,
                note,
                float(np.abs(a - b).max() / scale),
                float(np.median(samples)),
                f"{int(above.sum())} of {len(samples)}",
                also,
            )
        )
    return rows


# -------------------------------------------------------------------------------------- reporting
def fmt(value, digits=1, unit=""):
    if value is None:
        return "—"
    return f"{value:.{digits}f}{unit}"


def growth_verdict(points, unit):
    """points: [(size, cost)] sorted by size. Growth exponents k (cost ∝ size^k) of each step
    and over the whole range, k = log(c1/c0) / log(s1/s0). Verdict from the whole range, with
    the largest step as a check: linear if 0.8 ≤ k ≤ 1.2 and the largest step ≤ 1.3;
    superlinear if either is above; sublinear (fixed costs dominate) if k < 0.8."""
    exponents = [math.log(c1 / c0) / math.log(s1 / s0) for (s0, c0), (s1, c1) in zip(points, points[1:])]
    if not exponents:
        return exponents, "too few points"
    (s0, c0), (s1, c1) = points[0], points[-1]
    k = math.log(c1 / c0) / math.log(s1 / s0)
    last = exponents[-1]
    if k > 1.2 or last > 1.3:
        verdict = "superlinear"
    elif k >= 0.8:
        verdict = "linear"
    else:
        verdict = "sublinear (fixed costs dominate)"
    single = {
        "conv layers": "conv layer",
        "multiply-adds": "multiply-add",
        "blocks": "block",
        "pixels": "pixel",
    }
    per_unit = (c1 / s1) / (c0 / s0)
    return exponents, (
        f"{verdict} in {unit}: k = {k:.2f} over the whole range, {last:.2f} on the largest step; "
        f"cost per {single.get(unit, unit)} at the largest size / at the smallest {per_unit:.2f}"
    )


def write_report(path, cfg, meta, models, growth, peers, peer_maps, under_load, wall_s, quick):
    lines = []
    add = lines.append
    add("# keras_dtd benchmark suite" + (" (QUICK smoke run — not the real numbers)" if quick else ""))
    add("")
    add(f"- command: `{meta['command']}` (from the repository root)")
    add(f"- date: {meta['date']} (UTC), total wall time {wall_s / 60:.1f} min")
    add(
        f"- TensorFlow {meta['tf']}, Keras {meta['keras']}, keras_dtd {meta['keras_dtd']}, "
        f"Python {meta['python']}"
    )
    src, measured, end = meta["source_start"], meta["source_measured"], meta["source_end"]
    if meta["source"] == "HEAD":
        what = f"commit {src['commit']} as committed (`git archive HEAD keras_dtd`" + (
            f"; the working tree's local changes in {', '.join(src['modified'])} were not measured)"
            if src["dirty"]
            else ")"
        )
    else:
        what = f"the working tree at commit {src['commit']}" + (
            f" with local changes in {', '.join(src['modified'])}" if src["dirty"] else " (no local changes)"
        )
    changed = (
        ""
        if end["hash"] == src["hash"]
        else f"; the repository's keras_dtd/ changed while the suite ran "
        f"(commit {end['commit']} at the end), which did not affect these numbers"
    )
    add(
        f"- keras_dtd source: {what}, copied once at the start into a temporary directory that every worker "
        f"imports (sha256 of its *.py {measured['hash']}; "
        f"workers that imported it: {meta['snapshot_workers']}){changed}"
    )
    add(f"- CPU: {meta['cpu']} × {meta['cpus']} (os.cpu_count), Linux {meta['kernel']}")
    add(f"- TF_ENABLE_ONEDNN_OPTS={meta['onednn']}")
    loads = sorted(LOADS) or [meta["load_start"]]
    add(
        f"- load average (1 min) at start {meta['load_start']:.2f}, at end {meta['load_end']:.2f}, "
        f"before each case min {loads[0]:.2f} / median {statistics.median(loads):.2f} / max {loads[-1]:.2f} "
        "(the suite itself keeps about 1 of the 2 cores busy): the machine is shared and noisy, so every "
        "figure is a median and ratios are medians of per-pair ratios"
    )
    add(
        f"- repeats: models {cfg['repeats']} rounds (one round = one DTD and one gradient call per batch "
        f"size, the order alternating), growth {cfg['growth_repeats']}, peers {cfg['peer_passes']} passes × "
        f"{cfg['peer_repeats']} rounds; each after one "
        "warm-up call per batch size; every case in a fresh interpreter (peak RSS = ru_maxrss of that case)"
    )
    add(
        "- inputs: uniform random in [0, 1] (numpy seed 0); weights: Keras default initializers "
        "(`keras.utils.set_random_seed(0)`); `DTD(model, input_range=(0, 1))` with `batch_size` = the "
        "largest batch, so every batch size runs one compiled call; "
        "gradient = `bench_core.gradient_function` "
        "(tf.function gradient of the top logit w.r.t. the input, same `jit_compile`)"
    )
    add("")

    # ----------------------------------------------------------------------------------- section 1
    add("## 1. Models: build, time per batch, ratio to the gradient, jit_compile, memory")
    add("")
    add(
        "Build = `DTD(...)` + first `analyze` of a batch of "
        f"{cfg['build_batch']} (trace + compile + run); gradient first call = its first call on the same "
        "batch, in a second fresh interpreter. RSS: peak after building the Keras model, after the DTD "
        "build, after one DTD call at every batch size (before any gradient call), and at the end of the "
        "case (DTD and gradient at every batch size); the gradient-only interpreter's peak after its calls "
        "at every batch size. "
        "With `jit_compile=True` every new batch size compiles again: "
        '"warm-up s" is the time of the first call at each of the other batch sizes (DTD / gradient).'
    )
    add("")
    add(
        "| model | input | layers | params | forward MMAC/sample | jit | build s (DTD) | "
        "gradient first call s | build ratio | warm-up s (DTD / gradient) | "
        "RSS MB: model → DTD built → DTD at every batch size → case peak | "
        "RSS MB gradient-only peak | "
        "DTD conservation error | load (1 min) before the case |"
    )
    add("|" + "---|" * 14)
    for (model, jit), r in models.items():
        head = [
            MODEL_TITLES[model],
            r.get("input", "—"),
            str(r.get("layers", "—")),
            f"{r.get('params', 0) / 1e6:.2f} M" if "params" in r else "—",
            f"{r['macs'] / 1e6:.1f}" if "macs" in r else "—",
            "on" if jit else "off",
        ]
        if "error" in r:
            add("| " + " | ".join(head + [f"**{clean(r['error'])}**"] + ["—"] * 7) + " |")
            continue
        add(
            "| "
            + " | ".join(
                head
                + [
                    f"{r['build_s']:.2f}",
                    fmt(r.get("grad_first_s"), 2),
                    fmt(r["build_s"] / r["grad_first_s"], 1, "×") if r.get("grad_first_s") else "—",
                    f"{r['dtd_warmup_s']:.2f} / {r['grad_warmup_s']:.2f}",
                    f"{r['rss_model']:.0f} → {r['rss_build']:.0f} → "
                    f"{r['rss_dtd_all']:.0f} → {r['rss_peak']:.0f}",
                    fmt(r.get("rss_grad_peak"), 0),
                    f"{r['conservation']:.1e}" if r.get("conservation") is not None else "—",
                    fmt(r.get("load"), 2),
                ]
            )
            + " |"
        )
    add("")
    add(
        "Time per batch (ms, medians) and DTD / gradient (median of the per-pair ratios; in brackets the "
        "quartiles of the per-pair ratios, a measure of the noise):"
    )
    add("")
    batches = cfg["batches"]
    add(
        "| model | jit | "
        + " | ".join(f"b={b}: DTD / gradient ms, ratio" for b in batches)
        + " | DTD ms/sample at b="
        f"{batches[-1]} |"
    )
    add("|" + "---|" * (3 + len(batches)))
    for (model, jit), r in models.items():
        if "error" in r:
            continue
        cells = []
        for b in batches:
            p = r["per_batch"][str(b)]
            cells.append(f"{p['dtd_ms']:.1f} / {p['grad_ms']:.1f}, **{p['ratio']:.2f}×** {quartiles(p)}")
        last = r["per_batch"][str(batches[-1])]
        add(
            f"| {MODEL_TITLES[model]} | {'on' if jit else 'off'} | "
            + " | ".join(cells)
            + f" | {last['dtd_ms'] / batches[-1]:.2f} |"
        )
    add("")
    if len(cfg["jit"]) == 2 and models:
        add(
            "jit_compile effect (time with jit on / time with jit off, per batch size; "
            "< 1 means XLA is faster):"
        )
        add("")
        add("| model | " + " | ".join(f"b={b}: DTD, gradient" for b in batches) + " | build s off → on |")
        add("|" + "---|" * (2 + len(batches)))
        for model in cfg["models"]:
            off, on = models.get((model, False), {}), models.get((model, True), {})
            if "error" in off or "error" in on or not off or not on:
                continue
            cells = []
            for b in batches:
                po, pn = off["per_batch"][str(b)], on["per_batch"][str(b)]
                cells.append(f"{pn['dtd_ms'] / po['dtd_ms']:.2f}, {pn['grad_ms'] / po['grad_ms']:.2f}")
            add(
                f"| {MODEL_TITLES[model]} | "
                + " | ".join(cells)
                + f" | {off['build_s']:.2f} → {on['build_s']:.2f} |"
            )
        add("")

    # ----------------------------------------------------------------------------------- section 2
    add("## 2. How cost grows (jit off)")
    add("")
    verdicts = []
    sweeps = [
        (
            "conv_chain",
            "depth",
            "conv layers",
            "Plain conv chain (depth): Input 32×32×3, N × Conv2D(32, 3×3, same, ReLU), GAP, Dense(10)",
            "conv layer",
        ),
        (
            "dense_chain",
            "blocks",
            "blocks",
            "DenseNet-style chain (depth): Input 16×16×3, Conv2D(16) stem, N × [BatchNorm, "
            "ReLU, Conv2D(12, 3×3), Concatenate with the block input], BN, ReLU, GAP, Dense(10); "
            "channels grow by 12 per block, so multiply-adds grow quadratically with N",
            "block",
        ),
        (
            "vgg_size",
            "size",
            "px",
            "VGG-style CNN (input size): the CNN of bench_core at other input sizes (same "
            "layers; Dense after Flatten resized)",
            "pixel",
        ),
    ]
    for key, param, label, title, unit in sweeps:
        rows = growth.get(key, {})
        b = cfg["growth_batch"][key]
        add(f"### {title}")
        add("")
        add(
            f"Batch {b}. Build s, gradient first call s and RSS: one fresh interpreter per size "
            f"(as in section 1); ms/batch: all sizes in one interpreter, {cfg['growth_repeats']} interleaved "
            "rounds (each round visits every size, the order rotating), medians; ms/unit = ms per batch / "
            f"{label if key != 'vgg_size' else 'pixels (size²)'}."
        )
        add("")
        add(
            f"| {label} | layers | forward GMAC/batch | build s (DTD) | gradient first call s | "
            "DTD ms/batch | gradient ms/batch | ratio | DTD ms per unit | gradient ms per unit | "
            "RSS MB case peak |"
        )
        add("|" + "---|" * 11)
        ok = []
        for n, r in rows.items():
            if n == "_sweep":
                continue
            if "error" in r:
                add(f"| {n} | **{clean(r['error'])}** |" + " — |" * 9)
                continue
            p = r["per_batch"][str(b)]
            units = n * n if key == "vgg_size" else n
            ok.append((n, r, p))
            add(
                f"| {n} | {r['layers']} | {r['macs'] * b / 1e9:.2f} | {r['build_s']:.2f} | "
                f"{fmt(r.get('grad_first_s'), 2)} | {p['dtd_ms']:.1f} | {p['grad_ms']:.1f} | "
                f"{p['ratio']:.2f}× | {p['dtd_ms'] / units:.4g} | {p['grad_ms'] / units:.4g} | "
                f"{r['rss_peak']:.0f} |"
            )
        add("")
        if len(ok) >= 2:
            if key == "conv_chain":
                xs = [n for n, _, _ in ok]
                measures = [
                    ("DTD ms/batch vs conv layers", [p["dtd_ms"] for _, _, p in ok], "conv layers"),
                    ("gradient ms/batch vs conv layers", [p["grad_ms"] for _, _, p in ok], "conv layers"),
                    ("DTD build s vs conv layers", [r["build_s"] for _, r, _ in ok], "conv layers"),
                ]
            elif key == "dense_chain":
                xs_blocks = [n for n, _, _ in ok]
                xs_macs = [r["macs"] * b / 1e9 for _, r, _ in ok]
                measures = [
                    (
                        "DTD ms/batch vs multiply-adds",
                        [p["dtd_ms"] for _, _, p in ok],
                        "multiply-adds",
                        xs_macs,
                    ),
                    (
                        "gradient ms/batch vs multiply-adds",
                        [p["grad_ms"] for _, _, p in ok],
                        "multiply-adds",
                        xs_macs,
                    ),
                    ("DTD ms/batch vs blocks", [p["dtd_ms"] for _, _, p in ok], "blocks", xs_blocks),
                    ("DTD build s vs blocks", [r["build_s"] for _, r, _ in ok], "blocks", xs_blocks),
                ]
            else:
                xs = [n * n for n, _, _ in ok]
                measures = [
                    ("DTD ms/batch vs pixels", [p["dtd_ms"] for _, _, p in ok], "pixels"),
                    ("gradient ms/batch vs pixels", [p["grad_ms"] for _, _, p in ok], "pixels"),
                    ("DTD build s vs pixels", [r["build_s"] for _, r, _ in ok], "pixels"),
                ]
            add(
                "Growth exponent k (cost ∝ size^k; 1 = linear, 2 = quadratic), per step between neighbouring "
                "sizes. Verdict from k over the whole range: linear if 0.8 ≤ k ≤ 1.2 and the largest step's "
                "k ≤ 1.3, superlinear above, sublinear (fixed costs dominate) below 0.8."
            )
            add("")
            for m in measures:
                name, ys, what = m[0], m[1], m[2]
                sizes = m[3] if len(m) > 3 else xs
                exponents, verdict = growth_verdict(list(zip(sizes, ys)), what)
                add(f"- {name}: k per step " + ", ".join(f"{e:.2f}" for e in exponents) + f" → {verdict}")
                verdicts.append((title.split(":")[0], name, verdict))
            ratios = [p["ratio"] for _, _, p in ok]
            add("- DTD / gradient across the sweep: " + ", ".join(f"{q:.2f}×" for q in ratios))
        add("")

    # ----------------------------------------------------------------------------------- section 3
    add("## 3. Peers on the same VGG-style case (64×64×3, batch 32, same weights and inputs)")
    add("")
    add(
        "The weights (`vgg_style()`'s Keras initializers with seed 0, each kernel then scaled, layer by "
        "layer, so that its pre-activations on the batch have std 1 (LSUV-style, so that logits are O(1) "
        "as in a trained net), biases uniform(−0.05, 0), so that the ε rule's bias term is exercised and "
        "DTD stays conservative) and the inputs (uniform in [0, 1]) are generated in keras_dtd's "
        "interpreter and saved as an .npz in a temp dir; each peer rebuilds the network from the saved "
        "layer list (zennit: Conv2d kernels (kh, kw, in, out) → (out, in, kh, kw), inputs NCHW, a permute "
        "to NHWC before Flatten). Build = analyzer construction + first call, in an interpreter where the "
        "library's own gradient ran first (so it does not carry the framework's warm-up); median over the "
        f"passes. ms/batch = median over all rounds of {cfg['peer_passes']} pass(es) (a pass runs "
        "keras_dtd, iNNvestigate and zennit one after the other, each in a fresh interpreter, "
        f"{cfg['peer_repeats']} interleaved rounds, the order rotating each round); "
        '"× own gradient" = median of per-round ratios to the same library\'s plain '
        'gradient; "× keras_dtd" = ms / keras_dtd\'s corresponding method (DTD for z⁺/DeepTaylor '
        "methods, LRP-ε for ε methods, gradient for gradients)."
    )
    add("")
    add(
        "| library | method | build s | ms/batch | × own gradient | × keras_dtd | peak RSS MB | "
        "load (1 min) before each pass |"
    )
    add("|---|---|---|---|---|---|---|---|")
    kd = peers.get("keras_dtd", {})
    kd_methods = kd.get("methods", {}) if "error" not in kd else {}
    counterpart = {
        "DTD": "DTD",
        "LRP-ε": "LRP-ε",
        "LRP EpsilonPlus": "LRP EpsilonPlus",
        "LRP z⁺": "LRP z⁺",
        "gradient": "gradient",
        "Gradient analyzer": "gradient",
        "EpsilonPlus": "LRP EpsilonPlus",
        "ZPlus": "DTD",
        "ZBox+ZPlus": "DTD",
        "deep_taylor": "DTD",
        "deep_taylor.bounded": "DTD",
    }
    for library in ["keras_dtd", *PEERS]:
        r = peers.get(library, {})
        if "missing" in r:
            add(f"| {library} | {r['missing']} | | | | | | |")
            continue
        if "error" in r:
            add(f"| {library} | **{clean(r['error'])}** | | | | | | |")
            continue
        version = r.get("version", "")
        for name, m in r.get("methods", {}).items():
            ref = kd_methods.get(counterpart.get(name, name))
            versus = f"{m['ms'] / ref['ms']:.2f}×" if ref and "ms" in m and library != "keras_dtd" else "—"
            add(
                f"| {library} {version} | {m.get('label', name)} | {fmt(m.get('build_s'), 2)} | "
                f"{fmt(m.get('ms'), 1)} | "
                f"{fmt(m.get('ratio'), 2, '×')} | {versus} | {fmt(r.get('rss_peak'), 0)} | "
                f"{', '.join(f'{x:.2f}' for x in r.get('loads', []) if x is not None)} |"
            )
    add("")
    notes = []
    for library in PEERS:
        r = peers.get(library, {})
        if "notes" in r:
            notes.append(f"- {library}: {r['notes']}")
        if "logits_max_abs_diff" in r:
            notes.append(
                f"- {library}: its logits vs keras_dtd's Keras model: "
                f"max abs diff {r['logits_max_abs_diff']:.1e} "
                f"(max abs logit {kd.get('logits_max_abs', float('nan')):.3g})"
            )
    if notes:
        lines.extend(notes)
        add("")
    rows = agreement(peer_maps) if peer_maps else []
    add(
        "Agreement of the maps (starting relevance: keras_dtd's LRP explains the signed selected logit, "
        f"DTD max(f, 0) ({kd.get('negative_top_logits', '?')} of 32 samples have a top logit ≤ 0); "
        "iNNvestigate and zennit one-hot × logit of the top class). "
        "The first two rows are the check asked for; the others are for information."
    )
    add("")
    add(
        "| peer | their method | keras_dtd method | what | max abs diff / max abs (whole batch) | "
        "median over samples of the per-sample figure | samples above 1e-4 | "
        "of which the two gradients also differ by > 1e-4 "
        "(a ReLU or max-pool switch that flips between the two float32 forward passes) |"
    )
    add("|---|---|---|---|---|---|---|---|")
    for library, theirs, ours, note, value, med, above, also in rows:
        value_s = value if isinstance(value, str) else f"{value:.1e}"
        add(
            f"| {library} | {theirs} | {ours} | {note} | {value_s} | "
            f"{'—' if med is None else f'{med:.1e}'} | {above} | {also} |"
        )
    if not rows:
        add("| — | no peer maps | | | | | | |")
    add("")

    if under_load:
        import under_load as load_module

        add(
            "## 4. Under load (`benchmarks/under_load.py`, VGG-style CNN, "
            "`DTD(input_range=(0, 1), batch_size=32)`)"
        )
        add("")
        lines.extend(load_module.report_lines(under_load))
        add("")

    # --------------------------------------------------------------------------------------- aims
    add("## Aims")
    add("")
    aims = aims_lines(models, peers, cfg)
    lines.extend(aims)
    add("")
    add("## Growth verdicts")
    add("")
    for sweep, name, verdict in verdicts:
        add(f"- {sweep} — {name}: {verdict}")
    add("")
    Path(path).write_text("\n".join(lines))
    return lines


def aims_lines(models, peers, cfg):
    out = []
    kd = peers.get("keras_dtd", {}).get("methods", {})
    if "DTD" in kd and "gradient" in kd:
        ratio = kd["DTD"]["ratio"]
        out.append(
            f"- DTD ≤ 1.5× keras_dtd's own gradient on the peers' case (VGG-style, batch 32, jit off): "
            f"{ratio:.2f}× → **{'met' if ratio <= 1.5 else 'not met'}**"
        )
    for (model, jit), r in models.items():
        if jit or "error" in r:
            continue
        cells = [f"b={b} {r['per_batch'][str(b)]['ratio']:.2f}×" for b in cfg["batches"]]
        met = [r["per_batch"][str(b)]["ratio"] <= 1.5 for b in cfg["batches"]]
        verdict = (
            "met at every batch size"
            if all(met)
            else (
                "not met at any batch size"
                if not any(met)
                else "met at " + ", ".join(f"b={b}" for b, m in zip(cfg["batches"], met) if m) + " only"
            )
        )
        out.append(
            f"- DTD ≤ 1.5× gradient, {MODEL_TITLES[model]} (jit off): {', '.join(cells)} → **{verdict}**"
        )
    for library in PEERS:
        r = peers.get(library, {})
        if "missing" in r or "error" in r or "methods" not in r:
            reason = r.get("missing") or f"not measured ({r.get('error', 'no result')})"
            out.append(f"- keras_dtd faster per batch than {library}: {reason}")
            continue
        comparisons = []
        for theirs, m in r["methods"].items():
            if "gradient" in theirs:
                continue
            ours = {"LRP-ε": "LRP-ε", "EpsilonPlus": "LRP EpsilonPlus"}.get(theirs, "DTD")
            if ours in kd:
                comparisons.append((theirs, ours, kd[ours]["ms"], m["ms"]))
        faster = all(o < t for _, _, o, t in comparisons)
        close = [t for t, _, o, tv in comparisons if abs(tv - o) / min(tv, o) < 0.1]
        detail = "; ".join(
            f"keras_dtd {o} {ov:.0f} ms vs {library} {t} {tv:.0f} ms ({tv / ov:.2f}×)"
            for t, o, ov, tv in comparisons
        )
        caveat = (
            f" (within 10 % for {', '.join(close)}: on this noisy shared machine, not a clear margin)"
            if close
            else ""
        )
        out.append(
            f"- keras_dtd faster per batch than {library}: {detail} "
            f"→ **{'met' if faster else 'not met'}**{caveat}"
        )
    return out


def quartiles(p):
    ratios = [d / g for d, g in zip(p["dtd_all"], p["grad_all"])]
    if len(ratios) < 2:
        return ""
    q = statistics.quantiles(ratios, n=4)
    return f"({q[0]:.2f}–{q[2]:.2f})"


def clean(text):
    return " ".join(str(text).replace("|", "/").split())[:300]


def source_state(package=None):
    """The repository's commit, whether its keras_dtd/ differs from it (read-only git), and a
    hash of the *.py files of ``package`` (default: the repository's keras_dtd/)."""
    import hashlib

    def git(*command):
        try:
            done = subprocess.run(
                ["git", *command], capture_output=True, text=True, cwd=str(ROOT), timeout=30
            )
            return done.stdout.strip() if done.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    digest = hashlib.sha256()
    package = Path(package or ROOT / "keras_dtd")
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    status = git("status", "--porcelain", "--", "keras_dtd") or ""
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(status),
        "modified": [line[3:] for line in status.splitlines()],
        "hash": digest.hexdigest()[:12],
    }


def metadata(args):
    import keras
    import tensorflow as tf

    import keras_dtd

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "command": ".venv/bin/python benchmarks/suite.py"
        + (" --quick" if args.quick else "")
        + (f" --out {shlex.quote(args.out)}" if args.out else "")
        + (f" --source {args.source}" if args.source != "worktree" else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "tf": tf.__version__,
        "keras": keras.__version__,
        "keras_dtd": getattr(keras_dtd, "__version__", "?"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TensorFlow's default: on)"),
        "load_start": os.getloadavg()[0],
        "source_start": source_state(),
        "source_measured": source_state(args.snapshot),
        "source": args.source,
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a much smaller run, for a smoke check")
    parser.add_argument(
        "--out", help="report path (default: benchmarks/RESULTS.md; with --quick a temp file)"
    )
    parser.add_argument(
        "--source",
        choices=["worktree", "HEAD"],
        default="worktree",
        help="which keras_dtd/ to measure: the working tree (default) or the last commit "
        "(read with git archive); either is copied once at the start",
    )
    parser.add_argument(
        "--only", default="models,growth,peers,load", help=argparse.SUPPRESS
    )  # for development
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()

    sys.path.insert(0, str(HERE))  # bench_core
    if args.worker:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import under_load

        worker = {
            "case": case_worker,
            "peers": peers_worker,
            "sweep": sweep_worker,
            "load": under_load.worker,
        }[args.worker]
        print(json.dumps(worker(json.loads(args.spec))))
        return

    start = time.perf_counter()
    cfg = QUICK if args.quick else FULL
    out = args.out or (
        str(Path(tempfile.gettempdir()) / "keras_dtd_RESULTS-quick.md")
        if args.quick
        else str(HERE / "RESULTS.md")
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Measure one fixed copy of keras_dtd/: every worker imports it (PYTHONPATH comes before the
    # editable install), so edits to the repository during the run do not mix versions.
    snapshot = tempfile.mkdtemp(prefix="keras_dtd_snapshot_")
    try:
        if args.source == "HEAD":
            archive = subprocess.run(
                ["git", "archive", "--format=tar", "HEAD", "keras_dtd"],
                cwd=str(ROOT),
                capture_output=True,
                check=True,
            ).stdout
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(snapshot, filter="data")
        else:
            shutil.copytree(
                ROOT / "keras_dtd", Path(snapshot) / "keras_dtd", ignore=shutil.ignore_patterns("__pycache__")
            )
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [snapshot, os.environ.get("PYTHONPATH")] if p)
        sys.path.insert(0, snapshot)
        args.snapshot = Path(snapshot) / "keras_dtd"
        run_suite(args, start, cfg, out)
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)


def run_suite(args, start, cfg, out):
    meta = metadata(args)
    only = set(args.only.split(","))

    models = {}
    if "models" in only:
        for model in cfg["models"]:
            for jit in cfg["jit"]:
                r = run_case(cfg, model, {}, cfg["batches"], cfg["build_batch"], jit, cfg["repeats"][model])
                r["input"] = {"mlp": "3072", "vgg": "64×64×3", "resnet50": "64×64×3", "densenet": "64×64×3"}[
                    model
                ]
                models[(model, jit)] = r

    growth = {}
    if "growth" in only:
        for key, model, param, values in [
            ("conv_chain", "conv_chain", "depth", cfg["conv_chain"]),
            ("dense_chain", "dense_chain", "blocks", cfg["dense_chain"]),
            ("vgg_size", "vgg", "size", cfg["vgg_sizes"]),
        ]:
            b = cfg["growth_batch"][key]
            growth[key] = {n: run_case(cfg, model, {param: n}, [b], b, False, 0) for n in values}
            spec = {
                "model": model,
                "param": param,
                "values": values,
                "batch": b,
                "repeats": cfg["growth_repeats"],
            }
            LOADS.append(os.getloadavg()[0])
            sweep = run_worker("sweep", spec, cfg["timeout"])
            log(f"{key} sweep: {sweep.get('error', 'ok')} ({sweep['wall_s']:.0f} s)")
            for n in values:
                if "error" in sweep:
                    growth[key][n].setdefault("error", "sweep: " + sweep["error"])
                else:
                    growth[key][n]["per_batch"] = {str(b): sweep["per_value"][str(n)]}
            growth[key]["_sweep"] = sweep

    peers, peer_maps = ({}, {})
    if "peers" in only:
        peers, peer_maps = run_peers(cfg)

    under_load = {}
    if "load" in only:
        import under_load as load_module

        LOADS.append(os.getloadavg()[0])
        under_load = run_worker("load", load_module.QUICK if args.quick else load_module.FULL, cfg["timeout"])
        log(f"under load: {under_load.get('error', 'ok')} ({under_load['wall_s']:.0f} s)")

    meta["load_end"] = os.getloadavg()[0]
    meta["source_end"] = source_state()
    origins = [
        r.get("keras_dtd_file")
        for r in [
            *models.values(),
            *(c for g in growth.values() for c in g.values()),
            peers.get("keras_dtd", {}),
            under_load,
        ]
        if r.get("keras_dtd_file")
    ]
    inside = sum(1 for o in origins if o.startswith(str(args.snapshot)))
    meta["snapshot_workers"] = f"{inside} of {len(origins)}"
    lines = write_report(
        out, cfg, meta, models, growth, peers, peer_maps, under_load, time.perf_counter() - start, args.quick
    )
    print("\n".join(lines))
    log(f"wrote {out} in {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
