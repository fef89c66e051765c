"""Relevance rules: how a layer hands the relevance of its outputs to its inputs.

Notation: x layer input, w weights, z_j = Σ_i x_i w_ij, R_j relevance of output j.
Proportional rules redistribute R_i = Σ_j q_ij / Σ_i' q_i'j · R_j and are computed
with the gradient trick: R_in = Σ_t a_t ⊙ Jᵀ_t (R / z), z = Σ_t J_t a_t, where each
term t pairs an input a_t (x, x⁺, the bound l, ...) with a weight variant
(W, W⁺, W², ...) and J_t is the layer's linear map with that variant. A zero
denominator gives zero relevance, never NaN.

Every rule works on any node with a linear map (Dense, Conv, depthwise, transposed,
LayerNormalization, average pooling, Add, BatchNormalization); for maps with fixed
non-negative weights (pooling, sums) W⁺ = W, W⁻ = 0 and W² ∝ W within each window.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Domain:
    """What is known about a layer input reached from a model input through layers that
    only move, pool or rescale values (the input of a first kernel layer):
    ``support`` is 1 where an entry is a real input value and 0 where it is padding or
    a hidden unit; ``low``/``high`` bound the input values (from the analyzer's
    ``input_range``; 0 elsewhere); ``hidden`` is 1 at hidden units when the tensor mixes
    them with input values (e.g. ``Concatenate()([input, conv_output])``), else None.
    Tensors have one sample's shape with batch size 1; missing parts are None."""

    support: Any = None
    low: Any = None
    high: Any = None
    hidden: Any = None


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One call of a layer in the forward pass, as a rule sees it.

    ``node``: the traced node (layer, kind, linear map ``node.op``); ``inputs``/``outputs``:
    its tensors; ``kernel``, ``bias``: the weights W of ``node.op`` in this call (None if
    fixed) and its bias b (None if none, else broadcastable against the outputs);
    ``linear``: z_j = Σ_i x_i w_ij as computed in the forward pass (before bias and
    activation; None for nodes without a linear map);
    ``domains``: a :class:`Domain` or None per input; ``vjp(cotangents)``: the
    vector–Jacobian product of the recorded forward call, one result per input.
    """

    node: Any
    inputs: list
    outputs: list
    kernel: Any
    bias: Any
    linear: Any
    domains: list
    vjp: Callable

    @functools.cached_property
    def signed_inputs(self):
        """(x⁺ per input, x⁻ per input), computed once per call."""
        return [tf.nn.relu(x) for x in self.inputs], [_negative(x) for x in self.inputs]


def _support(call):
    """Per input: 1 at real input entries, 0 at padding and hidden units (all ones when
    unknown), as one row (batch size 1) shared by all samples."""
    out = []
    for x, domain in zip(call.inputs, call.domains):
        support = (
            tf.ones((), x.dtype)
            if domain is None or domain.support is None
            else tf.cast(domain.support, x.dtype)
        )
        out.append(_one_row_of(support, x))
    return out


def _one_row_of(value, x):
    """``value`` broadcast to one sample of ``x``, with a static batch size of 1."""
    return tf.ensure_shape(
        tf.broadcast_to(value, tf.concat([[1], tf.shape(x)[1:]], 0)), [1] + x.shape[1:].as_list()
    )


def _hidden_parts(call):
    """Per input: its hidden units (x where the domain marks them hidden, 0 elsewhere), or
    None when no input of the call mixes input values with hidden units."""
    if not any(d is not None and d.hidden is not None for d in call.domains):
        return None
    return [
        tf.zeros_like(x) if d is None or d.hidden is None else x * tf.cast(d.hidden, x.dtype)
        for x, d in zip(call.inputs, call.domains)
    ]


def _hidden_zplus_terms(call):
    """z⁺ terms x⁺W⁺ + x⁻W⁻ of the hidden units of a first layer's mixed input."""
    hidden = _hidden_parts(call)
    if hidden is None:
        return []
    return [([tf.nn.relu(h) for h in hidden], _positive), ([_negative(h) for h in hidden], _negative)]


