"""RelevanceMonitor logs heatmaps, scalars and histograms that can be read back."""

import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dtd import DTD
from keras_dtd.callbacks import RelevanceMonitor


def _events(log_dir):
    """{tag: [(step, tensor)]} read back from TensorBoard event files."""
    found = {}
    for path in glob.glob(f"{log_dir}/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor)))
    return found


def _data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (96, 8, 8, 1)).astype("float32")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype("int32")
    return x, y


def _model(classes=2):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(classes),
        ]
    )
    if classes == 1:  # regression of the left half's brightness: positive outputs to explain
        model.compile(keras.optimizers.Adam(0.01), "mse")
    else:
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_monitor_logs_images_scalars_histograms_and_pngs(tmp_path):
    x, _ = _data()
    y = x[:, :, :4].mean(axis=(1, 2, 3))
    model = _model(classes=1)
    monitor = RelevanceMonitor(
        x[:6],
        tmp_path,
        targets=0,
        method="deep_taylor.bounded",
        method_kwargs={"low": 0, "high": 1},
        save_png=True,
    )
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[monitor])

    events = _events(tmp_path)
    images = events["relevance/heatmaps"]
    assert [s for s, _ in images] == [1, 2, 3]
    width, height = int(images[0][1][0]), int(images[0][1][1])  # image summaries store (w, h, png...)
    assert width > 100 and height > 50
    conservation = [float(v) for _, v in events["relevance/conservation_error"]]
    assert len(conservation) == 3 and max(conservation) < 1e-4
    negative = [float(v) for _, v in events["relevance/negative_share"]]
    assert negative == [0.0, 0.0, 0.0]  # DTD maps are positive
    assert len(events["relevance/values"]) == 3
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        f"relevance_epoch_{e:04d}.png" for e in (1, 2, 3)
    ]

    assert monitor.analyzer.trace_count == 1  # one compiled analyzer for the whole run
    assert all(m.sum() > 0 for m in monitor.history.values())
    assert not np.allclose(monitor.history[1], monitor.history[3], rtol=1e-3)
    fresh = DTD(model, input_range=(0, 1)).analyze(x[:6], neuron_selection=0)
    np.testing.assert_allclose(monitor.relevance, fresh, rtol=1e-5, atol=1e-7)


def test_monitor_takes_a_dataset_and_logs_every_n_batches(tmp_path):
    x, y = _data()
    model = _model()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    monitor = RelevanceMonitor(dataset, tmp_path, targets="true", every_n_batches=4, max_samples=5)
    model.fit(dataset, epochs=2, verbose=0, callbacks=[monitor])
    assert monitor.x.shape == (5, 8, 8, 1)
    np.testing.assert_array_equal(monitor.selection, y[:5])
    steps = [s for s, _ in _events(tmp_path)["relevance/heatmaps"]]
    assert steps == [4, 8, 12]  # 6 batches per epoch, 2 epochs


def test_monitor_checks_its_arguments(tmp_path):
    x, _ = _data()
    with pytest.raises(ValueError, match="needs labels"):
        RelevanceMonitor(x, tmp_path, targets="true")
    with pytest.raises(ValueError, match="Unknown method"):
        RelevanceMonitor(x, tmp_path, method="nope")
    with pytest.raises(ValueError, match="every_n_epochs"):
        RelevanceMonitor(x, tmp_path, every_n_epochs=0)
