"""Relevance models (Montavon et al. 2017, section 5): deep Taylor decomposition below a
layer whose relevance, as a function of its activations x, is modelled instead of
propagated from the top.

- :class:`MinMax`: R̂ = Σ_j y_j, y_j = max(0, Σ_i x_i v_ij + a_j), a_j = min(0, Σ_l c_l v̄_lj + d_j) ≤ 0,
  with the context c_l = max(f_l, 0) of the model's outputs lowering the biases; v, v̄, d
  are fitted to the relevance DTD gives the layer (Σ_i R_i at its output, for each
  sample's top output). Relevance then flows R_j = y_j → R_i = Σ_j q_ij / Σ_i' q_i'j · R_j
  with q_ij = v_ij² ("w2") or x_i v_ij⁺ ("zplus"), and by DTD below the layer.
- :class:`TrainingFree`: relevance taken as proportional to activation above the layer,
  which makes it z⁺ through the upper layers' own weights: DTD's own relevance at the layer.

    relevance_model = MinMax(model, "features", units=32).fit(x, epochs=20) and model
    relevance_model.evaluate(x)          # r2, mse, conservation_error, negative_share
    R = relevance_model.analyzer(input_range=(0, 1)).analyze(x)
"""

from __future__ import annotations

import json

import keras
import numpy as np
import tensorflow as tf

from keras_dtd.analyzers import composites as C
from keras_dtd.analyzers.analyzer import DTD, Analyzer, per_sample_sum
from keras_dtd.core import registry


