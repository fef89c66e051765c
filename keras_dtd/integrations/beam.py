"""Explaining datasets with Apache Beam (``pip install "keras_dtd[beam]"``).

The worker side needs TensorFlow and Beam, not keras_dtd or Keras: the model is the
SavedModel that :func:`keras_dtd.export` writes (its ``serving_default`` and ``explain``
signatures), and this module is pickled by value into the pipeline.

    keras-dtd explain-dataset EXPORT_DIR 'inputs/*.npy' OUTPUT_DIR --runner DirectRunner

Inputs: ``.npy`` files, each a batch (or one sample) shaped like the model input, or
TFRecord files (``.tfrecord``, ``.tfrecords``, ``.tfr``) of ``tf.train.Example`` s, one
sample each, its values in a float or int64 feature (``feature``, default ``"x"``),
flattened in C order. Outputs: ``OUTPUT_DIR/<base name>.npy``, the relevance maps of each
input file in its order, and ``OUTPUT_DIR/summary.csv``, one row per sample (in no
particular order): file, index, class_index, score (the explained output f, before a
final softmax), target (what the map sums to), relevance_sum, negative_share
(Σ|R⁻| / Σ|R|).
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np

try:
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference
    from apache_beam.options.pipeline_options import PipelineOptions
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        'keras_dtd.beam needs Apache Beam, an optional dependency: pip install "keras_dtd[beam]" '
        "(or pip install apache-beam)."
    ) from error
import tensorflow as tf

SUMMARY_COLUMNS = ("file", "index", "class_index", "score", "target", "relevance_sum", "negative_share")
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr")


def saved_model_dir(export_dir: str) -> str:
    """``export_dir`` if it holds a SavedModel, else its highest numeric version
    (TensorFlow Serving's layout ``export_dir/<version>/``)."""
    if FileSystems.exists(FileSystems.join(export_dir, "saved_model.pb")):
        return export_dir
    found = FileSystems.match([FileSystems.join(export_dir, "*", "saved_model.pb")])[0].metadata_list
    versions = {}
    for metadata in found:
        version = os.path.basename(os.path.dirname(metadata.path))
        if version.isdigit():
            versions[int(version)] = os.path.dirname(metadata.path)
    if not versions:
        raise FileNotFoundError(
            f"'{export_dir}' holds no SavedModel (saved_model.pb), directly or in a numbered version "
            "directory; write one with keras_dtd.export(analyzer, export_dir) or `keras-dtd export`."
        )
    return versions[max(versions)]


def input_spec(loaded) -> tuple[str, tuple, tf.DType]:
    """(name, sample shape, dtype) of the one model input of a keras_dtd export."""
    if "explain" not in loaded.signatures or "serving_default" not in loaded.signatures:
        raise ValueError(
            "The SavedModel has no 'explain' and 'serving_default' signatures; "
            "write it with keras_dtd.export."
        )
    specs = {
        k: v
        for k, v in loaded.signatures["explain"].structured_input_signature[1].items()
        if k != "class_index"
    }
    if len(specs) != 1:
        raise ValueError(
            "The Beam pipeline explains models with one input; "
            f"this export has {len(specs)}: {sorted(specs)}."
        )
    ((name, spec),) = specs.items()
    return name, tuple(spec.shape[1:]), spec.dtype


class ExplanationModelHandler(ModelHandler):
    """RunInference on samples (numpy arrays shaped like one model input): for each, a
    dict with ``relevance``, ``class_index``, ``score`` and ``target``.

    class_index: None explains each sample's top class (``serving_default``); an int
    explains that output for every sample (``explain``). Batching keyword arguments
    (``min_batch_size``, ``max_batch_size``, …) go to Beam's ``ModelHandler``.
    """

    def __init__(self, export_dir: str, class_index: int | None = None, **batching):
        super().__init__(**batching)
        if class_index is not None and (
            isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)) or class_index < 0
        ):
            raise ValueError(f"class_index must be None or a non-negative int, got {class_index!r}.")
        self._export_dir = export_dir
        self._class_index = class_index

    def load_model(self):
        loaded = tf.saved_model.load(saved_model_dir(self._export_dir))
        input_spec(loaded)  # refuse exports that are not keras_dtd's, at load time
        return loaded

    def run_inference(self, batch, model, inference_args=None):
        name, _, dtype = input_spec(model)
        x = tf.constant(np.stack(batch).astype(dtype.as_numpy_dtype))
        if self._class_index is None:
            out = model.signatures["serving_default"](**{name: x})
            classes = out["class_index"].numpy()
        else:
            classes = np.full(len(batch), self._class_index, np.int32)
            out = model.signatures["explain"](**{name: x, "class_index": tf.constant(classes)})
        relevance, score, target = out["relevance"].numpy(), out["score"].numpy(), out["target"].numpy()
        return [
            PredictionResult(
                example, {"relevance": r, "class_index": int(c), "score": float(s), "target": float(t)}
            )
            for example, r, c, s, t in zip(batch, relevance, classes, score, target)
        ]

    def get_metrics_namespace(self) -> str:
        return "keras_dtd"


def _fits(shape, expected):
    return len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))


