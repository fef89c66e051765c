"""z⁺ where relevance reaches outputs below 0: the contributions that share each output's
sign, computed from |x|, |W| and the forward pass, or checked at run time when weights
decide whether relevance reaches such outputs."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_dtd.rules import engine, modifiers


def negative_side_when_reached(call, r, rule):
    """Sign-aware z⁺ on inputs x ≥ 0 where weights decide at run time whether relevance
    reaches outputs y_j < 0: z⁺_j = Σ_i x_i w⁺_ij by one map, z⁻_j = z_j − z⁺_j with z from
    the forward pass, and R_i = x_i (W⁺ᵀ s⁺ + W⁻ᵀ s⁻)_i with s⁺ = R/z⁺ where y ≥ 0 and
    s⁻ = R/z⁻ where y < 0 (bias terms b⁺, b⁻ with ``bias="include"``). Only the transposed
    map with W⁻ sits under ``tf.cond``: it runs when relevance reaches an output below 0.
    Where a bias gave y_j < 0 against z_j > 0, matching
    contributions below √eps of Σ_i x_i |w_ij| count as none, as in :func:`sign_matched`."""
    op, kernel, (x,) = call.node.linear_map, call.kernel, call.inputs
    zero = tf.constant(0, r.dtype)
    positive_kernel = modifiers.positive(kernel)
    z_positive = op.apply([x], positive_kernel)
    z_negative = call.linear - z_positive
    below = call.outputs[0] < 0
    r_negative = tf.where(below, r, zero)
    if call.bias is not None:  # z⁻ is a difference: below √eps of Σ|x w| it is rounding
        total = z_positive - z_negative
        r_negative = tf.where(-z_negative > _rounding_tolerance(r.dtype) * total, r_negative, zero)
    r_positive = tf.where(below, zero, r)
    s_positive = engine.per_denominator(
        r_positive, z_positive, engine.bias_of(call, rule, modifiers.positive), rule.stabilizer
    )
    s_negative = engine.per_denominator(
        r_negative, z_negative, engine.bias_of(call, rule, modifiers.negative), rule.stabilizer
    )
    (g,) = op.transpose([x], positive_kernel, s_positive)
    g = g + tf.cond(
        tf.reduce_any(tf.not_equal(r_negative, 0)),
        lambda: op.transpose([x], modifiers.negative(kernel), s_negative)[0],
        lambda: tf.zeros_like(g),
    )
    return [x * g]


def sign_matched(call, r, rule):
    """z⁺ with outputs of either sign: q_ij = (x_i w_ij)^σ_j, the contributions whose sign
    σ_j matches y_j's (+ at y_j = 0). With z = Σ_i x_i w_ij from the forward pass and
    A = Σ_i |x_i||w_ij|: Σ_i q_ij = σ_j (σ_j z_j + A_j)/2 and
    R_i = ½ [x_i (Wᵀ s)_i + |x_i| (|W|ᵀ σ s)_i], s_j = R_j / Σ_i q_ij,
    one map with |W| and two transposed maps. Where a bias gave y_j the sign opposite to
    z_j, matching contributions below √eps of A_j (none, up to rounding) count as none."""
    op, kernel, inputs = call.node.linear_map, call.kernel, list(call.inputs)
    magnitudes, kernel_magnitude = [tf.abs(x) for x in inputs], tf.abs(kernel)
    total = op.apply(magnitudes, kernel_magnitude)
    z = call.linear
    sign = tf.where(call.outputs[0] >= 0, tf.constant(1, z.dtype), tf.constant(-1, z.dtype))  # σ
    matched = sign * z + total  # 2 σ_j Σ_i q_ij ≥ 0
    if call.bias is not None:
        r = tf.where(matched > _rounding_tolerance(z.dtype) * total, r, tf.constant(0, r.dtype))
    if (rule.bias == "include" and call.bias is not None) or rule.stabilizer is not None:
        denominator = sign * matched / 2
        if rule.bias == "include" and call.bias is not None:
            denominator = denominator + (call.bias + sign * tf.abs(call.bias)) / 2  # b⁺ or b⁻
        s = tf.math.divide_no_nan(r, engine.stabilized(denominator, rule.stabilizer)) / 2
        along_w, along_magnitude = s, sign * s
    else:
        v = tf.math.divide_no_nan(r, matched)
        along_w, along_magnitude = sign * v, v
    via_w = op.transpose(inputs, kernel, along_w)
    via_magnitude = op.transpose(inputs, kernel_magnitude, along_magnitude)
    shares = [
        None if g is None else x * g + m * h for x, m, g, h in zip(inputs, magnitudes, via_w, via_magnitude)
    ]
    # every term has R_j's sign: where a sample's R ≥ 0, clip the rounding of cancelling terms
    smallest = tf.reduce_min(r, axis=list(range(1, r.shape.rank)), keepdims=True)
    floor = tf.where(smallest >= 0, tf.constant(0, r.dtype), tf.constant(-np.inf, r.dtype))
    return [None if t is None else tf.maximum(t, _per_sample(floor, t)) for t in shares]


def _rounding_tolerance(dtype):
    """√eps of a float dtype: sums that cancel to below this share of their terms are noise."""
    eps = 2.0**-7 if dtype == tf.bfloat16 else float(np.finfo(dtype.as_numpy_dtype).eps)
    return eps**0.5


def _per_sample(values, t):
    """One value per sample, shaped to broadcast against t."""
    return tf.reshape(values, [-1] + [1] * (t.shape.rank - 1))