class MinMaxLayer(keras.layers.Layer):
    """y_j = max(0, Σ_i x_i v_ij + a_j), a_j = min(0, Σ_l c_l v̄_lj + d_j), for inputs [x, c]."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        (_, d), (_, n_context) = input_shape
        self.v = self.add_weight(shape=(d, self.units), initializer="glorot_normal", name="v")
        self.v_context = self.add_weight(shape=(n_context, self.units), initializer="zeros", name="v_context")
        self.d = self.add_weight(shape=(self.units,), initializer="zeros", name="d")

    def bias(self, context):
        """a_j = min(0, Σ_l c_l v̄_lj + d_j) ≤ 0."""
        return keras.ops.minimum(keras.ops.matmul(context, self.v_context) + self.d, 0.0)

    def call(self, inputs):
        x, context = inputs
        return keras.ops.relu(keras.ops.matmul(x, self.v) + self.bias(context))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class _LayerStart(Analyzer):
    """DTD from ``layer``'s output down to the input, starting from the relevance that
    ``start(inputs, activations)`` gives the layer (instead of from an output neuron)."""

    def __init__(self, model, layer, start, input_range=None):
        self.full = model
        self._start_at_layer = start
        sub = keras.Model(model.inputs, model.get_layer(layer).output)
        # the start is the modelled relevance, not an output score: no warning for f <= 0
        super().__init__(sub, C.DeepTaylor(input_range), input_range=input_range, positive_output=False)

    def analyze(self, x):
        return self.explain(x).relevance

    def explain(self, x, neuron_selection="all", return_layers=False):
        if neuron_selection != "all":
            raise ValueError(
                "A relevance model's analyzer explains the modelled relevance; it takes no neuron_selection."
            )
        return super().explain(x, "all", return_layers)

    def start_relevance(self, inputs, f, mask):
        return self._start_at_layer(inputs, f)


class _RelevanceModel:
    """What MinMax and TrainingFree share: the traced layer, targets, evaluation."""

    def __init__(self, model, layer):
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a layer name, got {layer!r}.")
        self.model = model
        self.layer = layer
        self._dtd = DTD(model)
        nodes = [n for n in self._dtd.graph.nodes if n.layer.name == layer]
        if not nodes or layer not in [lay.name for lay in model.layers]:
            names = [lay.name for lay in model.layers]
            raise ValueError(f"Model '{model.name}' has no layer '{layer}' (its layers: {', '.join(names)}).")
        self._node = nodes[-1]  # a separable convolution's pointwise half
        if not _rectified(self._dtd.graph, self._node):
            raise ValueError(
                f"Layer '{layer}' ({type(self._node.layer).__name__}, "
                f"activation '{self._node.activation}') has no ReLU-like activations to model: "
                "choose a layer whose outputs are rectified (ReLU, ReLU6, or pooling of them)."
            )
        self._features_fn = tf.function(self._features, autograph=False)

    def _features(self, x):
        """(activations at the layer, flattened; context max(f, 0); DTD's relevance at the layer, summed)."""
        forward = self._dtd.forward([x])
        activations, f = forward.layers[self._node.path], forward.output
        indices = tf.fill(tf.shape(f)[:1], -1)
        layers = self._dtd.relevance_pass([x], indices, keep_layers=True).layers
        target = per_sample_sum(layers[self._node.path])
        return tf.reshape(activations, (tf.shape(x)[0], -1)), tf.nn.relu(f), target

    def features(self, x):
        """numpy (activations, context, target relevance) for a batch of inputs."""
        (x,) = self._dtd.validate_inputs(x)
        parts = [
            [t.numpy() for t in self._features_fn(tf.constant(x[k : k + 256]))] for k in range(0, len(x), 256)
        ]
        return [np.concatenate(p) for p in zip(*parts)]

    def _predicted(self, activations, context, target):  # pragma: no cover - interface
        raise NotImplementedError

    def evaluate(self, x, input_range=None):
        """Fit quality against DTD's relevance at the layer (``r2``, ``mse``), and of the
        heatmaps its analyzer makes: ``conservation_error`` max over samples with f > 0 of
        |Σ R − f| / f, f the top output; ``negative_share`` Σ|R⁻| / Σ|R|."""
        activations, context, target = self.features(x)
        predicted = self._predicted(activations, context, target)
        mse = float(np.mean((predicted - target) ** 2))
        variance = float(np.var(target))
        relevance = self.analyzer(input_range).analyze(x).reshape(len(target), -1).astype(np.float64)
        f = np.asarray(self._dtd.explain(x).score, np.float64)
        ok = f > 0
        conservation = np.abs(relevance.sum(axis=1)[ok] - f[ok]) / f[ok]
        negative = np.abs(np.minimum(relevance, 0)).sum() / max(np.abs(relevance).sum(), 1e-300)
        return {
            "r2": 1.0 - mse / variance if variance > 0 else float(mse == 0),
            "mse": mse,
            "conservation_error": float(conservation.max()) if ok.any() else 0.0,
            "negative_share": float(negative),
        }


def _rectified(graph, node) -> bool:
    """Whether the node's output is ≥ 0 by construction (a rectifier, or a value its consumers know is)."""
    if node.activation in registry.RECTIFIERS:
        return True
    out = node.outputs[0]
    return any(
        c.nonnegative_inputs and c.nonnegative_inputs[c.inputs.index(out)]
        for c in graph.nodes
        if out in c.inputs
    )


class MinMax(_RelevanceModel):
    """The Min-Max relevance model of ``layer`` (see the module docstring) with ``units``
    hidden units; ``rule`` ("zplus" or "w2") redistributes its relevance onto the layer."""

    def __init__(self, model, layer, units=32, rule="zplus"):
        if rule not in ("zplus", "w2"):
            raise ValueError(f"rule must be 'zplus' or 'w2', got {rule!r}.")
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive int, got {units!r}.")
        super().__init__(model, layer)
        self.units = units
        self.rule = rule
        d = int(np.prod(model.get_layer(layer).output.shape[1:]))
        x_in, c_in = keras.Input((d,)), keras.Input((self._dtd.output_size,))
        self.min_max = MinMaxLayer(units, name="min_max")
        y = self.min_max([x_in, c_in])
        self.network = keras.Model([x_in, c_in], keras.ops.sum(y, axis=-1))

    def fit(self, x, epochs=20, batch_size=32, validation_data=None, verbose="auto", learning_rate=1e-2):
        """Fit v, v̄, d to DTD's relevance at the layer (mean squared error, Adam); returns
        Keras' History. ``validation_data``: inputs x_val (their targets are computed here)."""
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError("fit needs a non-empty batch of inputs.")
        activations, context, target = self.features(x)
        validation = None
        if validation_data is not None:
            va, vc, vt = self.features(validation_data)
            validation = ([va, vc], vt)
        self.network.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
        return self.network.fit(
            [activations, context],
            target,
            epochs=epochs,
            batch_size=batch_size,
            validation_data=validation,
            verbose=verbose,
        )

    def predict_relevance(self, activations, context):
        """R̂ per sample, from the layer's (flattened) activations and the context max(f, 0)."""
        return np.asarray(self.network([activations, context]))

    def _predicted(self, activations, context, target):
        return self.predict_relevance(activations, context)

    def _redistribute(self, activations, context):
        """R_i at the layer from R_j = y_j: q_ij = v_ij² or x_i v_ij⁺."""
        y = self.min_max([activations, context])
        v = tf.convert_to_tensor(self.min_max.v)
        if self.rule == "w2":
            share = tf.math.divide_no_nan(tf.square(v), tf.reduce_sum(tf.square(v), axis=0, keepdims=True))
            return tf.matmul(y, share, transpose_b=True)
        positive = tf.nn.relu(v)
        s = tf.math.divide_no_nan(y, tf.matmul(activations, positive))
        return activations * tf.matmul(s, positive, transpose_b=True)

    def analyzer(self, input_range=None):
        """DTD below the layer, starting from the relevance this model gives it."""

        def start(inputs, h):
            context = tf.nn.relu(self._dtd.forward(inputs).output)
            flat = tf.reshape(h, (tf.shape(h)[0], -1))
            return tf.reshape(self._redistribute(flat, context), tf.shape(h))

        return _LayerStart(self.model, self.layer, start, input_range)

    def save(self, path):
        """Write the fitted parameters and settings to ``path`` (.npz)."""
        settings = json.dumps({"layer": self.layer, "units": self.units, "rule": self.rule})
        np.savez(path, settings=settings, **{w.name: w.numpy() for w in self.min_max.weights})

    @classmethod
    def load(cls, path, model):
        """A MinMax model of ``model`` with the parameters saved at ``path``."""
        data = np.load(path)
        settings = json.loads(str(data["settings"]))
        loaded = cls(model, settings["layer"], units=settings["units"], rule=settings["rule"])
        for w in loaded.min_max.weights:
            if data[w.name].shape != tuple(w.shape):
                raise ValueError(
                    f"{path}: parameter {w.name} has shape {data[w.name].shape}, expected {tuple(w.shape)}."
                )
            w.assign(data[w.name])
        return loaded


class TrainingFree(_RelevanceModel):
    """The training-free relevance model of ``layer``: the upper layers' relevance taken
    as proportional to their activations, which is z⁺ through their own weights — DTD's
    relevance at the layer. Same interface as :class:`MinMax`; nothing to fit."""

    def fit(self, x=None, **kwargs):
        """Nothing to fit; returns None."""
        return None

    def _predicted(self, activations, context, target):
        return target  # its relevance at the layer is DTD's, exactly

    def analyzer(self, input_range=None):
        """DTD below the layer, starting from DTD's own relevance at it."""
        dtd = self._dtd

        def start(inputs, h):
            indices = tf.fill(tf.shape(h)[:1], -1)
            return dtd.relevance_pass(inputs, indices, keep_layers=True).layers[self._node.path]

        return _LayerStart(self.model, self.layer, start, input_range)

    def save(self, path):
        np.savez(path, settings=json.dumps({"layer": self.layer}))

    @classmethod
    def load(cls, path, model):
        return cls(model, json.loads(str(np.load(path)["settings"]))["layer"])
