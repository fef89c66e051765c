"""Gradient-based baselines, the methods LRP and DTD are compared against.

f is the selected output (a final softmax is stripped); the selection is made at x and
kept along paths and under noise. ``postprocess`` ("abs", "square" or None) applies to
each gradient. For an integer input (token ids) :class:`Gradient` and
:class:`InputTimesGradient` take the gradient at the embedding vectors e of each token and
sum over their entries: R_t = Σ_d post(∂f/∂e_td), or Σ_d e_td ∂f/∂e_td.
"""

from __future__ import annotations

import warnings

import keras
import tensorflow as tf

from keras_dtd.analyzers.analyzer import BIAS_INPUTS, Analyzer, RelevancePass, per_sample_sum
from keras_dtd.core.kinds import Kind

_POSTPROCESS = (None, "abs", "square")


class Gradient(Analyzer):
    """Sensitivity analysis: R_i = ∂f/∂x_i, or (∂f/∂x_i)² with ``postprocess="square"`` as
    in the DTD paper, or |∂f/∂x_i| with "abs". Not conservative: a baseline."""

    def __init__(self, model, postprocess=None, **kwargs):
        if postprocess not in _POSTPROCESS:
            raise ValueError(f"postprocess must be None, 'abs' or 'square', got {postprocess!r}.")
        super().__init__(model, None, positive_output=False, **kwargs)
        self.postprocess = postprocess
        self._embeddings = _embeddings_of_integer_inputs(self)

    @property
    def explained_inputs(self):
        """Per model input, whether it gets a map: not an integer input that no embedding reads (a
        padding mask), nor one whose embeddings act as biases (:data:`BIAS_INPUTS`)."""
        names = self.graph.input_names
        return [paths is not None and name not in BIAS_INPUTS for paths, name in zip(self._embeddings, names)]

    def _post(self, grads):
        if self.postprocess == "abs":
            return [tf.abs(g) for g in grads]
        if self.postprocess == "square":
            return [tf.square(g) for g in grads]
        return grads

    def _taped(self, inputs):
        """(tape, f): the forward pass, recorded for gradients with respect to the inputs."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(inputs)
            f = self.forward(inputs).output
        return tape, f

    def _gradients(self, inputs, mask):
        """post(∂(Σ mask·f)/∂x) per input."""
        tape, f = self._taped(inputs)
        return self._post(tape.gradient(f, inputs, output_gradients=mask))

    def _refuse_integer_inputs(self):
        if any(paths for paths in self._embeddings):
            raise ValueError(
                f"{type(self).__name__} moves the model's inputs, and an input of model "
                f"'{self.model.name}' is integer (token ids). Use Gradient or InputTimesGradient, which "
                "take the gradient at the embeddings, or a rule-based analyzer (LRP, DTD)."
            )

    def _selection(self, inputs, indices, all_outputs):
        f = self.forward(inputs).output
        mask, score = self.select(f, indices, all_outputs)
        return mask, score, per_sample_sum(mask * f)

    def relevance_pass(self, inputs, indices, all_outputs=False, keep_layers=False):
        """One forward pass serves the selection and the gradient."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([x for x in inputs if x.dtype.is_floating])
            forward = self.forward(inputs, watch=tape)
        f = forward.output
        mask, score = self.select(f, indices, all_outputs)
        embedded = [[forward.layers[path] for path in paths or ()] for paths in self._embeddings]
        sources = [e if e else x for x, e in zip(inputs, embedded)]
        gradients = tape.gradient(f, sources, output_gradients=mask)
        maps = [
            tf.zeros(tf.shape(x), f.dtype) if paths is None else self._map(k, x, g, e)
            for k, (x, g, e, paths) in enumerate(zip(inputs, gradients, embedded, self._embeddings))
        ]
        return RelevancePass(maps, score, per_sample_sum(mask * f), {}, {})

    def _map(self, k, x, gradient, embedded):
        """The map of input k from its gradient (at the embeddings ``embedded`` of token ids)."""
        if not embedded:
            return self._post([gradient])[0]
        return tf.add_n([tf.reduce_sum(g, -1) for g in self._post(gradient)])


class InputTimesGradient(Gradient):
    """R_i = x_i · ∂f/∂x_i (Shrikumar et al. 2016)."""

    def _map(self, k, x, gradient, embedded):
        if not embedded:
            return x * gradient
        return tf.add_n([tf.reduce_sum(e * g, -1) for e, g in zip(embedded, gradient)])


def _embeddings_of_integer_inputs(analyzer):
    """Per model input: [] for a float input; for an integer one (token ids), the paths of the
    embedding layers reading it, where gradients are taken instead; None for an integer input
    no embedding reads (a padding mask). Refused where an embedding and other layers read it."""
    graph = analyzer.graph
    found = []
    for k, (i, dtype) in enumerate(zip(graph.inputs, graph.input_dtypes)):
        if "int" not in dtype:
            found.append([])
            continue
        readers = [node for node in graph.nodes if i in node.inputs and node.kind != Kind.MASK]
        if not any(node.kind == Kind.EMBEDDING for node in readers):
            found.append(None)  # no embedding reads it (a padding mask): no gradient, no map
            continue
        if any(node.kind != Kind.EMBEDDING for node in readers):
            raise ValueError(
                f"Input {k} of model '{analyzer.model.name}' is integer ({dtype}) and is read by layers "
                "other than Embedding; gradients need a float input or embeddings of token ids."
            )
        found.append([node.path for node in readers])
    return found


