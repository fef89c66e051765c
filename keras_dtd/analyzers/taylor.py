"""First-order Taylor decomposition at a root point (Montavon et al. 2017, eq. 3.1):
R = ∇f(x̃) ⊙ (x − x̃) with f(x̃) ≈ 0, so that f(x) = Σ R + remainder.

    taylor = Taylor(model, root="search", input_range=(0, 1))
    e = taylor.explain(x)      # e.relevance, e.root, e.root_value, e.remainder, e.distance, e.converged
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from keras_dtd.analyzers.baselines import Gradient
from keras_dtd.analyzers.checks import caller_stacklevel, padded


class RootNotFoundWarning(UserWarning):
    """The root search did not reach f(x̃) ≈ 0 for some samples; their maps are those at the
    closest point found, and their remainders say how much of f they miss."""


class TaylorExplanation(NamedTuple):
    """Per sample: ``relevance`` ∇f(x̃) ⊙ (x − x̃); ``root`` x̃; ``root_value`` f(x̃);
    ``remainder`` f(x) − Σ R; ``distance`` ‖x − x̃‖; ``converged`` whether |f(x̃)| ≤
    tolerance · |f(x)|; ``score`` f(x), the selected output (before a final softmax)."""

    relevance: Any
    root: Any
    root_value: np.ndarray
    remainder: np.ndarray
    distance: np.ndarray
    converged: np.ndarray
    score: np.ndarray


class Taylor(Gradient):
    """Taylor decomposition of the selected output f at a root x̃.

    ``root``: an array broadcastable to the input batch, or "search": a root near x in the
    input domain (``input_range``, else ℝ^d). The search takes Newton steps along the
    gradient, x̃ ← clip(x̃ − t f(x̃) ∇f(x̃) / ‖∇f(x̃)‖²), with a per-sample step t that doubles
    (up to 1) after a step that lowers |f| and halves after one that does not (a line
    search), at most ``max_steps``; on a linear f without bounds the first step lands on
    the orthogonal projection of x onto {f = 0}, the nearest root. Where the steps stall
    (ReLU kinks, the domain's faces), it bisects the segment from the last point to a
    point of the domain where f has the other sign (the origin, the lower or the upper
    bound), which finds a root whenever one of them has. ``converged`` is False otherwise.
    """

    def __init__(self, model, root="search", input_range=None, max_steps=200, tolerance=1e-4, **kwargs):
        super().__init__(model, input_range=input_range, **kwargs)
        if len(self.input_specs) != 1:
            raise ValueError("Taylor supports single-input models.")
        if isinstance(root, str) and root != "search":
            raise ValueError(f"root must be 'search' or an array, got {root!r}.")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}.")
        self.root = root
        self.max_steps = max_steps
        self.tolerance = float(tolerance)

    def analyze(self, x, neuron_selection="max_activation"):
        return self.explain(x, neuron_selection).relevance

    def explain(self, x, neuron_selection="max_activation") -> TaylorExplanation:
        (inputs,) = self.validate_inputs(x)
        n = inputs.shape[0]
        indices, all_outputs = self.validate_selection(neuron_selection, n)
        if all_outputs:
            raise ValueError(
                "Taylor explains one output per sample; neuron_selection='all' is not supported."
            )
        roots = None
        if not isinstance(self.root, str):
            try:
                roots = np.broadcast_to(np.asarray(self.root, inputs.dtype), inputs.shape)
            except ValueError:
                raise ValueError(
                    f"root of shape {np.shape(self.root)} does not broadcast to x of shape {inputs.shape}."
                ) from None
        function = self._taylor_function()
        parts = []
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            pad = self.batch_size - (stop - start) if n > self.batch_size else 0
            batch = padded(inputs[start:stop], pad, 0)
            given = batch if roots is None else padded(roots[start:stop], pad, 0)
            result = function(batch, padded(indices[start:stop], pad, -1), given)
            parts.append([t.numpy()[: stop - start] for t in result])
        relevance, root, root_value, score, converged = (np.concatenate(p) for p in zip(*parts))
        flat = (inputs - root).reshape(n, -1).astype(np.float64)
        explanation = TaylorExplanation(
            relevance,
            root,
            root_value,
            score - relevance.reshape(n, -1).astype(np.float64).sum(axis=1),
            np.sqrt((flat**2).sum(axis=1)),
            converged,
            score,
        )
        if not converged.all():
            bad = np.flatnonzero(~converged)
            warnings.warn(
                f"{bad.size} of {n} samples have no root with |f| <= {self.tolerance:g}·|f(x)| found "
                f"(samples {', '.join(map(str, bad[:10]))}{', ...' if bad.size > 10 else ''}); "
                "their maps are taken at the closest point found, and TaylorExplanation.remainder says "
                "how much of f they miss.",
                RootNotFoundWarning,
                stacklevel=caller_stacklevel(),
            )
        return explanation

    def _taylor_function(self):
        (spec,) = self.input_specs
        signature = (spec, tf.TensorSpec((None,), tf.int32), spec)
        return self.compiled(
            "taylor",
            lambda: tf.function(
                self._taylor, input_signature=signature, jit_compile=self.jit_compile, autograph=False
            ),
        )

    def _value_and_gradient(self, x, mask):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            f = tf.reduce_sum(tf.reshape(mask * self.forward([x]).output, (tf.shape(x)[0], -1)), -1)
        return f, tape.gradient(f, x)

    def _taylor(self, x, indices, given_root):
        self.trace_count += 1
        f = self.forward([x]).output
        mask, score = self.select(f, indices, False)
        root = self._search(x, mask, score) if isinstance(self.root, str) else given_root
        root_value, gradient = self._value_and_gradient(root, mask)
        converged = tf.abs(root_value) <= self.tolerance * tf.maximum(tf.abs(score), 1e-12)
        return gradient * (x - root), root, root_value, score, converged

    def _clip(self, x):
        if self.input_range is None:
            return x
        low, high = self.input_range[0]
        return tf.clip_by_value(x, tf.constant(low, x.dtype), tf.constant(high, x.dtype))

    def _search(self, x, mask, score):
        """Damped Newton steps towards f = 0 with a per-sample line search (see the class)."""
        rank = x.shape.rank

        def per_sample(v):
            return tf.reshape(v, [-1] + [1] * (rank - 1))

        def body(k, point, value, gradient, step):
            norm = tf.reduce_sum(tf.reshape(tf.square(gradient), (tf.shape(x)[0], -1)), -1)
            move = per_sample(tf.math.divide_no_nan(value, norm) * step) * gradient
            candidate = self._clip(point - move)
            new_value, new_gradient = self._value_and_gradient(candidate, mask)
            better = tf.abs(new_value) < tf.abs(value)
            keep = per_sample(tf.cast(better, x.dtype))
            point = keep * candidate + (1 - keep) * point
            value = tf.where(better, new_value, value)
            gradient = keep * new_gradient + (1 - keep) * gradient
            step = tf.where(better, tf.minimum(2 * step, 1.0), step / 2)
            return k + 1, point, value, gradient, step

        start = self._clip(x)
        value, gradient = self._value_and_gradient(start, mask)
        step = tf.ones_like(value)
        _, root, value, *_ = tf.while_loop(
            lambda k, *_: k < self.max_steps, body, (0, start, value, gradient, step)
        )
        return self._bisect(root, value, mask, score, per_sample)

    def _bisect(self, point, value, mask, score, per_sample):
        """Where |f(point)| is above the tolerance, bisect towards the first of the origin and
        the domain's bounds at which f has the other sign."""
        candidates = [self._clip(tf.zeros_like(point))]
        if self.input_range is not None:
            candidates += [
                tf.broadcast_to(tf.constant(b, point.dtype), tf.shape(point)) for b in self.input_range[0]
            ]
        other, found = tf.zeros_like(point), tf.zeros_like(value, tf.bool)
        for candidate in candidates:
            f_c, _ = self._value_and_gradient(candidate, mask)
            use = tf.logical_and(tf.logical_not(found), f_c * value <= 0)
            other = tf.where(per_sample(use), candidate, other)
            found = tf.logical_or(found, use)
        need = tf.logical_and(found, tf.abs(value) > self.tolerance * tf.maximum(tf.abs(score), 1e-12))

        def halve(k, a, f_a, b):
            middle = (a + b) / 2
            f_m, _ = self._value_and_gradient(middle, mask)
            same = per_sample(f_m * f_a > 0)
            return (
                k + 1,
                tf.where(same, middle, a),
                tf.where(f_m * f_a > 0, f_m, f_a),
                tf.where(same, b, middle),
            )

        _, a, _, b = tf.while_loop(lambda k, *_: k < 60, halve, (0, point, value, other))
        return tf.where(per_sample(need), b, point)