class Rule:
    """Base class: ``relevance(call, relevance)`` maps the relevance of each output of a
    :class:`LayerCall` to one relevance tensor (or None) per input. ``uses_vjp``: whether
    it calls ``call.vjp`` (the forward call is then recorded on a tape); ``needs_vjp(node)``
    may say so per node."""

    uses_vjp = True

    def needs_vjp(self, node):
        """Whether ``relevance`` calls ``call.vjp`` on this node (default: ``uses_vjp``)."""
        return self.uses_vjp

    def relevance(self, call, relevance):  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class PassThrough(Rule):
    """R_in = R_out, for elementwise layers (ReLU, Dropout, Rescaling, a stripped softmax)."""

    uses_vjp = False

    def relevance(self, call, relevance):
        (x,) = call.inputs
        (r,) = relevance
        if x.shape.rank is not None and r.shape.rank is not None and x.shape[1:] != r.shape[1:]:
            raise ValueError(
                f"PassThrough needs equal input and output shapes; layer '{call.node.path}' maps "
                f"{x.shape} to {r.shape}. Use keras_dtd.rules.Route for layers that move values."
            )
        return [r]


class Route(Rule):
    """R_in = Jᵀ R_out with J the layer's 0/1 Jacobian: each input receives the relevance
    of the outputs it is copied to (Flatten, Reshape, Permute, padding, cropping), and a
    Concatenate splits relevance back onto its inputs. On any other layer: the gradient
    (iNNvestigate's treatment of Add, which copies R to each summand)."""

    def needs_vjp(self, node):
        return self.uses_vjp and _concatenated_sizes(node) is None

    def relevance(self, call, relevance):
        sizes = _concatenated_sizes(call.node)
        if sizes is not None:  # a Concatenate: split, no VJP
            return tf.split(relevance[0], sizes, axis=call.node.layer.axis)
        grads = call.vjp(list(relevance))
        return [tf.zeros_like(x) if g is None else g for x, g in zip(call.inputs, grads)]


def _concatenated_sizes(node):
    """The sizes of a Concatenate layer's inputs along its axis, when all are known; else None."""
    if not isinstance(node.layer, keras.layers.Concatenate) or not node.input_shapes:
        return None
    sizes = [shape[node.layer.axis] for shape in node.input_shapes]
    return None if any(size is None for size in sizes) else sizes


class WinnerTakeAll(Route):
    """Max pooling, Maximum, Minimum: the whole relevance R_j of a window goes to its
    winning input (R_i = Σ_j [i = argmax_window(j)] R_j)."""


class Gate(Rule):
    """A multiplicative gate y = x ⊙ g (squeeze-excitation, gated units; Arras et al. 2017):
    the signal x keeps all relevance, R_x = R_y (summed over axes x was broadcast along),
    and the gates g get none."""

    uses_vjp = False

    def relevance(self, call, relevance):
        (r,) = relevance
        k = call.node.signal
        if k is None:
            raise ValueError(
                f"Layer '{call.node.path}' has no known signal input; name its gate with gates=...."
            )
        x = call.inputs[k]
        with tf.GradientTape() as tape:
            tape.watch(x)
            spread = tf.broadcast_to(x, tf.shape(r))
        out = [None] * len(call.inputs)
        out[k] = tape.gradient(spread, x, output_gradients=r)
        return out


class EmbeddingSum(Rule):
    """Embedding: the relevance of a token is that of its vector, R_t = Σ_d R_(t,d);
    the map has the shape of the integer input."""

    uses_vjp = False

    def relevance(self, call, relevance):
        (r,) = relevance
        return [tf.reduce_sum(r, axis=-1)]


def _identity(w):
    return w


def _positive(w):
    return tf.nn.relu(w)


def _negative(w):
    return tf.minimum(w, tf.constant(0, w.dtype))


def _square(w):
    return tf.square(w)


def _ones(w):
    return tf.ones_like(w)


_UNIT_ON_FIXED_WEIGHTS = (_identity, _positive, _square, _ones)  # m(1) = 1


def _signs(call, up, down):
    """Terms x⁺·up(W) + x⁻·down(W), reduced to x·up(W) when the inputs are known to be ≥ 0."""
    if call.node.nonnegative_inputs and all(call.node.nonnegative_inputs):
        return [(list(call.inputs), up)]
    positive, negative = call.signed_inputs
    return [(positive, up), (negative, down)]


