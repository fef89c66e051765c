"""The engine of the proportional rules: terms, denominators and their redistribution.

A rule's terms pair inputs a_t (x, x⁺, a bound, ...) with weight modifiers m_t (W, W⁺,
W², ...); the engine computes R_in = Σ_t a_t ⊙ Jᵀ_t (R / stab(z + b)), z = Σ_t J_t a_t, with
J_t the layer's linear map evaluated with m_t(W) (the gradient trick, written as a
transposed map). It stacks terms into one call of the map where the map allows it
(inputs and kernels side by side), evaluates terms on one row shared by all samples (a
first layer's support or bounds) once, and takes diagonal maps elementwise. A zero
denominator gives zero relevance, never NaN.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from keras_dtd.rules import modifiers

BIAS_POLICIES = ("ignore", "include")


def check_convention(rule, bias, stabilizer):
    if bias not in BIAS_POLICIES:
        raise ValueError(f"{rule}: bias must be one of {BIAS_POLICIES}, got {bias!r}.")
    if stabilizer is not None and not stabilizer > 0:
        raise ValueError(f"{rule}: stabilizer must be None or a positive number, got {stabilizer!r}.")


def require_linear(rule, node):
    if node.linear_map is None:
        raise ValueError(
            f"{type(rule).__name__} needs a layer with a linear map; layer '{node.path}' "
            f"({type(node.layer).__name__}) has none. Use PassThrough, Route or WinnerTakeAll."
        )


def bias_of(call, rule, modify=modifiers.identity):
    """modify(b) when ``rule`` includes the bias and the layer has one, else None."""
    if rule.bias != "include" or call.bias is None:
        return None
    return modify(call.bias)


def signs(call, up, down):
    """Terms x⁺·up(W) + x⁻·down(W), reduced to x·up(W) when the inputs are known to be ≥ 0."""
    if call.node.nonnegative_inputs and all(call.node.nonnegative_inputs):
        return [(list(call.inputs), up)]
    positive, negative = call.signed_inputs
    return [(positive, up), (negative, down)]


def split_signs(call, opposing=False):
    """Terms x⁺·W⁺ + x⁻·W⁻ (the positive contributions (x w)⁺); with ``opposing``,
    x⁺·W⁻ + x⁻·W⁺ (the negative ones)."""
    return (
        signs(call, modifiers.negative, modifiers.positive)
        if opposing
        else signs(call, modifiers.positive, modifiers.negative)
    )


def support(call):
    """Per input: 1 at real input entries, 0 at padding and hidden units (all ones when
    unknown), as one row (batch size 1) shared by all samples."""
    out = []
    for x, domain in zip(call.inputs, call.domains):
        support = (
            tf.ones((), x.dtype)
            if domain is None or domain.support is None
            else tf.cast(domain.support, x.dtype)
        )
        out.append(one_row_of(support, x))
    return out


def one_row_of(value, x):
    """``value`` broadcast to one sample of ``x``, with a static batch size of 1."""
    return tf.ensure_shape(
        tf.broadcast_to(value, tf.concat([[1], tf.shape(x)[1:]], 0)), [1] + x.shape[1:].as_list()
    )


def hidden_parts(call):
    """Per input: its hidden units (x where the domain marks them hidden, 0 elsewhere), or
    None when no input of the call mixes input values with hidden units."""
    if not any(d is not None and d.hidden is not None for d in call.domains):
        return None
    return [
        tf.zeros_like(x) if d is None or d.hidden is None else x * tf.cast(d.hidden, x.dtype)
        for x, d in zip(call.inputs, call.domains)
    ]


def hidden_zplus_terms(call):
    """z⁺ terms x⁺W⁺ + x⁻W⁻ of the hidden units of a first layer's mixed input."""
    hidden = hidden_parts(call)
    if hidden is None:
        return []
    return [
        ([tf.nn.relu(h) for h in hidden], modifiers.positive),
        ([modifiers.negative(h) for h in hidden], modifiers.negative),
    ]


def is_zero(t):
    value = tf.get_static_value(t)
    return value is not None and not value.any()


