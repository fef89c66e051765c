"""Faithfulness of each method on the digits CNN: pixel-flipping (AOPC) and deletion/insertion.

A ReLU CNN learns scikit-learn's bundled 8×8 digits (no download). For each method, the
test images' pixels are perturbed in the order of their relevance (most relevant first):
AOPC is the mean drop of the explained logit over the steps (higher: the map found what
matters), deletion the area under the logit curve as pixels are set to 0 (lower is
better), insertion the area as pixels are revealed on a blurred image (higher is better).
Random order is the floor. Samek et al. (2017) found LRP above sensitivity analysis; this
script reports what it measures here.

    python examples/faithfulness.py [--epochs 15] [--samples 128] [--out out]
"""

import argparse
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dtd import (  # noqa: E402
    DTD,
    LRP,
    Gradient,
    InputTimesGradient,
    IntegratedGradients,
    composites,
    datasets,
    metrics,
    rules,
)
from keras_dtd.demo import digit_cnn, train  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--out", default="out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = datasets.digits(seed=args.seed)
    keras.utils.set_random_seed(args.seed)
    model = train(digit_cnn(x_train.shape[1:]), x_train, y_train, args.epochs, verbose=0)
    x, y = x_test[: args.samples], y_test[: args.samples]
    accuracy = float(np.mean(model.predict(x_test, verbose=0).argmax(axis=1) == y_test))
    print(
        f"digits CNN: test accuracy {accuracy:.3f}; {len(x)} test images, {args.steps} steps of 4 pixels each"
    )

    analyzers = {
        "DTD": DTD(model),
        "DTD bounded (z^B)": DTD(model, input_range=(0.0, 1.0)),
        "LRP-ε (0.01)": LRP(model, rules.Epsilon(0.01)),
        "LRP EpsilonPlusFlat": LRP(model, composites.EpsilonPlusFlat()),
        "gradient × input": InputTimesGradient(model),
        "sensitivity (gradient²)": Gradient(model, postprocess="square"),
        "integrated gradients": IntegratedGradients(model, steps=32),
    }
    maps = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, analyzer in analyzers.items():
            maps[name] = analyzer.analyze(x, neuron_selection=y)
    maps["random"] = np.random.default_rng(args.seed).normal(size=x.shape)

    common = {"neuron_selection": y, "steps": args.steps, "patch": 2, "seed": args.seed}
    rows, curves = {}, {}
    print("\n| method | AOPC (MoRF, ↑) | deletion AUC (↓) | insertion AUC (↑) |")
    print("|---|---|---|---|")
    for name, relevance in maps.items():
        order = "random" if name == "random" else "morf"
        flipped = metrics.pixel_flipping(model, x, relevance, order=order, **common)
        deleted = metrics.deletion(model, x, relevance, order=order, **common)
        inserted = metrics.insertion(model, x, relevance, order=order, **common)
        rows[name] = {
            "aopc": float(flipped.score.mean()),
            "deletion": float(deleted.score.mean()),
            "insertion": float(inserted.score.mean()),
        }
        curves[name] = flipped.curves.mean(axis=0)
        print(
            f"| {name} | {rows[name]['aopc']:.3f} | {rows[name]['deletion']:.3f} "
            f"| {rows[name]['insertion']:.3f} |"
        )

    from matplotlib.figure import Figure

    os.makedirs(args.out, exist_ok=True)
    figure = Figure(figsize=(6.5, 4))
    axes = figure.add_subplot()
    for name, curve in curves.items():
        axes.plot(flipped.fractions, curve, label=name, linestyle=":" if name == "random" else "-")
    axes.set_xlabel("share of 2×2 patches set to 0 (most relevant first)")
    axes.set_ylabel("mean logit of the true class")
    axes.legend(fontsize=7)
    path = os.path.join(args.out, "faithfulness.png")
    figure.savefig(path, dpi=110, bbox_inches="tight")
    print(f"\nfigure: {path}")
    return {"accuracy": accuracy, "rows": rows}


if __name__ == "__main__":
    main()