def _split_signs(call, opposing=False):
    """Terms x⁺·W⁺ + x⁻·W⁻ (the positive contributions (x w)⁺); with ``opposing``,
    x⁺·W⁻ + x⁻·W⁺ (the negative ones)."""
    return _signs(call, _negative, _positive) if opposing else _signs(call, _positive, _negative)


BIAS_POLICIES = ("ignore", "include")


def _check_convention(rule, bias, stabilizer):
    if bias not in BIAS_POLICIES:
        raise ValueError(f"{rule}: bias must be one of {BIAS_POLICIES}, got {bias!r}.")
    if stabilizer is not None and not stabilizer > 0:
        raise ValueError(f"{rule}: stabilizer must be None or a positive number, got {stabilizer!r}.")


def _per_denominator(r, z, bias, stabilizer):
    """R / stab(z + b) (b None: no bias), 0 where the denominator is 0."""
    return tf.math.divide_no_nan(r, _stabilized(z if bias is None else z + bias, stabilizer))


def _stabilized(d, epsilon):
    """d + ε·sign(d) with sign(0) = +1, or d when ε is None."""
    if epsilon is None:
        return d
    return d + epsilon * tf.where(d >= 0, tf.constant(1, d.dtype), tf.constant(-1, d.dtype))


class Proportional(Rule):
    """Base of the rules R_i = Σ_j q_ij / (Σ_i' q_i'j + b̃_j) · R_j; subclasses list the
    terms of q and the bias term b̃_j (with ``bias="include"``; none with "ignore").
    ``stabilizer`` ε: the denominator d becomes d + ε·sign(d), sign(0) = +1 (zennit's
    convention); None: a zero denominator gives zero relevance."""

    uses_vjp = False
    bias = "ignore"
    stabilizer = None

    def terms(self, call):
        raise NotImplementedError

    def bias_term(self, call):
        """b̃_j, broadcastable against the outputs, or None."""
        return None

    def relevance(self, call, relevance):
        _require_linear(self, call.node)
        (r,) = relevance
        return _redistribute(call, [(self.terms(call), self.bias_term(call), None)], r, self.stabilizer)


def _bias(call, rule, modify=_identity):
    """modify(b) when ``rule`` includes the bias and the layer has one, else None."""
    if rule.bias != "include" or call.bias is None:
        return None
    return modify(call.bias)


def _require_linear(rule, node):
    if node.op is None:
        raise ValueError(
            f"{type(rule).__name__} needs a layer with a linear map; layer '{node.path}' "
            f"({type(node.layer).__name__}) has none. Use PassThrough, Route or WinnerTakeAll."
        )


def _redistribute(call, groups, r, stabilizer=None):
    """R_in = Σ_g c_g · Σ_t a_t ⊙ Jᵀ_t (R / stab(z_g + b_g)) over groups g = (terms, b_g, c_g):
    the terms t of a group share the denominator z_g = Σ_t J_t a_t plus b_g (None: no bias);
    c_g (None: 1) scales the group's share (α, −β) or masks the outputs it explains."""
    if call.node.op.diagonal:
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
        s = _scaled(_per_denominator(r, z, bias, stabilizer), factor)
        result = [_add(a, b) for a, b in zip(result, transposed(s))]
    return result


def _side_by_side(call, groups):
    """The kernels of groups that each pair the layer's one input with a kernel of their
    own (x·W⁺ and x·W⁻ for inputs ≥ 0), when the map can run them as one call; else None."""
    if call.kernel is None or len(call.inputs) != 1 or len(groups) < 2:
        return None
    if call.node.op.output_stack_axes() is None:
        return None
    (x,) = call.inputs
    if any(len(terms) != 1 or len(terms[0][0]) != 1 or terms[0][0][0] is not x for terms, _, _ in groups):
        return None
    return [weights(call.kernel) for ((_, weights),), _, _ in groups]


