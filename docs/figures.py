"""Every figure of the README and the documentation site, from models trained here on bundled data.

    .venv/bin/python docs/figures.py            # writes docs/img/*.png (about 3 minutes on 2 cores)

- ``front.png`` (README): the demo's digits CNN (``keras_dtd.demo``, scikit-learn's bundled 8×8
  digits, 15 epochs): inputs, DTD maps (z^B for pixels in [0, 1], z⁺ above) and LRP-ε maps
  (ε = 0.01) of the predicted class for six test digits.
- ``applications.png``: ``keras.applications.MobileNetV2`` (α = 0.35, ``weights=None``) trained
  here on the digits scaled to 32×32×3 (15 epochs; BatchNormalization momentum 0.9 for so few
  steps): the same six digits, their DTD and LRP-ε maps (summed over the colour channels).
- ``serving.png``, ``beam.png``, ``custom_layers.png``: the same CNN's DTD maps as the exported
  SavedModel's ``serving_default`` signature returns them, as ``keras_dtd.beam.explain_dataset``
  writes them (DirectRunner), and for a variant with a custom layer (traced from its call).
- ``text_lstm.png``, ``text_bert.png``, ``vit.png``, ``training.png``: the figures that
  ``examples/sentiment_lstm.py``, ``examples/transformer_text.py``, ``examples/vit_patches.py``
  and ``examples/training_steps.py`` write with their default arguments.
"""

import importlib.util
import os
import pathlib
import shutil
import tempfile
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_dtd  # noqa: E402
from keras_dtd import DTD, LRP, datasets, demo, plot, rules  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "img"
EXAMPLES = {
    "sentiment_lstm": ("sentiment_lstm.png", "text_lstm.png"),
    "transformer_text": ("transformer_text.png", "text_bert.png"),
    "vit_patches": ("vit_patches.png", "vit.png"),
    "training_steps": ("training_steps.png", "training.png"),
}


def digits_figures():
    """front.png and applications.png from the demo's CNN (and the figures that use it)."""
    keras.utils.set_random_seed(0)
    (x, y), (x_test, _) = datasets.digits()
    model = demo.train(demo.digit_cnn(x.shape[1:]), x, y, epochs=15, verbose=0)
    shown = x_test[:6]
    predicted = np.asarray(model.predict(shown, verbose=0)).argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.ZeroRelevanceWarning)
        dtd = DTD(model, input_range=(0.0, 1.0)).analyze(shown, neuron_selection=predicted)
        epsilon = LRP(model, rules.Epsilon(0.01)).analyze(shown, neuron_selection=predicted)
    titles = [f"input: {p}" for p in predicted] + ["DTD"] * 6 + ["LRP-ε"] * 6
    plot.grid(list(shown) + list(dtd) + list(epsilon), titles=titles, ncols=6, save=IMAGES / "front.png")
    integration_figures(model, shown, predicted)
    applications_figure(x, y, shown)
    custom_layer_figure(x, y, shown)


def applications_figure(x, y, shown):
    """applications.png: a keras.applications MobileNetV2 trained on the digits, explained."""
    keras.utils.set_random_seed(0)

    def scaled(a):  # 8×8×1 → 32×32×3, each pixel a 4×4 block
        return np.repeat(np.repeat(np.repeat(a, 4, axis=1), 4, axis=2), 3, axis=3)

    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10, classifier_activation=None
    )
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(scaled(x), y, epochs=15, batch_size=32, verbose=0)
    images = scaled(shown)
    predicted = np.asarray(model.predict(images, verbose=0)).argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.ZeroRelevanceWarning)
        warnings.simplefilter("ignore", keras_dtd.NonReLUWarning)
        dtd = DTD(model, input_range=(0.0, 1.0)).analyze(images, neuron_selection=predicted)
        epsilon = LRP(model, rules.Epsilon(0.01)).analyze(images, neuron_selection=predicted)
    maps = [m.sum(axis=-1, keepdims=True) for m in (*dtd, *epsilon)]
    titles = [f"MobileNetV2: {p}" for p in predicted] + ["DTD"] * 6 + ["LRP-ε"] * 6
    plot.grid(list(images[..., :1]) + maps, titles=titles, ncols=6, save=IMAGES / "applications.png")


def integration_figures(model, shown, predicted):
    """serving.png and beam.png: the maps the exported model and the Beam pipeline return."""
    import tensorflow as tf

    import keras_dtd.beam

    analyzer = DTD(model, input_range=(0.0, 1.0))
    with tempfile.TemporaryDirectory() as work:
        path = keras_dtd.export(analyzer, os.path.join(work, "serving"), version=1)
        served = tf.saved_model.load(path).signatures["serving_default"]
        maps = next(
            v for k, v in served(**{_input_name(served): tf.constant(shown)}).items() if k == "relevance"
        )
        titles = [f"served: {p}" for p in predicted]
        plot.grid(list(shown) + list(maps.numpy()), titles=titles + ["relevance"] * 6, ncols=6,
                  save=IMAGES / "serving.png")  # fmt: skip
        os.makedirs(os.path.join(work, "inputs"))
        np.save(os.path.join(work, "inputs", "digits.npy"), shown)
        keras_dtd.beam.explain_dataset(
            os.path.join(work, "serving"),
            os.path.join(work, "inputs", "*"),
            os.path.join(work, "maps"),
            pipeline_args=["--runner", "DirectRunner"],
        )
        written = np.load(os.path.join(work, "maps", "digits.npy"))
        plot.grid(list(shown) + list(written), titles=[f"input: {p}" for p in predicted] + ["from Beam"] * 6,
                  ncols=6, save=IMAGES / "beam.png")  # fmt: skip


def _input_name(signature):
    (name,) = signature.structured_input_signature[1]
    return name


class Contrast(keras.layers.Layer):
    """A custom layer keras_dtd has no entry for: 2·x − mean(x), traced from its call."""

    def call(self, x):
        return 2.0 * x - keras.ops.mean(x, axis=-1, keepdims=True)


def custom_layer_figure(x, y, shown):
    """custom_layers.png: DTD maps of a digits CNN with the custom layer Contrast inside."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.ReLU()(Contrast()(h))
    h = keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(h))
    model = keras.Model(inputs, keras.layers.Dense(10)(h))
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    predicted = np.asarray(model.predict(shown, verbose=0)).argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.ZeroRelevanceWarning)
        maps = DTD(model, input_range=(0.0, 1.0)).analyze(shown, neuron_selection=predicted)
    plot.grid(list(shown) + list(maps), titles=[f"input: {p}" for p in predicted] + ["DTD"] * 6, ncols=6,
              save=IMAGES / "custom_layers.png")  # fmt: skip


def example_figures():
    for name, (written, saved) in EXAMPLES.items():
        spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with tempfile.TemporaryDirectory() as out:
            module.main(["--out", out])
            shutil.copy(pathlib.Path(out) / written, IMAGES / saved)


def main():
    IMAGES.mkdir(parents=True, exist_ok=True)
    digits_figures()
    example_figures()
    for path in sorted(IMAGES.glob("*.png")):
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
