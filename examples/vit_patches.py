"""A tiny KerasHub ViT trained on the bundled 8×8 digits, explained patch by patch, offline.

A ``ViTImageClassifier`` (2 layers, hidden size 32, 2×2 patches, a class token; random initial
weights, no download) learns scikit-learn's digits. AttnLRP and CP-LRP explain the predicted
class; the maps have the images' shape, and summed over each 2×2 patch they are the patch
heatmaps. Position embeddings and the class token act as biases (they absorb relevance).

Printed and returned: test accuracy; per method the share of positive relevance on ink pixels
(value > 0.25) and the pixel-flipping AOPC (most relevant patch first, 4 steps). Written:
``vit_patches.png``: a few test digits, their AttnLRP pixel maps and patch heatmaps.

    .venv/bin/python examples/vit_patches.py --out out
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

from keras_dtd import LRP, composites, datasets, metrics, plot  # noqa: E402

PATCH = 2


def model_for(seed):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(8, 8, 1), patch_size=PATCH, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
        dropout_rate=0.0, attention_dropout=0.0,
    )  # fmt: skip
    model = keras_hub.models.ViTImageClassifier(backbone, num_classes=10, preprocessor=None, dropout=0.0)
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def patch_sums(maps):
    """(n, 8, 8, 1) maps summed over each PATCH×PATCH patch: (n, 8/PATCH, 8/PATCH)."""
    n, h, w, _ = maps.shape
    return maps.reshape(n, h // PATCH, PATCH, w // PATCH, PATCH).sum(axis=(2, 4))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--explain", type=int, default=100)
    parser.add_argument("--out", default="out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    (x, y), (x_test, y_test) = datasets.digits(seed=args.seed)
    model = model_for(args.seed)
    model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    x_test = x_test[: args.explain]
    predicted = np.asarray(model.predict(x_test, verbose=0)).argmax(axis=1)
    maps = {
        name: LRP(model, composite()).analyze(x_test, neuron_selection=predicted)
        for name, composite in (("AttnLRP", composites.AttnLRP), ("CP-LRP", composites.CPLRP))
    }
    ink = x_test > 0.25
    on_ink = {
        name: float((np.maximum(r, 0) * ink).sum() / np.maximum(r, 0).sum()) for name, r in maps.items()
    }
    aopc = {
        name: float(
            metrics.pixel_flipping(
                model, x_test, r, patch=PATCH, steps=4, neuron_selection=predicted
            ).score.mean()
        )
        for name, r in maps.items()
    }
    print(f"test accuracy {accuracy:.3f}")
    for name in maps:
        print(f"{name}: positive relevance on ink {on_ink[name]:.2f}, pixel flipping AOPC {aopc[name]:.3f}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "vit_patches.png")
    shown = maps["AttnLRP"][:6]
    patches = np.kron(patch_sums(shown), np.ones((PATCH, PATCH)))[..., None]  # back to pixels, for the grid
    titles = [f"digit {p}" for p in predicted[:6]] + ["AttnLRP"] * 6 + ["patches"] * 6
    plot.grid(list(x_test[:6]) + list(shown) + list(patches), titles=titles, ncols=6, save=path)
    print(f"wrote {path}")
    return {"accuracy": accuracy, "on_ink": on_ink, "aopc": aopc, "maps": maps, "figure": path}


if __name__ == "__main__":
    main()