def _redistribute_side_by_side(call, groups, kernels, r, stabilizer):
    """:func:`_redistribute` for groups q_g = x·W_g: one map of x with the kernels side by
    side on the output axis gives every z_g, and one transposed map every Σ_g W_gᵀ s_g, so
    the input is read and the result written once."""
    op, (x,) = call.node.op, call.inputs
    kernel_axis, output_axis = op.output_stack_axes()
    kernel = tf.concat(kernels, axis=kernel_axis)
    parts = tf.split(op.apply([x], kernel), len(groups), axis=output_axis)
    cotangents = []
    for z, (_, bias, factor) in zip(parts, groups):
        cotangents.append(_scaled(_per_denominator(r, z, bias, stabilizer), factor))
    (g,) = op.transpose([x], kernel, tf.concat(cotangents, axis=output_axis))
    return [x * g]


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
    op, result = call.node.op, None
    for terms, bias, factor in groups:
        parts = [op.apply(a, w) for a, w in _weighted(call, terms)]
        if not parts:
            continue
        z = functools.reduce(tf.add, parts)  # broadcasts rows shared by all samples
        share = z * _per_denominator(r, z, bias, stabilizer)
        result = _add(result, _scaled(share, factor))
    return [result]


def _weighted(call, terms):
    """The terms as (inputs a_t, modified weights W_t). A map with fixed weights (pooling,
    sums: W ≥ 0, equal within each output) applies them itself: there a modifier m acts as
    the factor m(1) on the term's inputs: W⁻ (0) drops the term, W, W⁺, W² and 1 leave it
    as it is, and any other modifier (a user's) scales its inputs by m(1)."""
    if call.kernel is not None:
        return [(term_inputs, weights(call.kernel)) for term_inputs, weights in terms]
    pieces = []
    for term_inputs, weights in terms:
        if weights is _negative:
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
            out = [_add(a, b) for a, b in zip(out, transposed_group(s))]
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
    op, n_inputs = call.node.op, len(call.inputs)
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
            out = [_add(o, None if g is None else a * g) for o, a, g in zip(out, term_inputs, grads)]
        return out

    return z, transposed


class Z(Proportional):
    """LRP-0: q_ij = x_i w_ij; with ``bias="include"`` the denominator is z_j + b_j."""

    def __init__(self, bias="ignore", stabilizer=None):
        _check_convention("Z", bias, stabilizer)
        self.bias = bias
        self.stabilizer = stabilizer

    def terms(self, call):
        return [(list(call.inputs), _identity)]

    def bias_term(self, call):
        return _bias(call, self)


class Epsilon(Z):
    """LRP-ε: q_ij = x_i w_ij, denominator d_j + ε·sign(d_j) with d_j = z_j + b_j
    (``bias="include"``, the default; z_j with "ignore") and sign(0) = +1."""

    def __init__(self, epsilon=1e-7, bias="include"):
        _check_convention("Epsilon", bias, epsilon)
        self.epsilon = epsilon
        self.bias = bias

    @property
    def stabilizer(self):
        return self.epsilon


class ZPlus(Proportional):
    """DTD z⁺: q_ij = (x_i w_ij)⁺ = x_i⁺ w_ij⁺ + x_i⁻ w_ij⁻; for ReLU inputs x_i w_ij⁺. The
    bias is ignored (``bias="include"``: b_j⁺ joins the denominator, as in zennit).
    Sign-aware where relevance reaches an output y_j < 0 (a linear bottleneck, a
    normalization, a smooth activation): there q_ij = (x_i w_ij)⁻ (denominator + b_j⁻), the
    contributions that made y_j negative, so the map stays positive and conservative. On
    ReLU networks relevance only reaches y_j > 0, and this is the paper's z⁺. (Where a bias
    gives y_j the sign opposite to Σ_i x_i w_ij, matching contributions below √eps of
    Σ_i |x_i w_ij| count as none: see :func:`_sign_matched`.)"""

    def __init__(self, bias="ignore", stabilizer=None):
        _check_convention("ZPlus", bias, stabilizer)
        self.bias = bias
        self.stabilizer = stabilizer

    def terms(self, call):
        return _split_signs(call)

    def relevance(self, call, relevance):
        _require_linear(self, call.node)
        (r,) = relevance
        node = call.node

        def positive_only():
            positive = (_split_signs(call), _bias(call, self, _positive), None)
            return _redistribute(call, [positive], r, self.stabilizer)

        if node.rectified:  # relevance reaches no output below 0
            return positive_only()
        kernel_map = call.kernel is not None and not node.op.diagonal
        nonnegative = all(node.nonnegative_inputs)
        if node.maybe_rectified and kernel_map and nonnegative:  # weights decide at run time
            return _negative_side_when_reached(call, r, self)

        if kernel_map and not nonnegative:

            def both_signs():  # x⁺ and x⁻ terms would double every map of both sides: |x|, |W| instead
                return _sign_matched(call, r, self)
        else:  # built here, not under tf.cond: x⁺ and x⁻ (cached on the call) serve both branches
            below = call.outputs[0] < 0
            negative = (_split_signs(call, opposing=True), _bias(call, self, _negative), below)

            def both_signs():
                positive = (_split_signs(call), _bias(call, self, _positive), ~below)
                return _redistribute(call, [positive, negative], r, self.stabilizer)

        if not node.maybe_rectified:
            return both_signs()
        # whether relevance reaches outputs below 0 depends on weights: check at run time
        reached = tf.reduce_any(tf.logical_and(call.outputs[0] < 0, tf.not_equal(r, 0)))
        return tf.cond(
            reached,
            lambda: _zeros_for_none(call, both_signs()),
            lambda: _zeros_for_none(call, positive_only()),
        )


