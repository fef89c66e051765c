"""Relevance models side by side: Min-Max, training-free, DTD, Taylor at a root, sensitivity.

A ReLU CNN learns scikit-learn's bundled 8×8 digits (no download). Above its hidden Dense
layer, a Min-Max relevance model is fitted to the relevance DTD gives that layer, and the
training-free model takes it as DTD does (z⁺ through the top layer's own weights); below
it, both continue with DTD (z^B for pixels in [0, 1]). For comparison: DTD itself, first-
order Taylor decomposition at a searched root (R = ∇f(x̃) ⊙ (x − x̃), f(x̃) ≈ 0) and
sensitivity (squared gradient). The table gives the relevance models' fit (R² against
DTD's relevance at the layer) and, per method, the conservation error (max over samples
of |Σ R − f| / f), the share of negative relevance and the faithfulness AOPC (pixel-
flipping of 2×2 patches to 0, most relevant first; keras_dtd.metrics.pixel_flipping).

    python examples/relevance_models.py [--epochs 15] [--fit-epochs 40] [--out out]
"""

import argparse
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dtd import DTD, Gradient, datasets, metrics, plot  # noqa: E402
from keras_dtd.demo import digit_cnn, train  # noqa: E402
from keras_dtd.relevance_models import MinMax, TrainingFree  # noqa: E402
from keras_dtd.taylor import RootNotFoundWarning, Taylor  # noqa: E402


def quality(relevance, f):
    """(max relative conservation error over samples with f > 0, negative share)."""
    flat = relevance.reshape(len(relevance), -1).astype(np.float64)
    ok = f > 0
    error = np.abs(flat.sum(axis=1)[ok] - f[ok]) / f[ok]
    negative = np.abs(np.minimum(flat, 0)).sum() / max(np.abs(flat).sum(), 1e-300)
    return float(error.max()), float(negative)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--fit-epochs", type=int, default=40)
    parser.add_argument("--samples", type=int, default=64, help="test images explained")
    parser.add_argument("--out", default="out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = datasets.digits(seed=args.seed)
    keras.utils.set_random_seed(args.seed)
    model = train(digit_cnn(x_train.shape[1:]), x_train, y_train, args.epochs, verbose=0)
    accuracy = float(np.mean(model.predict(x_test, verbose=0).argmax(axis=1) == y_test))
    layer = model.layers[-2].name  # the hidden Dense (ReLU) below the logits
    print(f"digits CNN: test accuracy {accuracy:.3f}; relevance models of layer '{layer}'")

    min_max = MinMax(model, layer, units=32)
    min_max.fit(x_train, epochs=args.fit_epochs, batch_size=32, verbose=0)
    free = TrainingFree(model, layer)
    x = x_test[: args.samples]
    f = np.maximum(model.predict(x, verbose=0).max(axis=1), 0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RootNotFoundWarning)
        taylor = Taylor(model, input_range=(0.0, 1.0)).explain(x)
    maps = {
        "Min-Max model": min_max.analyzer((0.0, 1.0)).analyze(x),
        "training-free model": free.analyzer((0.0, 1.0)).analyze(x),
        "DTD (z^B, z+)": DTD(model, input_range=(0.0, 1.0)).analyze(x),
        "Taylor at a root": taylor.relevance,
        "sensitivity": Gradient(model, postprocess="square").analyze(x),
    }
    fits = {
        "Min-Max model": min_max.evaluate(x, (0.0, 1.0))["r2"],
        "training-free model": free.evaluate(x, (0.0, 1.0))["r2"],
    }
    rows = {}
    print(f"\n| method | R² at '{layer}' | conservation error | negative share | AOPC (MoRF) |")
    print("|---|---|---|---|---|")
    for name, relevance in maps.items():
        error, negative = quality(relevance, f)
        aopc = float(metrics.pixel_flipping(model, x, relevance, patch=2, steps=16).score.mean())
        rows[name] = {
            "r2": fits.get(name),
            "conservation_error": error,
            "negative_share": negative,
            "aopc": aopc,
        }
        r2 = f"{fits[name]:.4f}" if name in fits else "—"
        print(f"| {name} | {r2} | {error:.3g} | {negative:.3g} | {aopc:.3f} |")
    print(
        f"\nTaylor: root found for {int(taylor.converged.sum())} of {len(x)} images "
        f"(median distance ‖x − x̃‖ = {np.median(taylor.distance):.2f}); {len(caught)} warning(s)"
    )

    os.makedirs(args.out, exist_ok=True)
    shown = np.arange(6)
    path = os.path.join(args.out, "relevance_models.png")
    titles = [f"{name}: {y_test[i]}" for name in maps for i in shown]
    plot.grid(
        np.concatenate([m[shown] for m in maps.values()]),
        x=np.concatenate([x[shown]] * len(maps)),
        titles=titles,
        ncols=len(shown),
        size=1.8,
        save=path,
    )
    print(f"figure: {path} (one row per method: {', '.join(maps)})")
    return {
        "accuracy": accuracy,
        "rows": rows,
        "maps": maps,
        "taylor_converged": float(taylor.converged.mean()),
    }


if __name__ == "__main__":
    main()
