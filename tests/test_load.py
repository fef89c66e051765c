"""Under load: threads, many calls, and streams of batches."""

import concurrent.futures
import resource

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dtd import DTD

pytestmark = pytest.mark.filterwarnings("ignore::keras_dtd.ZeroRelevanceWarning")


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(5),
        ]
    )
    x = np.random.default_rng(0).uniform(0, 1, (400, 8, 8, 1)).astype("float32")
    return model, x


def test_threads_give_the_serial_results_with_one_trace(net):
    model, x = net
    analyzer = DTD(model, input_range=(0, 1), batch_size=8)
    batches = [x[k % 50 * 8 : k % 50 * 8 + 8] for k in range(400)]  # 8 threads × 50 calls
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(analyzer.analyze, batches))
    serial = DTD(model, input_range=(0, 1), batch_size=8)
    for batch, result in zip(batches, parallel):
        np.testing.assert_array_equal(result, serial.analyze(batch))
    assert analyzer.trace_count == 1


def test_many_calls_of_varying_size_neither_retrace_nor_grow(net):
    model, x = net
    analyzer = DTD(model, input_range=(0, 1), batch_size=32)
    sizes = np.random.default_rng(1).integers(1, 33, 1000)
    for n in sizes[:50]:  # warm-up: allocator pools settle
        analyzer.analyze(x[:n])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for n in sizes[50:]:
        analyzer.analyze(x[:n])
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert analyzer.trace_count == 1 and grown_mb < 20, grown_mb


def test_a_dataset_streams_to_arrays_and_to_a_npy_file(net, tmp_path, capsys):
    model, x = net
    analyzer = DTD(model, input_range=(0, 1), batch_size=32)
    expected = analyzer.analyze(x[:100])
    # float32 maps computed in other batch layouts (16 or 10 rows, padded to 32) may differ by a few ulps
    # with the kernels' blocking
    close = {"rtol": 1e-5, "atol": 1e-7 * np.abs(expected).max()}
    labels = np.zeros(100)
    dataset = tf.data.Dataset.from_tensor_slices((x[:100], labels)).batch(16)
    np.testing.assert_allclose(analyzer.analyze(dataset, verbose=0), expected, **close)
    assert capsys.readouterr().out == ""
    written = analyzer.analyze(dataset, out=tmp_path / "maps.npy", verbose=1)
    assert isinstance(written, np.memmap) and written.shape == expected.shape
    np.testing.assert_allclose(written, expected, **close)
    np.testing.assert_allclose(np.load(tmp_path / "maps.npy"), expected, **close)
    assert "7/7" in capsys.readouterr().out  # the progress bar
    maps = analyzer.analyze(dataset, out=tmp_path / "maps.tfrecord", verbose=0)
    maps = np.stack([m.numpy() for m in maps])
    np.testing.assert_allclose(maps, expected, **close)
    records = list(tf.data.TFRecordDataset(str(tmp_path / "maps.tfrecord")))
    assert len(records) == 100  # one tf.train.Example per map, readable without keras_dtd
    example = tf.train.Example.FromString(records[7].numpy()).features.feature
    assert tuple(example["shape"].int64_list.value) == expected.shape[1:]
    np.testing.assert_array_equal(
        np.reshape(example["relevance"].float_list.value, expected.shape[1:]), maps[7]
    )
    generator = (x[k : k + 10] for k in range(0, 100, 10))
    np.testing.assert_allclose(
        analyzer.analyze(generator, neuron_selection=2, verbose=0),
        analyzer.analyze(x[:100], neuron_selection=2),
        **close,
    )
    assert analyzer.trace_count == 1


def test_stream_errors(net, tmp_path):
    model, x = net
    analyzer = DTD(model)
    with pytest.raises(ValueError, match="no batches"):
        analyzer.analyze(iter([]), verbose=0)
    with pytest.raises(ValueError, match=r"out must be a .npy or TFRecord \(.tfrecord"):
        analyzer.analyze(iter([x[:4]]), out=tmp_path / "maps.txt")
    with pytest.raises(ValueError, match="one int for every sample"):
        analyzer.analyze(iter([x[:4]]), neuron_selection=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="out= is for streams"):
        analyzer.analyze(x[:4], out=tmp_path / "maps.npy")