def _negative_side_when_reached(call, r, rule):
    """Sign-aware z⁺ on inputs x ≥ 0 where weights decide at run time whether relevance
    reaches outputs y_j < 0: z⁺_j = Σ_i x_i w⁺_ij by one map, z⁻_j = z_j − z⁺_j with z from
    the forward pass, and R_i = x_i (W⁺ᵀ s⁺ + W⁻ᵀ s⁻)_i with s⁺ = R/z⁺ where y ≥ 0 and
    s⁻ = R/z⁻ where y < 0 (bias terms b⁺, b⁻ with ``bias="include"``). Only the transposed
    map with W⁻ sits under ``tf.cond``: it runs when relevance reaches an output below 0.
    Where a bias gave y_j < 0 against z_j > 0, matching
    contributions below √eps of Σ_i x_i |w_ij| count as none, as in :func:`_sign_matched`."""
    op, kernel, (x,) = call.node.op, call.kernel, call.inputs
    zero = tf.constant(0, r.dtype)
    positive_kernel = _positive(kernel)
    z_positive = op.apply([x], positive_kernel)
    z_negative = call.linear - z_positive
    below = call.outputs[0] < 0
    r_negative = tf.where(below, r, zero)
    if call.bias is not None:  # z⁻ is a difference: below √eps of Σ|x w| it is rounding
        total = z_positive - z_negative
        r_negative = tf.where(-z_negative > _rounding_tolerance(r.dtype) * total, r_negative, zero)
    r_positive = tf.where(below, zero, r)
    s_positive = _per_denominator(r_positive, z_positive, _bias(call, rule, _positive), rule.stabilizer)
    s_negative = _per_denominator(r_negative, z_negative, _bias(call, rule, _negative), rule.stabilizer)
    (g,) = op.transpose([x], positive_kernel, s_positive)
    g = g + tf.cond(
        tf.reduce_any(tf.not_equal(r_negative, 0)),
        lambda: op.transpose([x], _negative(kernel), s_negative)[0],
        lambda: tf.zeros_like(g),
    )
    return [x * g]


def _zeros_for_none(call, relevance):
    return [tf.zeros_like(x) if g is None else g for x, g in zip(call.inputs, relevance)]


def _sign_matched(call, r, rule):
    """z⁺ with outputs of either sign: q_ij = (x_i w_ij)^σ_j, the contributions whose sign
    σ_j matches y_j's (+ at y_j = 0). With z = Σ_i x_i w_ij from the forward pass and
    A = Σ_i |x_i||w_ij|: Σ_i q_ij = σ_j (σ_j z_j + A_j)/2 and
    R_i = ½ [x_i (Wᵀ s)_i + |x_i| (|W|ᵀ σ s)_i], s_j = R_j / Σ_i q_ij,
    one map with |W| and two transposed maps. Where a bias gave y_j the sign opposite to
    z_j, matching contributions below √eps of A_j (none, up to rounding) count as none."""
    op, kernel, inputs = call.node.op, call.kernel, list(call.inputs)
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
        s = tf.math.divide_no_nan(r, _stabilized(denominator, rule.stabilizer)) / 2
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


