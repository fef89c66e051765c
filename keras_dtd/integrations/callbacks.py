"""A Keras callback that watches relevance maps while a model trains."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from keras_dtd.analyzers.analyzer import DTD, Analyzer
from keras_dtd.analyzers.innvestigate import ANALYZERS
from keras_dtd.integrations import plot

# keras_dtd's own DTD under "dtd", beside iNNvestigate's names (whose "deep_taylor" is z⁺ everywhere)
METHODS = {"dtd": DTD, **ANALYZERS}


class RelevanceMonitor(keras.callbacks.Callback):
    """Logs relevance maps of fixed sample inputs to TensorBoard during ``fit``.

    At each logging step it writes, under ``log_dir``:
      - ``relevance/heatmaps``: an image grid of the maps (sign-preserving colours);
      - ``relevance/conservation_error``: mean |Σ R − target| / max(|target|, 1e-12),
        where target is the explained output max(f, 0);
      - ``relevance/negative_share``: Σ|R⁻| / Σ|R| over all samples;
      - ``relevance/values``: a histogram of the relevance values;
      - with ``save_png=True``, a figure of the grid titled with the predicted class, the
        explained class and Σ R, as ``relevance_epoch_0003.png`` (or ``_batch_``).

    Args:
      x: sample inputs: an array (or list of arrays for multi-input models), or a
        ``tf.data.Dataset`` of inputs or (inputs, labels) from which the first
        ``max_samples`` samples are taken.
      log_dir: TensorBoard log directory.
      targets: "predicted" (the top output), "true" (needs ``labels``, or a
        dataset with labels), an int, or one int per sample.
      labels: class labels (ints or one-hot) for ``targets="true"``.
      method: "dtd" (the default: :class:`keras_dtd.DTD`, with the first-layer rule z^B when
        ``input_range`` is given, else w²), one of iNNvestigate's analyzer names
        ("deep_taylor", "lrp.epsilon", ... see ``keras_dtd.compat.ANALYZERS``), or a function
        model → Analyzer.
      input_range: for "dtd": the ``(low, high)`` bounds of the input (e.g. ``(0, 1)`` for
        images scaled so), which select DTD's bounded first-layer rule z^B.
      method_kwargs: keyword arguments for the named method (e.g. low/high for
        "deep_taylor.bounded").
      every_n_epochs / every_n_batches: logging frequency (batches win if given);
        ``every_n_batches`` may also be a list of the batch counts at which to log.
      cmap: colormap of the grid ("bwr", "seismic", "coldnhot").

    One analyzer is built when training starts and reused: it reads the model's
    live weights, so it is traced once for the whole run. The last maps are kept
    in ``self.relevance``; all of them, by step, in ``self.history``, and the
    logged scalars in ``self.scalars``.
    """

    def __init__(
        self,
        x,
        log_dir,
        targets="predicted",
        labels=None,
        method="dtd",
        method_kwargs=None,
        every_n_epochs=1,
        every_n_batches=None,
        save_png=False,
        max_samples=16,
        cmap="bwr",
        keep_history=True,
        input_range=None,
    ):
        super().__init__()
        try:
            import tensorboard  # noqa: F401  (tf.summary.image needs it)
        except ImportError:
            raise ImportError(
                "RelevanceMonitor writes TensorBoard summaries and needs the tensorboard package: "
                "pip install 'keras_dtd[tensorboard]'."
            ) from None
        if isinstance(method, str) and method not in METHODS:
            raise ValueError(f"Unknown method '{method}'. Available: {', '.join(sorted(METHODS))}.")
        if input_range is not None and method != "dtd":
            raise ValueError(
                f"input_range is for method='dtd'; give {method!r} its bounds in method_kwargs "
                "(e.g. low/high)."
            )
        if every_n_batches is None and (not isinstance(every_n_epochs, int) or every_n_epochs < 1):
            raise ValueError(f"every_n_epochs must be a positive int, got {every_n_epochs!r}.")
        if every_n_batches is not None:
            counts = [every_n_batches] if isinstance(every_n_batches, int) else list(every_n_batches)
            if not counts or not all(isinstance(c, int) and c >= 1 for c in counts):
                raise ValueError(
                    "every_n_batches must be a positive int or a list of batch counts, "
                    f"got {every_n_batches!r}."
                )
        self.x, dataset_labels = _samples(x, max_samples)
        self.labels = labels if labels is not None else dataset_labels
        self.selection = self._selection(targets)
        self.log_dir = os.fspath(log_dir)
        self.method = method
        self.method_kwargs = dict(method_kwargs or {})
        if input_range is not None:
            self.method_kwargs["input_range"] = input_range
        self.every_n_epochs = every_n_epochs
        self.every_n_batches = (
            every_n_batches if isinstance(every_n_batches, (int, type(None))) else set(every_n_batches)
        )
        self.save_png = save_png
        self.cmap = cmap
        self.keep_history = keep_history
        self.analyzer: Analyzer | None = None
        self.relevance = None
        self.history: dict[int, np.ndarray] = {}
        self.scalars: dict[int, dict[str, float]] = {}
        self._writer = None
        self._batches = 0

    def _selection(self, targets):
        if isinstance(targets, str):
            if targets == "predicted":
                return "max_activation"
            if targets == "true":
                if self.labels is None:
                    raise ValueError("targets='true' needs labels (or a dataset of (inputs, labels)).")
                labels = np.asarray(self.labels)
                labels = labels.argmax(axis=-1) if labels.ndim == 2 else labels
                return labels[: _count(self.x)].astype(np.int32)
            raise ValueError(
                f"targets must be 'predicted', 'true', an int or one int per sample; got '{targets}'."
            )
        return targets

    # ------------------------------------------------------------ callbacks
    def on_train_begin(self, logs=None):
        if self.analyzer is None or self.analyzer.model is not self.model:
            if callable(self.method) and not isinstance(self.method, str):
                self.analyzer = self.method(self.model)
            else:
                self.analyzer = METHODS[self.method](self.model, **self.method_kwargs)
        os.makedirs(self.log_dir, exist_ok=True)
        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_batches is None and (epoch + 1) % self.every_n_epochs == 0:
            self.log(epoch + 1, "epoch")

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        every = self.every_n_batches
        if every is None:
            return
        if self._batches % every == 0 if isinstance(every, int) else self._batches in every:
            self.log(self._batches, "batch")

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()

    # --------------------------------------------------------------- logging
    def log(self, step, unit="epoch"):
        """Compute the maps with the current weights and write them at ``step``."""
        explanation = self.analyzer.explain(self.x, self.selection)
        relevance = explanation.relevance
        maps = relevance if not isinstance(relevance, list) else relevance[0]
        n = len(maps)
        sums = maps.reshape(n, -1).sum(axis=1)
        target = explanation.target
        conservation = float(np.mean(np.abs(sums - target) / np.maximum(np.abs(target), 1e-12)))
        magnitude = np.abs(maps).sum()
        negative = float(np.abs(maps[maps < 0]).sum() / magnitude) if magnitude > 0 else 0.0  # never -0.0
        images = maps if maps.ndim >= 3 else maps.reshape(n, 1, -1)
        with self._writer.as_default(step=step):
            tf.summary.image("relevance/heatmaps", plot.grid_image(images, cmap=self.cmap)[None])
            tf.summary.scalar("relevance/conservation_error", conservation)
            tf.summary.scalar("relevance/negative_share", negative)
            tf.summary.histogram("relevance/values", maps.ravel())
        self._writer.flush()
        if self.save_png:
            predicted = self.model.predict_on_batch(self.x)
            predicted = np.asarray(predicted[0] if isinstance(predicted, list) else predicted)
            predicted = predicted.reshape(n, -1).argmax(axis=1)
            explained = self._explained_classes(predicted)
            titles = [f"pred {p} / expl {e}\nΣR={s:.3g}" for p, e, s in zip(predicted, explained, sums)]
            path = os.path.join(self.log_dir, f"relevance_{unit}_{step:04d}.png")
            plot.grid(images, titles=titles, cmap=self.cmap, save=path)
        self.relevance = maps
        if self.keep_history:
            self.history[step] = maps
            self.scalars[step] = {"conservation_error": conservation, "negative_share": negative}

    def _explained_classes(self, predicted):
        selection = self.selection
        if isinstance(selection, str):
            return ["all" if selection == "all" else p for p in predicted]
        return list(np.broadcast_to(np.asarray(selection), predicted.shape))


def _count(x):
    return len(x[0]) if isinstance(x, list) else len(x)


def _samples(x, max_samples):
    """(inputs, labels or None) from an array, a list of arrays, or a tf.data.Dataset."""
    if not isinstance(x, tf.data.Dataset):
        if isinstance(x, (list, tuple)):
            return [np.asarray(a)[:max_samples] for a in x], None
        return np.asarray(x)[:max_samples], None
    inputs, labels = [], []
    for element in x.unbatch().take(max_samples) if _is_batched(x) else x.take(max_samples):
        if isinstance(element, tuple) and len(element) >= 2:
            inputs.append(element[0])
            labels.append(element[1])
        else:
            inputs.append(element)
    if not inputs:
        raise ValueError("The dataset given to RelevanceMonitor is empty.")
    stacked = tf.nest.map_structure(lambda *t: np.stack([np.asarray(v) for v in t]), *inputs)
    if isinstance(stacked, tuple):
        stacked = list(stacked)
    return stacked, (np.stack([np.asarray(v) for v in labels]) if labels else None)


def _is_batched(dataset):
    spec = dataset.element_spec
    first = tf.nest.flatten(spec)[0]
    return first.shape.rank is not None and first.shape.rank > 0 and first.shape[0] is None