def _references(reference, inputs):
    refs = reference if isinstance(reference, (list, tuple)) else [reference] * len(inputs)
    if len(refs) != len(inputs):
        raise ValueError(f"reference_inputs: {len(refs)} references for a model with {len(inputs)} inputs.")
    return [tf.broadcast_to(tf.cast(r, x.dtype), tf.shape(x)) for r, x in zip(refs, inputs)]


class IntegratedGradients(Gradient):
    """Integrated gradients (Sundararajan et al. 2017) with iNNvestigate's Riemann sum:
    R_i = (x_i − x̄_i) · (1/m) Σ_{k=0}^{m−1} ∂f/∂x_i at x̄ + (k/m)(x − x̄), with the
    reference x̄ = ``reference_inputs`` (a scalar or array broadcastable to the input, or one
    per input) and m = ``steps``. Σ R approaches f(x) − f(x̄) as m grows."""

    def __init__(self, model, reference_inputs=0.0, steps=64, postprocess=None, **kwargs):
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}.")
        super().__init__(model, postprocess=postprocess, **kwargs)
        self._refuse_integer_inputs()
        self.reference_inputs = reference_inputs
        self.steps = steps

    def relevance_pass(self, inputs, indices, all_outputs=False, keep_layers=False):
        mask, score, f_mask = self._selection(inputs, indices, all_outputs)
        refs = _references(self.reference_inputs, inputs)
        f_ref = self.forward(refs).output

        def body(k, totals):
            t = tf.cast(k, inputs[0].dtype) / self.steps
            points = [r + t * (x - r) for x, r in zip(inputs, refs)]
            return k + 1, [a + g for a, g in zip(totals, self._gradients(points, mask))]

        _, totals = tf.while_loop(lambda k, _: k < self.steps, body, (0, [tf.zeros_like(x) for x in inputs]))
        maps = [(x - r) * a / self.steps for x, r, a in zip(inputs, refs, totals)]
        target = f_mask - per_sample_sum(mask * f_ref)
        return RelevancePass(maps, score, target, {}, {})


class SmoothGrad(Gradient):
    """SmoothGrad (Smilkov et al. 2017): R = (1/n) Σ_k ∂f/∂x at x + ε_k, ε_k ~ N(0, σ²)
    with σ = ``noise_scale`` (absolute, in input units) and n = ``augment_by_n``; the noise
    is drawn from ``seed`` (the same for every compiled batch)."""

    def __init__(self, model, augment_by_n=64, noise_scale=1.0, postprocess=None, seed=0, **kwargs):
        if not isinstance(augment_by_n, int) or augment_by_n < 1:
            raise ValueError(f"augment_by_n must be a positive int, got {augment_by_n!r}.")
        if not noise_scale >= 0:
            raise ValueError(f"noise_scale must be >= 0, got {noise_scale!r}.")
        super().__init__(model, postprocess=postprocess, **kwargs)
        self._refuse_integer_inputs()
        self.augment_by_n = augment_by_n
        self.noise_scale = float(noise_scale)
        self.seed = int(seed)

    def relevance_pass(self, inputs, indices, all_outputs=False, keep_layers=False):
        mask, score, target = self._selection(inputs, indices, all_outputs)

        def body(k, totals):
            noisy = [
                x
                + self.noise_scale
                * tf.random.stateless_normal(tf.shape(x), [self.seed, 2 * k + j], dtype=x.dtype)
                for j, x in enumerate(inputs)
            ]
            return k + 1, [a + g for a, g in zip(totals, self._gradients(noisy, mask))]

        _, totals = tf.while_loop(
            lambda k, _: k < self.augment_by_n, body, (0, [tf.zeros_like(x) for x in inputs])
        )
        return RelevancePass([a / self.augment_by_n for a in totals], score, target, {}, {})


class InputValues(Gradient):
    """The input itself, R = x: a reference map (iNNvestigate's "input")."""

    def _map(self, k, x, gradient, embedded):
        return x if x.dtype.is_floating else tf.cast(x, keras.config.floatx())


class Random(Gradient):
    """R = x + N(0, ``stddev``²) drawn from ``seed``: iNNvestigate's random reference map."""

    def __init__(self, model, stddev=1.0, seed=0, **kwargs):
        super().__init__(model, **kwargs)
        self.stddev = float(stddev)
        self.seed = int(seed)

    def _map(self, k, x, gradient, embedded):
        x = x if x.dtype.is_floating else tf.cast(x, keras.config.floatx())
        return x + self.stddev * tf.random.stateless_normal(tf.shape(x), [self.seed, k], dtype=x.dtype)


__all__ = ["Gradient", "InputTimesGradient", "IntegratedGradients", "SmoothGrad", "InputValues", "Random"]


def __getattr__(name):
    if name == "Input":  # renamed: it shadowed keras.Input
        warnings.warn(
            "baselines.Input is deprecated; use baselines.InputValues.", DeprecationWarning, stacklevel=2
        )
        return InputValues
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
