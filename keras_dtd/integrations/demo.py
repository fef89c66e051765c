"""The offline demo: train a small CNN on handwritten digits, explain test digits with
DTD (bounded pixels), and write figures and a summary to an output folder.

    keras-dtd demo --out out            # scikit-learn's bundled 8×8 digits
    keras-dtd demo --out out --mnist    # the real MNIST, if it is in the Keras cache
"""

from __future__ import annotations

import os
import time

import keras
import numpy as np
from matplotlib.figure import Figure

from keras_dtd.analyzers.analyzer import DTD
from keras_dtd.integrations import datasets, plot
from keras_dtd.integrations.constraints import NonPositive


def digit_cnn(shape, classes=10, filters=(16, 32, 32), head="dense"):
    """A small ReLU CNN: two 3×3 convolutions, max pooling, a third convolution, then
    ``head="dense"`` (Flatten, Dense 64) or ``head="global_max"`` (max over all positions:
    a detection–pooling network), and the logits. Biases are kept ≤ 0, as in the DTD
    paper, which makes the maps exactly conservative."""
    L = keras.layers
    b = {"bias_constraint": NonPositive()}
    if head == "dense":
        top = [L.Flatten(), L.Dense(64, activation="relu", **b)]
    elif head == "global_max":
        top = [L.GlobalMaxPooling2D()]
    else:
        raise ValueError(f"head must be 'dense' or 'global_max', got {head!r}.")
    return keras.Sequential(
        [
            keras.Input(shape),
            L.Conv2D(filters[0], 3, padding="same", activation="relu", **b),
            L.Conv2D(filters[1], 3, padding="same", activation="relu", **b),
            L.MaxPooling2D(2),
            L.Conv2D(filters[2], 3, padding="same", activation="relu", **b),
            *top,
            L.Dense(classes, **b),
        ],
        name=f"digit_cnn_{head}",
    )


def train(model, x, y, epochs, batch_size=32, verbose=2):
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=verbose)
    return model


def run(out="out", mnist=False, epochs=None, samples=None, seed=0, log=print):
    """Run the demo; returns the summary dict (also written to ``out/summary.txt``)."""
    os.makedirs(out, exist_ok=True)
    keras.utils.set_random_seed(seed)
    data, source = None, "scikit-learn's bundled 8x8 digits (1797 images)"
    if mnist:
        data = datasets.mnist_from_cache()
        if data is None:
            log(
                "MNIST is not in the Keras cache (~/.keras/datasets/mnist.npz); nothing is downloaded. "
                "Using scikit-learn's bundled 8x8 digits instead."
            )
        else:
            source = "MNIST from the Keras cache"
    if data is None:
        data = datasets.digits()
    (x_train, y_train), (x_test, y_test) = data
    if samples:
        x_test, y_test = x_test[:samples], y_test[:samples]
    epochs = epochs or (3 if source.startswith("MNIST") else 15)

    log(f"[1/3] training a small CNN on {source}: {len(x_train)} images, {epochs} epochs")
    model = train(digit_cnn(x_train.shape[1:]), x_train, y_train, epochs)
    scores = model.predict(x_test, verbose=0)
    accuracy = float(np.mean(scores.argmax(axis=1) == y_test))
    log(f"      test accuracy {accuracy:.3f} on {len(x_test)} images")

    log("[2/3] explaining the test images with DTD (z^B rule for pixels in [0, 1], z+ above)")
    analyzer = DTD(model, input_range=(0.0, 1.0), batch_size=64)
    start = time.perf_counter()
    parts = []
    for k in range(0, len(x_test), 256):
        parts.append(analyzer.explain(x_test[k : k + 256]))
        log(f"      analysed {min(k + 256, len(x_test))}/{len(x_test)}")
    seconds = time.perf_counter() - start
    relevance = np.concatenate([p.relevance for p in parts])
    target = np.maximum(scores.max(axis=1), 0)  # f from Keras itself: the top logit, rectified
    sums = relevance.reshape(len(relevance), -1).sum(axis=1)
    explained = target > 0
    relative_error = np.abs(sums - target)[explained] / target[explained]
    minimum = relevance.reshape(len(relevance), -1).min(axis=1)

    log(f"[3/3] writing figures to {out}/")
    predicted = scores.argmax(axis=1)
    shown = np.arange(min(24, len(x_test)))
    titles = [f"digit {y_test[i]} / pred {predicted[i]}\nΣR={sums[i]:.2f} f={target[i]:.2f}" for i in shown]
    plot.grid(relevance[shown], titles=titles, ncols=8, save=os.path.join(out, "heatmaps.png"))
    plot.grid(
        relevance[shown], x=x_test[shown], titles=titles, ncols=8, save=os.path.join(out, "overlays.png")
    )
    _conservation_figure(target, sums, os.path.join(out, "conservation.png"))
    _positivity_figure(minimum, os.path.join(out, "positivity.png"))

    summary = {
        "data": source,
        "test images": len(x_test),
        "test accuracy": round(accuracy, 4),
        "analysis time per image (ms)": round(1000 * seconds / len(x_test), 3),
        "samples with a positive explained output": int(explained.sum()),
        "max relative conservation error |ΣR - f| / f": float(relative_error.max())
        if explained.any()
        else 0.0,
        "smallest relevance value (positivity: >= 0)": float(minimum.min()),
        "share of relevance on ink pixels (x > 0.1)": round(
            float((relevance * (x_test > 0.1)).sum() / relevance.sum()), 4
        ),
        "share of pixels that are ink": round(float((x_test > 0.1).mean()), 4),
    }
    with open(os.path.join(out, "summary.txt"), "w") as f:
        for key, value in summary.items():
            f.write(f"{key}: {value}\n")
    for key, value in summary.items():
        log(f"      {key}: {value}")
    return summary


def _conservation_figure(target, sums, path):
    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    ax.scatter(target, sums, s=8)
    top = max(float(target.max()), float(sums.max()), 1e-6)
    ax.plot([0, top], [0, top], color="black", linewidth=0.8, label="ΣR = max(f, 0)")
    ax.set_xlabel("explained output max(f, 0)")
    ax.set_ylabel("Σ relevance of the input")
    ax.set_title("conservation, one dot per test image")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)


def _positivity_figure(minimum, path):
    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.hist(minimum, bins=30)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("smallest pixel relevance of an image")
    ax.set_ylabel("images")
    ax.set_title("positivity: every value >= 0")
    fig.tight_layout()
    fig.savefig(path)
