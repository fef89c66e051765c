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


def _deep_taylor_by_hand(model, x, selection):
    """iNNvestigate's deep_taylor (by that name) on _model() in float64 numpy: max(f, 0)
    of the selected output, z⁺ (x w⁺ for inputs ≥ 0, no bias) at both kernel layers and the
    gradient (the window's maximum) through max pooling."""
    conv, dense = model.layers[0], model.layers[-1]
    kernel, b1 = (w.astype(np.float64) for w in conv.get_weights())
    weights, b2 = (w.astype(np.float64) for w in dense.get_weights())
    n = len(x)
    patches = np.stack([x[:, a : a + 6, c : c + 6, 0] for a in range(3) for c in range(3)], -1)
    w = kernel.reshape(9, 4)
    hidden = np.maximum(patches @ w + b1, 0)  # (n, 6, 6, 4)
    windows = hidden.reshape(n, 3, 2, 3, 2, 4).transpose(0, 1, 3, 5, 2, 4).reshape(n, 3, 3, 4, 4)
    pooled = windows.max(axis=-1)
    flat = pooled.reshape(n, 36)
    f = flat @ weights + b2
    chosen = np.asarray(selection)
    w_top = np.maximum(weights[:, chosen].T, 0)  # (n, 36)
    r_flat = flat * w_top * (np.maximum(f[np.arange(n), chosen], 0) / (flat * w_top).sum(axis=1))[:, None]
    winner = windows.argmax(axis=-1)[..., None] == np.arange(4)  # one-hot over each 2×2 window
    r_windows = winner * r_flat.reshape(n, 3, 3, 4)[..., None]
    r_hidden = r_windows.reshape(n, 3, 3, 4, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(n, 6, 6, 4)
    positive = np.maximum(w, 0)
    z = patches @ positive
    s = np.divide(r_hidden, z, out=np.zeros_like(z), where=z > 0)
    r_patches = patches * (s @ positive.T)
    r = np.zeros((n, 8, 8))
    for k, (a, c) in enumerate((a, c) for a in range(3) for c in range(3)):
        r[:, a : a + 6, c : c + 6] += r_patches[..., k]
    return r[..., None]


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
    # float32 maps of two analyzers on the same weights: atol 1e-6 of max |R|
    np.testing.assert_allclose(monitor.relevance, fresh, rtol=1e-5, atol=1e-6 * np.abs(fresh).max())
    np.testing.assert_array_equal(monitor.history[3], monitor.relevance)  # the last step's maps
    f = model.predict(x[:6], verbose=0)[:, 0].astype(np.float64)  # Keras' own outputs, final weights
    explained = np.maximum(f, 0)
    assert np.all(explained > 0)
    sums = monitor.relevance.reshape(6, -1).astype(np.float64).sum(axis=1)
    # float32 sums of 64 positive entries: rtol 1e-5, atol 1e-6 of the largest output
    np.testing.assert_allclose(sums, explained, rtol=1e-5, atol=1e-6 * explained.max())
    # the last logged scalars, recomputed from the logged maps and Keras' outputs (both ~1e-7)
    expected = np.mean(np.abs(sums - explained) / explained)
    assert abs(conservation[-1] - expected) < 1e-6
    counts = events["relevance/values"][-1][1][:, 2]  # histogram buckets: (left, right, count)
    assert counts.sum() == monitor.relevance.size

    # a method that is not conservative, logged once by hand: LRP-ε with ε = 0.5 on outputs ~1
    eps = RelevanceMonitor(
        x[:6], tmp_path / "eps", targets=0, method="lrp.epsilon", method_kwargs={"epsilon": 0.5}
    )
    eps.set_model(model)
    eps.on_train_begin()
    eps.log(7)
    eps.on_train_end()
    logged = {tag: float(v[0][1]) for tag, v in _events(tmp_path / "eps").items() if v[0][1].ndim == 0}
    maps = eps.relevance.reshape(6, -1).astype(np.float64)
    error = np.mean(np.abs(maps.sum(axis=1) - f) / np.abs(f))  # LRP explains the signed f (> 0 here)
    assert error > 0.1
    negative = -maps[maps < 0].sum() / np.abs(maps).sum()
    # float32 scalars of size ~0.1-1 recomputed in float64: rtol 1e-5, atol 1e-6
    np.testing.assert_allclose(logged["relevance/conservation_error"], error, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logged["relevance/negative_share"], negative, rtol=1e-5, atol=1e-6)
    assert eps.scalars[7] == pytest.approx(
        {"conservation_error": error, "negative_share": negative}, rel=1e-5
    )


def test_monitor_takes_a_dataset_and_logs_every_n_batches(tmp_path):
    x, y = _data()
    model = _model()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    monitor = RelevanceMonitor(
        dataset, tmp_path, targets="true", every_n_batches=4, max_samples=5, method="deep_taylor"
    )
    model.fit(dataset, epochs=2, verbose=0, callbacks=[monitor])
    np.testing.assert_array_equal(monitor.x, x[:5])
    np.testing.assert_array_equal(monitor.selection, y[:5])
    steps = [s for s, _ in _events(tmp_path)["relevance/heatmaps"]]
    assert steps == [4, 8, 12]  # 6 batches per epoch, 2 epochs
    # these samples' label logits end ≤ 0 (zero maps); +1 on both keeps the softmax and gives maps
    top = model.layers[-1]
    top.bias.assign(top.bias + 1.0)
    monitor.log(99, "batch")
    logits = model.predict(x[:5], verbose=0).astype(np.float64)  # Keras' own outputs
    explained = np.maximum(logits[np.arange(5), y[:5]], 0)
    assert np.all(explained > 0) and np.any(logits.argmax(axis=1) != y[:5])  # not the top outputs
    expected = _deep_taylor_by_hand(model, x[:5], y[:5])
    np.testing.assert_allclose(expected.reshape(5, -1).sum(axis=1), explained, rtol=1e-5)
    # float32 maps against float64 numpy: atol 1e-6 of max |R|
    np.testing.assert_allclose(monitor.relevance, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    sums = monitor.relevance.reshape(5, -1).astype(np.float64).sum(axis=1)
    # float32 sums of 64 positive entries: rtol 1e-5, atol 1e-6 of the largest output
    np.testing.assert_allclose(sums, explained, rtol=1e-5, atol=1e-6 * explained.max())


def test_the_default_method_is_dtd_bounded_with_an_input_range(tmp_path):
    """Not iNNvestigate's z⁺-everywhere deep_taylor: keras_dtd's DTD (w² at the first layer, or
    z^B with input_range), conservative and positive."""
    x, y = _data()
    model = _model()
    for input_range, first_rule in ((None, "WSquare"), ((0.0, 1.0), "ZBox")):
        monitor = RelevanceMonitor(x[:6], tmp_path / str(first_rule), targets=0, input_range=input_range)
        model.fit(x[:32], y[:32], epochs=1, verbose=0, callbacks=[monitor])
        assert isinstance(monitor.analyzer, DTD)
        assert type(monitor.analyzer.rules[0]).__name__ == first_rule
        r = monitor.relevance.reshape(6, -1).astype(np.float64)
        f = np.maximum(model.predict(x[:6], verbose=0)[:, 0].astype(np.float64), 0)
        assert np.all(r >= 0)
        np.testing.assert_allclose(r.sum(axis=1), f, rtol=1e-5, atol=1e-6 * max(f.max(), 1e-12))
    with pytest.raises(ValueError, match="input_range is for method='dtd'"):
        RelevanceMonitor(x, tmp_path, method="lrp.epsilon", input_range=(0, 1))


def test_monitor_checks_its_arguments(tmp_path):
    x, _ = _data()
    with pytest.raises(ValueError, match="needs labels"):
        RelevanceMonitor(x, tmp_path, targets="true")
    with pytest.raises(ValueError, match="Unknown method"):
        RelevanceMonitor(x, tmp_path, method="nope")
    with pytest.raises(ValueError, match="every_n_epochs"):
        RelevanceMonitor(x, tmp_path, every_n_epochs=0)
