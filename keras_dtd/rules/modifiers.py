"""Weight modifiers: elementwise functions m of the weights, W ↦ m(W), that proportional
rules pair with their inputs (:meth:`keras_dtd.rules.Proportional.terms`). Any function of
a tensor works; on maps with fixed weights (pooling, sums: W ≥ 0, equal within each
output) ``negative`` drops the term, ``identity``, ``positive``, ``square`` and ``ones``
leave it as it is, and any other m scales the term's inputs by m(1)."""

from __future__ import annotations

import tensorflow as tf


def identity(w):
    """W."""
    return w


def positive(w):
    """W⁺ = max(W, 0)."""
    return tf.nn.relu(w)


def negative(w):
    """W⁻ = min(W, 0)."""
    return tf.minimum(w, tf.constant(0, w.dtype))


def square(w):
    """W²."""
    return tf.square(w)


def ones(w):
    """1 (every connection counts alike: the flat rule)."""
    return tf.ones_like(w)