def redistribute(call, groups, r, stabilizer=None):
    """R_in = Σ_g c_g · Σ_t a_t ⊙ Jᵀ_t (R / stab(z_g + b_g)) over groups g = (terms, b_g, c_g):
    the terms t of a group share the denominator z_g = Σ_t J_t a_t plus b_g (None: no bias);
    c_g (None: 1) scales the group's share (α, −β) or masks the outputs it explains."""
    if call.node.linear_map.diagonal:
        return _redistribute_diagonal(call, groups, r, stabilizer)
    side_by_side = _side_by_side(call, groups)
    if side_by_side is not None:
        return _redistribute_side_by_side(call, groups, side_by_side, r, stabilizer)
    result = [None] * len(call.inputs)
    for terms, bias, factor in groups:
        found = _term_sum(call, terms)
        if found is None:
            continue
        z, transposed = found
        s = _scaled(per_denominator(r, z, bias, stabilizer), factor)
        result = [add(a, b) for a, b in zip(result, transposed(s))]
    return result


def per_denominator(r, z, bias, stabilizer):
    """R / stab(z + b) (b None: no bias), 0 where the denominator is 0."""
    return tf.math.divide_no_nan(r, stabilized(z if bias is None else z + bias, stabilizer))


def stabilized(d, epsilon):
    """d + ε·sign(d) with sign(0) = +1, or d when ε is None."""
    if epsilon is None:
        return d
    return d + epsilon * tf.where(d >= 0, tf.constant(1, d.dtype), tf.constant(-1, d.dtype))


def _scaled(t, factor):
    """t times a group's factor c_g: a mask of the outputs it explains, or its share α, −β."""
    if factor is None:
        return t
    if tf.is_tensor(factor) and factor.dtype == tf.bool:
        return tf.where(factor, t, tf.constant(0, t.dtype))
    return tf.cast(factor, t.dtype) * t


def _redistribute_diagonal(call, groups, r, stabilizer):
    """On a diagonal map (output j reads input j only) the sum over i has one term, so
    R_in = Σ_g c_g z_g R / stab(z_g + b_g) elementwise, z_g = Σ_t apply(a_t, W_t)."""
    op, result = call.node.linear_map, None
    for terms, bias, factor in groups:
        parts = [op.apply(a, w) for a, w in _weighted(call, terms)]
        if not parts:
            continue
        z = functools.reduce(tf.add, parts)  # broadcasts rows shared by all samples
        share = z * per_denominator(r, z, bias, stabilizer)
        result = add(result, _scaled(share, factor))
    return [result]


def _side_by_side(call, groups):
    """The kernels of groups that each pair the layer's one input with a kernel of their
    own (x·W⁺ and x·W⁻ for inputs ≥ 0), when the map can run them as one call; else None."""
    if call.kernel is None or len(call.inputs) != 1 or len(groups) < 2:
        return None
    if call.node.linear_map.output_stack_axes() is None:
        return None
    (x,) = call.inputs
    if any(len(terms) != 1 or len(terms[0][0]) != 1 or terms[0][0][0] is not x for terms, _, _ in groups):
        return None
    return [weights(call.kernel) for ((_, weights),), _, _ in groups]


def _redistribute_side_by_side(call, groups, kernels, r, stabilizer):
    """:func:`redistribute` for groups q_g = x·W_g: one map of x with the kernels side by
    side on the output axis gives every z_g, and one transposed map every Σ_g W_gᵀ s_g, so
    the input is read and the result written once."""
    op, (x,) = call.node.linear_map, call.inputs
    kernel_axis, output_axis = op.output_stack_axes()
    kernel = tf.concat(kernels, axis=kernel_axis)
    parts = tf.split(op.apply([x], kernel), len(groups), axis=output_axis)
    cotangents = []
    for z, (_, bias, factor) in zip(parts, groups):
        cotangents.append(_scaled(per_denominator(r, z, bias, stabilizer), factor))
    (g,) = op.transpose([x], kernel, tf.concat(cotangents, axis=output_axis))
    return [x * g]


_UNIT_ON_FIXED_WEIGHTS = (
    modifiers.identity,
    modifiers.positive,
    modifiers.square,
    modifiers.ones,
)  # m(1) = 1


