"""Explaining a stream of batches (a ``tf.data.Dataset`` or any iterable of arrays) with
memory bounded by the batch: results are gathered, or written batch by batch to a
``.npy`` file (returned as a read-only memory map) or a TFRecord file (returned as a
``tf.data.Dataset`` of maps, see :func:`read_tfrecord`)."""

from __future__ import annotations

import collections.abc

import keras
import numpy as np
import tensorflow as tf

_MAGIC = b"\x93NUMPY\x01\x00"
_COUNT_WIDTH = 20  # digits reserved for the number of samples in the .npy header


def is_stream(x) -> bool:
    """A dataset or an iterable of batches, as opposed to an array, a list of arrays or a dict of them."""
    if isinstance(x, tf.data.Dataset):
        return True
    return isinstance(x, collections.abc.Iterator) or (
        isinstance(x, collections.abc.Iterable)
        and not isinstance(x, (np.ndarray, list, tuple, dict, tf.Tensor, str))
    )


class NpyWriter:
    """Appends batches to a .npy file whose sample count is written when it is closed."""

    def __init__(self, path):
        self.path = path
        self.file = None
        self.count = 0

    def _header(self, dtype, shape, count):
        text = (
            f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': False, "
            f"'shape': ({count:<{_COUNT_WIDTH}d},{''.join(f' {s},' for s in shape)}), }}"
        )
        total = len(_MAGIC) + 2 + len(text) + 1
        text += " " * (-total % 64) + "\n"
        return _MAGIC + len(text).to_bytes(2, "little") + text.encode("latin1")

    def write(self, batch):
        batch = np.ascontiguousarray(batch)
        if self.file is None:
            self.dtype, self.shape = batch.dtype, batch.shape[1:]
            self.file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self.file.write(self._header(self.dtype, self.shape, 0))
        elif batch.shape[1:] != self.shape or batch.dtype != self.dtype:
            raise ValueError(
                f"batch of shape {batch.shape} and {batch.dtype} after batches of {self.shape}, {self.dtype}."
            )
        self.file.write(batch.tobytes())
        self.count += len(batch)

    def close(self):
        if self.file is None:
            raise ValueError("The stream held no batches.")
        self.file.seek(0)
        self.file.write(self._header(self.dtype, self.shape, self.count))
        self.file.close()
        return np.load(self.path, mmap_mode="r")


TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr")


class TFRecordWriter:
    """Writes one ``tf.train.Example`` per map: ``relevance`` (float list, C order) and
    ``shape`` (int64 list)."""

    def __init__(self, path):
        self.path = str(path)
        self.writer = tf.io.TFRecordWriter(self.path)
        self.count = 0

    def write(self, batch):
        for sample in np.asarray(batch, np.float32):
            feature = {
                "relevance": tf.train.Feature(float_list=tf.train.FloatList(value=sample.reshape(-1))),
                "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=sample.shape)),
            }
            self.writer.write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )
        self.count += len(batch)

    def close(self):
        self.writer.close()
        if self.count == 0:
            raise ValueError("The stream held no batches.")
        return read_tfrecord(self.path)


def read_tfrecord(path) -> tf.data.Dataset:
    """The maps of a TFRecord file written by ``analyze(stream, out="maps.tfrecord")``, one
    float32 tensor per sample, in order."""
    first = next(iter(tf.data.TFRecordDataset(str(path)).take(1)), None)
    if first is None:
        raise ValueError(f"{path} holds no maps.")
    shape = tuple(tf.train.Example.FromString(first.numpy()).features.feature["shape"].int64_list.value)
    spec = {"relevance": tf.io.FixedLenFeature(shape, tf.float32)}
    return tf.data.TFRecordDataset(str(path)).map(
        lambda record: tf.io.parse_single_example(record, spec)["relevance"]
    )


def _writer(out):
    if str(out).endswith(".npy"):
        return NpyWriter(out)
    if str(out).endswith(TFRECORD_SUFFIXES):
        return TFRecordWriter(out)
    raise ValueError(f"out must be a .npy or TFRecord ({', '.join(TFRECORD_SUFFIXES)}) path, got {out!r}.")


def _inputs_of(element, n_inputs):
    """The model inputs in one stream element: x, (x, y), (x, y, w), or for several inputs
    a list/tuple of them, possibly in an (inputs, y) pair."""
    if isinstance(element, dict):
        raise ValueError(
            "Stream elements that are dicts are not supported; yield arrays, (x, y) pairs or lists of arrays."
        )
    if n_inputs == 1:
        return element[0] if isinstance(element, (tuple, list)) else element
    if isinstance(element, (tuple, list)) and len(element) and isinstance(element[0], (tuple, list)):
        return list(element[0])
    return list(element)


def _numpy(a):
    return [np.asarray(t) for t in a] if isinstance(a, list) else np.asarray(a)


def analyze_stream(analyzer, stream, neuron_selection="max_activation", verbose="auto", out=None):
    """Relevance for every batch of ``stream`` (see :meth:`keras_dtd.Analyzer.analyze`):
    a numpy array, or with ``out`` (a .npy path) a memory map of the file written batch by
    batch, or with a TFRecord path (``.tfrecord``) a dataset reading that file back.
    ``verbose``: "auto" shows a progress bar when the stream has more than 3 batches
    (or an unknown length), 0 hides it, 1 shows it."""
    if not (isinstance(neuron_selection, (str, int)) and not isinstance(neuron_selection, bool)):
        raise ValueError(
            "A stream takes neuron_selection 'max_activation', 'all' or one int for every sample."
        )
    if len(analyzer.input_specs) > 1 and out is not None:
        raise ValueError(
            "out= writes one array; a model with several inputs has several maps. Gather them instead."
        )
    total = None
    if isinstance(stream, tf.data.Dataset):
        cardinality = int(stream.cardinality())
        total = cardinality if cardinality >= 0 else None
    elif isinstance(stream, collections.abc.Sized):
        total = len(stream)
    show = verbose == 1 or (verbose == "auto" and (total is None or total > 3))
    bar = keras.utils.Progbar(total, unit_name="batch") if show else None
    writer = _writer(out) if out is not None else None
    parts = []
    for k, element in enumerate(stream):
        relevance = analyzer.analyze(_numpy(_inputs_of(element, len(analyzer.input_specs))), neuron_selection)
        if writer is not None:
            writer.write(relevance)
        else:
            parts.append(relevance)
        if bar is not None:
            bar.update(k + 1)
    if writer is not None:
        return writer.close()
    if not parts:
        raise ValueError("The stream held no batches.")
    if isinstance(parts[0], list):
        return [np.concatenate(p) for p in zip(*parts)]
    return np.concatenate(parts)


__all__ = ["analyze_stream", "is_stream", "read_tfrecord", "NpyWriter", "TFRecordWriter"]
