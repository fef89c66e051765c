"""The paper's digits-with-a-distractor experiment.

Each image shows a target digit (0–3) beside a distracting digit (4–9), the target on a
random side. A ReLU CNN whose convolutional detectors are max-pooled over all positions
(a detection–pooling network, as in the paper) learns to name the target. A good explanation puts its
relevance on the target half of the image, not on the distractor. We report, over the
test set, the share of relevance on the target half for Deep Taylor (z^B for pixels in
[0, 1], z⁺ above) and for sensitivity analysis (squared gradient), the paper's comparison.
Data: scikit-learn's bundled 8×8 digits (no download), so images are 8×16.

    python examples/digits_distractor.py [--epochs 30] [--out out]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dtd import DTD, Gradient, datasets, plot  # noqa: E402
from keras_dtd.demo import digit_cnn, train  # noqa: E402


def target_share(relevance, left):
    """Share of (absolute) relevance on the half that holds the target digit, per image."""
    r = np.abs(relevance[..., 0])
    half = r.shape[2] // 2
    on_left = r[:, :, :half].sum(axis=(1, 2))
    total = r.sum(axis=(1, 2))
    on_target = np.where(left, on_left, total - on_left)
    return np.divide(on_target, total, out=np.full_like(total, np.nan), where=total > 0)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default="out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = datasets.digits(seed=args.seed)
    x_train, t_train, _ = datasets.distractor_pairs(x_train, y_train, seed=args.seed)
    x_test, t_test, left = datasets.distractor_pairs(x_test, y_test, seed=args.seed + 1)
    print(
        f"data: {len(x_train)} training / {len(x_test)} test images of 8x16 pixels "
        "(target 0-3 beside a distractor 4-9), from scikit-learn's bundled digits"
    )

    keras.utils.set_random_seed(args.seed)
    network = digit_cnn(x_train.shape[1:], classes=4, filters=(32, 64, 64), head="global_max")
    model = train(network, x_train, t_train, args.epochs, verbose=0)
    accuracy = float(np.mean(model.predict(x_test, verbose=0).argmax(axis=1) == t_test))
    print(f"test accuracy of naming the target: {accuracy:.3f}")

    methods = {
        "Deep Taylor (z^B, z+)": DTD(model, input_range=(0.0, 1.0)),
        "sensitivity (gradient^2)": Gradient(model, postprocess="square"),
    }
    results = {}
    maps = {}
    for name, analyzer in methods.items():
        relevance = analyzer.analyze(x_test, neuron_selection=t_test)
        share = target_share(relevance, left)
        results[name] = float(np.nanmean(share))
        maps[name] = relevance
    print("\nshare of relevance on the target half (mean over test images; 0.5 = no preference)")
    for name, share in results.items():
        print(f"  {name:26s} {share:.3f}")

    os.makedirs(args.out, exist_ok=True)
    shown = np.arange(6)
    side = ["left" if left[i] else "right" for i in shown]
    titles = [f"DTD: {t_test[i]} on the {s}" for i, s in zip(shown, side)]
    titles += [f"sensitivity: {t_test[i]} on the {s}" for i, s in zip(shown, side)]
    path = os.path.join(args.out, "digits_distractor.png")
    relevance = np.concatenate([maps[name][shown] for name in methods])
    plot.grid(relevance, x=np.concatenate([x_test[shown]] * 2), titles=titles, ncols=6, size=2.0, save=path)
    print(f"\nfigure: {path} (top row: DTD, bottom row: sensitivity, over the inputs)")
    return {"accuracy": accuracy, "target_share": results}


if __name__ == "__main__":
    main()