class WSquare(Proportional):
    """DTD w²: q_ij = w_ij² (first layer, unbounded input in ℝ^d); padding added by a
    layer such as ZeroPadding2D is not an input and gets nothing; hidden units mixed
    into the input (a Concatenate of input and features) get z⁺ terms x⁺w⁺ + x⁻w⁻.
    ``bias="include"``: b_j² joins the denominator (zennit)."""

    def __init__(self, bias="ignore", stabilizer=None):
        _check_convention("WSquare", bias, stabilizer)
        self.bias = bias
        self.stabilizer = stabilizer

    def terms(self, call):
        return [(_support(call), _square)] + _hidden_zplus_terms(call)

    def bias_term(self, call):
        return _bias(call, self, _square)


class Flat(Proportional):
    """LRP-flat: q_ij = 1 for every connected input i (padding excluded, as for w²;
    hidden units mixed into the input get z⁺ terms); the bias is ignored."""

    def __init__(self, stabilizer=None):
        _check_convention("Flat", "ignore", stabilizer)
        self.stabilizer = stabilizer

    def terms(self, call):
        return [(_support(call), _ones)] + _hidden_zplus_terms(call)


class Gamma(Proportional):
    """LRP-γ. Textbook (``sign_aware=False``): q_ij = x_i (w_ij + γ w_ij⁺), denominator
    + b_j + γ b_j⁺ with ``bias="include"``. zennit's form (``sign_aware=True``): where the
    output z_j = Σ_i x_i w_ij + b_j > 0, q_ij = x_i⁺ w↑_ij + x_i⁻ w↓_ij (+ b_j + γ b_j⁺);
    where z_j < 0, q_ij = x_i⁺ w↓_ij + x_i⁻ w↑_ij (+ b_j + γ b_j⁻); none where z_j = 0;
    w↑ = w + γw⁺, w↓ = w + γw⁻: the contributions sharing z_j's sign are boosted."""

    def __init__(self, gamma=0.25, bias="ignore", stabilizer=None, sign_aware=False):
        _check_convention("Gamma", bias, stabilizer)
        self.gamma = gamma
        self.bias = bias
        self.stabilizer = stabilizer
        self.sign_aware = sign_aware

    def _up(self, w):
        return w + self.gamma * tf.nn.relu(w)

    def _down(self, w):
        return w + self.gamma * _negative(w)

    def terms(self, call):
        return [(list(call.inputs), self._up)]

    def bias_term(self, call):
        return _bias(call, self, self._up)

    def relevance(self, call, relevance):
        if not self.sign_aware:
            return super().relevance(call, relevance)
        _require_linear(self, call.node)
        (r,) = relevance
        z = call.outputs[0]
        if call.node.activation != "linear":  # the pre-activation, from the forward pass
            z = call.linear if call.bias is None else call.linear + call.bias
        groups = [
            (_signs(call, self._up, self._down), _bias(call, self, self._up), z > 0),
            (_signs(call, self._down, self._up), _bias(call, self, self._down), z < 0),
        ]
        return _redistribute(call, groups, r, self.stabilizer)