def _weighted(call, terms):
    """The terms as (inputs a_t, modified weights W_t). A map with fixed weights (pooling,
    sums: W ≥ 0, equal within each output) applies them itself: there a modifier m acts as
    the factor m(1) on the term's inputs: W⁻ (0) drops the term, W, W⁺, W² and 1 leave it
    as it is, and any other modifier (a user's) scales its inputs by m(1)."""
    if call.kernel is not None:
        return [(term_inputs, weights(call.kernel)) for term_inputs, weights in terms]
    pieces = []
    for term_inputs, weights in terms:
        if weights is modifiers.negative:
            continue
        if weights not in _UNIT_ON_FIXED_WEIGHTS:
            factor = weights(tf.ones((), call.inputs[0].dtype))
            term_inputs = [factor * a for a in term_inputs]
        pieces.append((term_inputs, None))
    return pieces


def _term_sum(call, terms):
    """(z, transposed) for the terms (inputs a_t, weight modifier): z = Σ_t J_t a_t and
    ``transposed(s)``, per layer input, Σ_t a_t ⊙ Jᵀ_t s; None if no term contributes.
    Terms whose inputs are one row shared by all samples (a first layer's support or
    bounds) are evaluated on that row alone and transposed at the batch's shape."""
    pieces = _weighted(call, terms)
    if not pieces:
        return None
    shared = [p for p in pieces if _one_row(p[0], call)]
    per_sample = [p for p in pieces if not _one_row(p[0], call)]
    found = [
        _stacked(call, group, like) for group, like in ((per_sample, None), (shared, call.inputs)) if group
    ]
    z = functools.reduce(tf.add, [z for z, _ in found])  # broadcasts the shared rows' z

    def transposed(s):
        out = [None] * len(call.inputs)
        for _, transposed_group in found:
            out = [add(a, b) for a, b in zip(out, transposed_group(s))]
        return out

    return z, transposed


def _one_row(term_inputs, call):
    """Whether a term's inputs are one row shared by all samples of a larger batch."""
    return all(a.shape.rank and a.shape[0] == 1 for a in term_inputs) and any(
        x.shape[0] != 1 for x in call.inputs
    )


def _stacked(call, pieces, shaped_like=None):
    """(z, transposed) of pieces (a_t, W_t) as in :func:`_term_sum`. A one-input map that
    stacks runs all pieces as one call on concatenated inputs and kernels, and one
    transposed call. ``shaped_like``: the tensors whose shapes Jᵀ s takes (default: a_t's)."""
    op, n_inputs = call.node.linear_map, len(call.inputs)
    axes = op.stack_axes()
    if len(pieces) > 1 and axes is not None:
        input_axis, kernel_axis, output_axis = axes
        a = tf.concat([term_inputs[0] for term_inputs, _ in pieces], axis=input_axis)
        kernel = tf.concat([k for _, k in pieces], axis=kernel_axis)
        z = op.apply([a], kernel)
        if output_axis is not None:
            z = tf.add_n(tf.split(z, len(pieces), axis=output_axis))
        like = a if shaped_like is None else tf.concat([shaped_like[0]] * len(pieces), axis=input_axis)

        def transposed_stacked(s):
            if output_axis is not None:
                s = tf.concat([s] * len(pieces), axis=output_axis)
            (g,) = op.transpose([like], kernel, s)
            parts = tf.split(g, len(pieces), axis=input_axis)
            return [tf.add_n([term_inputs[0] * part for (term_inputs, _), part in zip(pieces, parts)])]

        return z, transposed_stacked
    z = tf.add_n([op.apply(term_inputs, k) for term_inputs, k in pieces])

    def transposed(s):
        out = [None] * n_inputs
        for term_inputs, k in pieces:
            grads = op.transpose(term_inputs if shaped_like is None else shaped_like, k, s)
            out = [add(o, None if g is None else a * g) for o, a, g in zip(out, term_inputs, grads)]
        return out

    return z, transposed


def zeros_for_none(call, relevance):
    return [tf.zeros_like(x) if g is None else g for x, g in zip(call.inputs, relevance)]


def add(a, b):
    if a is None:
        return b
    return a if b is None else a + b