def read_samples(readable_file, shape, dtype, feature="x"):
    """((base name, index), sample) for every sample of one input file."""
    path = readable_file.metadata.path
    base, suffix = os.path.splitext(os.path.basename(path))
    if suffix == ".npy":
        batch = np.load(io.BytesIO(readable_file.read()), allow_pickle=False)
        if _fits(batch.shape, shape):
            batch = batch[None]
        if not _fits(batch.shape[1:], shape):
            raise ValueError(
                f"{path}: an array of shape {batch.shape}; the exported model takes (n,) + {shape}."
            )
    elif suffix in TFRECORD_SUFFIXES:
        batch = [
            _example_values(record.numpy(), feature, shape, path, k)
            for k, record in enumerate(tf.data.TFRecordDataset(path))
        ]
    else:
        raise ValueError(
            f"{path}: unknown input type '{suffix}'; give .npy batches or TFRecord files "
            f"({', '.join(TFRECORD_SUFFIXES)})."
        )
    if len(batch) == 0:
        raise ValueError(f"{path} holds no samples.")
    for k, sample in enumerate(batch):
        if np.issubdtype(np.asarray(sample).dtype, np.floating) and not np.all(np.isfinite(sample)):
            raise ValueError(f"{path}: sample {k} has NaN or infinite values.")
        yield (base, k), np.asarray(sample, dtype.as_numpy_dtype)


def _example_values(record, feature, shape, path, k):
    example = tf.train.Example.FromString(record)
    if feature not in example.features.feature:
        raise ValueError(
            f"{path}: record {k} has no feature '{feature}' (it has {sorted(example.features.feature)}); "
            "pass feature=... / --feature."
        )
    values = example.features.feature[feature]
    data = np.asarray(values.float_list.value if values.HasField("float_list") else values.int64_list.value)
    if None in shape or data.size != int(np.prod(shape)):
        raise ValueError(
            f"{path}: record {k}'s feature '{feature}' has {data.size} values; "
            f"the exported model takes a sample of shape {shape}."
        )
    return data.reshape(shape)


def write_maps(element, output_dir):
    """Write one input file's maps to ``output_dir/<base name>.npy``; yield its summary rows."""
    base, results = element
    results = sorted(results, key=lambda item: item[0])
    relevance = np.stack([inference["relevance"] for _, inference in results])
    buffer = io.BytesIO()
    np.save(buffer, relevance)
    with FileSystems.create(FileSystems.join(output_dir, base + ".npy")) as handle:
        handle.write(buffer.getvalue())
    for (k, inference), r in zip(results, relevance):
        flat = r.reshape(-1).astype(np.float64)
        magnitude = np.abs(flat).sum()
        negative = np.abs(np.minimum(flat, 0)).sum() / magnitude if magnitude > 0 else 0.0
        yield ",".join(
            [base, str(k), str(inference["class_index"])]
            + [f"{v:.9g}" for v in (inference["score"], inference["target"], flat.sum(), negative)]
        )


class ExplainFiles(beam.PTransform):
    """``pipeline | ExplainFiles(export_dir, input_pattern, output_dir)``: read, explain,
    write (see the module docstring). Returns the PCollection of summary lines written."""

    def __init__(self, export_dir, input_pattern, output_dir, class_index=None, batch_size=32, feature="x"):
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        self._export_dir, self._pattern, self._output_dir = export_dir, input_pattern, output_dir
        self._feature = feature
        _, self._shape, self._dtype = input_spec(tf.saved_model.load(saved_model_dir(export_dir)))
        self._handler = KeyedModelHandler(
            ExplanationModelHandler(export_dir, class_index, max_batch_size=batch_size)
        )
        _check_inputs(input_pattern)

    def expand(self, pipeline):
        shape, dtype, feature, output_dir = self._shape, self._dtype, self._feature, self._output_dir
        lines = (
            pipeline
            | "Match" >> fileio.MatchFiles(self._pattern)
            | "Open" >> fileio.ReadMatches()
            | "Read" >> beam.FlatMap(read_samples, shape, dtype, feature)
            | "Explain" >> RunInference(self._handler)
            | "ByFile" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1].inference)))
            | "Gather" >> beam.GroupByKey()
            | "WriteMaps" >> beam.FlatMap(write_maps, output_dir)
        )
        lines | "WriteSummary" >> beam.io.WriteToText(
            FileSystems.join(output_dir, "summary"),
            file_name_suffix=".csv",
            num_shards=1,
            shard_name_template="",
            header=",".join(SUMMARY_COLUMNS),
        )
        return lines


def _check_inputs(pattern):
    """At launch: the pattern matches files, and no two share a base name (their maps would collide)."""
    paths = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    if not paths:
        raise FileNotFoundError(f"No input file matches '{pattern}'.")
    bases = {}
    for path in paths:
        base = os.path.splitext(os.path.basename(path))[0]
        if base in bases:
            raise ValueError(
                f"'{bases[base]}' and '{path}' share the base name '{base}': "
                "their maps would overwrite each other."
            )
        bases[base] = path


def explain_dataset(
    export_dir, input_pattern, output_dir, class_index=None, batch_size=32, feature="x", pipeline_args=None
):
    """Run :class:`ExplainFiles` as a pipeline and wait for it. ``pipeline_args``: Beam's
    command-line options (e.g. ``["--runner", "DataflowRunner", "--project", ...]``) or a
    ``PipelineOptions``; default: the DirectRunner. Returns Beam's pipeline result."""
    options = (
        pipeline_args if isinstance(pipeline_args, PipelineOptions) else PipelineOptions(pipeline_args or [])
    )
    if not FileSystems.exists(output_dir):
        FileSystems.mkdirs(output_dir)
    pipeline = beam.Pipeline(options=options)
    _ = pipeline | ExplainFiles(export_dir, input_pattern, output_dir, class_index, batch_size, feature)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def _pickle_by_value():
    """Ship this module's code inside the pipeline, so workers need no keras_dtd."""
    try:
        from apache_beam.internal import cloudpickle
    except ImportError:  # pragma: no cover - an older Beam: install keras_dtd on the workers instead
        return
    cloudpickle.register_pickle_by_value(sys.modules[__name__])


_pickle_by_value()

__all__ = ["ExplanationModelHandler", "ExplainFiles", "explain_dataset", "saved_model_dir", "SUMMARY_COLUMNS"]
