"""Export an analyzer as a TensorFlow Serving SavedModel: ``export_dir/<version>/``.

Signatures (input names, shapes and dtypes follow the Keras model's inputs; batch free):
  ``serving_default``: inputs → ``predictions`` (the model's output), ``class_index``
    (its top class), ``relevance`` (the map for that class), ``score`` (the explained
    output f, taken before a final softmax) and ``target`` (what the map sums to:
    max(f, 0) for DTD, f for LRP);
  ``explain``: inputs + ``class_index`` (int32, one per sample) → ``relevance``,
    ``score`` and ``target``.
For a multi-input model the maps are ``relevance_<input name>``. The SavedModel holds
only TensorFlow ops and the model's variables: loading it needs neither keras_dtd
nor Keras.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import TYPE_CHECKING

import tensorflow as tf

if TYPE_CHECKING:  # for the annotation only: importing the analyzers here is not needed at run time
    from keras_dtd.analyzers.analyzer import Analyzer


def export(
    analyzer: Analyzer, export_dir: str | os.PathLike, version: int = 1, overwrite: bool = False
) -> str:
    """Write ``analyzer`` as a TensorFlow Serving SavedModel to ``export_dir/<version>``.

    Args:
      analyzer: any :class:`keras_dtd.Analyzer` (its public interface is what is exported).
      export_dir: the model's directory; versions are its numbered subdirectories.
      version: a non-negative int.
      overwrite: replace an existing non-empty version directory (that version only;
        other versions are never touched).

    Returns:
      The path of the written version.

    Raises:
      ValueError: ``version`` is not a non-negative int.
      FileExistsError: the version exists and ``overwrite`` is False.
    """
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(
            f"version must be a non-negative int (TensorFlow Serving's layout), got {version!r}."
        )
    if analyzer.graph.traced_calls:
        raise ValueError(
            f"Model '{analyzer.model.name}' has custom layers that keras_dtd traces inside, for inputs of "
            "known shapes (a KerasHub model, say); a TensorFlow Serving signature has a free batch axis, "
            "which those traces cannot take. Export is not available for such models yet; serve "
            "analyzer.analyze from Python instead."
        )
    path = os.path.join(os.fspath(export_dir), str(version))
    if os.path.isdir(path) and os.listdir(path):
        if not overwrite:
            raise FileExistsError(
                f"{path} already holds a model; pass overwrite=True to replace version {version}."
            )
        shutil.rmtree(path)

    model = analyzer.model
    names = _input_names(model, len(analyzer.input_specs))
    specs = [tf.TensorSpec(s.shape, s.dtype, name=n) for s, n in zip(analyzer.input_specs, names)]

    def relevance_outputs(maps):
        if len(maps) == 1:
            return {"relevance": maps[0]}
        return {f"relevance_{n}": m for n, m in zip(names, maps)}

    def serve(*inputs):
        inputs = list(inputs)
        predictions = model(inputs if len(inputs) > 1 else inputs[0], training=False)
        predictions = predictions[0] if isinstance(predictions, (list, tuple)) else predictions
        no_choice = -tf.ones(tf.shape(inputs[0])[:1], tf.int32)
        maps, score, target, _, _ = analyzer.relevance_pass(inputs, no_choice)
        scores = tf.reshape(predictions, (tf.shape(predictions)[0], -1))
        return {
            "predictions": predictions,
            "class_index": tf.argmax(scores, axis=-1, output_type=tf.int32),
            "score": score,
            "target": target,
            **relevance_outputs(maps),
        }

    def explain(*args):
        inputs, class_index = list(args[:-1]), args[-1]
        checked = tf.debugging.assert_less(
            class_index, analyzer.output_size, message=f"class_index must be below {analyzer.output_size}"
        )
        with tf.control_dependencies([checked, tf.debugging.assert_non_negative(class_index)]):
            class_index = tf.identity(class_index)
        maps, score, target, _, _ = analyzer.relevance_pass(inputs, class_index)
        return {"score": score, "target": target, **relevance_outputs(maps)}

    module = tf.Module()
    module.serve = tf.function(serve, input_signature=specs, autograph=False)
    module.explain = tf.function(
        explain,
        input_signature=specs + [tf.TensorSpec((None,), tf.int32, name="class_index")],
        autograph=False,
    )
    try:
        # track the tf.Variables the signatures read, so the SavedModel restores them
        used = {}
        for function in (module.serve, module.explain):
            for variable in function.get_concrete_function().variables:
                used.setdefault(id(variable), variable)
        module.model_variables = list(used.values())
        tf.saved_model.save(
            module,
            path,
            signatures={"serving_default": module.serve, "explain": module.explain},
        )
    except Exception as error:
        shutil.rmtree(path, ignore_errors=True)
        raise RuntimeError(
            f"Model '{model.name}' could not be exported as a SavedModel ({type(error).__name__}: {error}). "
            "Layers with Python-side state or non-TensorFlow code cannot be saved; replace them or "
            "register rules for traceable equivalents."
        ) from error
    return path


def _input_names(model, count):
    """Signature names: the model's input names made valid identifiers, unique."""
    names = []
    for k, tensor in enumerate(model.inputs[:count]):
        name = re.sub(r"\W", "_", getattr(tensor, "name", "") or "") or f"input_{k}"
        if name[0].isdigit():
            name = f"input_{name}"
        while name in names or name in ("class_index", "predictions", "score", "target"):
            name = f"{name}_{k}"
        names.append(name)
    return names