class ZBox(Proportional):
    """DTD z^B: q_ij = x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻ for inputs bounded by l ≤ x ≤ h
    (the bias cancels).

    ``low``/``high`` (scalars or arrays broadcastable to one sample of the layer's
    input) may be given here; by default they come from the analyzer's ``input_range``.
    Hidden units mixed into the input get (l, h) = (min(x, 0), max(x, 0)), which makes
    q_ij = x_i⁺ w_ij⁺ + x_i⁻ w_ij⁻ there: exactly z⁺.
    """

    def __init__(self, low=None, high=None, stabilizer=None):
        if (low is None) != (high is None):
            raise ValueError("ZBox needs both low and high, or neither.")
        _check_convention("ZBox", "ignore", stabilizer)
        self.low = low
        self.high = high
        self.stabilizer = stabilizer

    def terms(self, call):
        (x,) = call.inputs
        domain = call.domains[0]
        if self.low is not None:
            low, high = tf.cast(self.low, x.dtype), tf.cast(self.high, x.dtype)
        elif domain is not None and domain.low is not None:
            low, high = domain.low, domain.high
        else:
            raise ValueError(
                f"The z^B rule on layer '{call.node.path}' needs input bounds: pass "
                "input_range=(low, high) to the analyzer or use ZBox(low, high)."
            )
        hidden = _hidden_parts(call)
        if hidden is not None:
            low = low + _negative(hidden[0])
            high = high + tf.nn.relu(hidden[0])
        terms = [([x], _identity)]
        for bound, weights in ((low, _positive), (high, _negative)):
            if not _is_zero(bound):  # a zero bound adds nothing to q (e.g. low = 0 for pixels)
                per_sample = bound.shape.rank and bound.shape[0] != 1  # hidden units' bounds: per sample
                terms.append(
                    (
                        [-(tf.broadcast_to(bound, tf.shape(x)) if per_sample else _one_row_of(bound, x))],
                        weights,
                    )
                )
        return terms


def _is_zero(t):
    value = tf.get_static_value(t)
    return value is not None and not value.any()


class AlphaBeta(Rule):
    """LRP-αβ: R_i = Σ_j (α q⁺_ij / Σ_i' q⁺_i'j − β q⁻_ij / Σ_i' q⁻_i'j) R_j with
    q⁺ = x⁺w⁺ + x⁻w⁻ and q⁻ = x⁺w⁻ + x⁻w⁺ (α − β = 1 keeps it conservative).
    ``bias``: "ignore"; "include": b_j⁺ joins the positive, b_j⁻ the negative denominator
    (zennit); "both": the whole b_j joins both (iNNvestigate 2.1.2)."""

    uses_vjp = False

    def __init__(self, alpha=1.0, beta=0.0, bias="ignore", stabilizer=None):
        if abs(alpha - beta - 1.0) > 1e-12:
            raise ValueError(f"AlphaBeta needs alpha - beta = 1, got alpha={alpha}, beta={beta}.")
        _check_convention("AlphaBeta", "ignore" if bias == "both" else bias, stabilizer)
        self.alpha = alpha
        self.beta = beta
        self.bias = bias
        self.stabilizer = stabilizer

    def _bias_parts(self, call):
        if self.bias == "ignore" or call.bias is None:
            return None, None
        if self.bias == "both":
            return call.bias, call.bias
        return _positive(call.bias), _negative(call.bias)

    def relevance(self, call, relevance):
        _require_linear(self, call.node)
        (r,) = relevance
        positive_bias, negative_bias = self._bias_parts(call)
        groups = [(_split_signs(call), positive_bias, self.alpha)]
        if self.beta:
            groups.append((_split_signs(call, opposing=True), negative_bias, -self.beta))
        return _redistribute(call, groups, r, self.stabilizer)


class ZPlusFast(Proportional):
    """iNNvestigate's z_plus_fast: q_ij = x_i w_ij⁺ whatever the sign of x_i (z⁺ for inputs
    known to be ≥ 0), bias ignored."""

    def terms(self, call):
        return [(list(call.inputs), _positive)]


def _is_relu(node):
    return node.activation == "relu"


class Deconvnet(Rule):
    """Deconvnet (Zeiler & Fergus 2014): a ReLU passes relu(R) back whatever its input was;
    a layer with a fused ReLU returns Wᵀ relu(R); every other layer the gradient Jᵀ R."""

    def relevance(self, call, relevance):
        (r,) = relevance
        if not _is_relu(call.node):
            return Route().relevance(call, relevance)
        if call.node.op is None:
            return [tf.nn.relu(r)]
        return call.node.op.transpose(call.inputs, call.kernel, tf.nn.relu(r))


class GuidedBackprop(Rule):
    """Guided backpropagation (Springenberg et al. 2015): a ReLU passes relu(R) ⊙ [z > 0]
    back (the gradient's mask and the deconvnet's); every other layer the gradient Jᵀ R."""

    def relevance(self, call, relevance):
        (r,) = relevance
        if not _is_relu(call.node):
            return Route().relevance(call, relevance)
        return call.vjp([tf.nn.relu(r)])


def _add(a, b):
    if a is None:
        return b
    return a if b is None else a + b
