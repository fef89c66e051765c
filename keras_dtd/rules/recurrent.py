"""Relevance through recurrent layers: LSTM, GRU, SimpleRNN and Bidirectional, as Arras,
Montavon, Müller and Samek (2017) propagate it, run backwards in time by ``tf.scan``
inside the compiled pass.

A cell is the small graph of pieces the other rules know:
- linear maps of (x_t, h_{t−1}) onto a pre-activation z, under the composite's rule for
  kernel layers (``linear``); its denominator is the full pre-activation, biases included
  where that rule includes them (ε: z_j + b_j + ε·sign(z_j + b_j), sign(0) = +1);
- sums (the LSTM cell state c_t = f⊙c_{t−1} + i⊙g, the GRU state h_t = z⊙h_{t−1} + (1−z)⊙ĥ)
  under its rule for sums (``sum``);
- gates (sigmoid gates, the GRU's reset gate): signal-take-all, a gate gets no relevance
  and the signal it multiplies keeps all of it;
- tanh: relevance passes through it unchanged.
"""

from __future__ import annotations

import tensorflow as tf

from keras_dtd.core.domains import Domain
from keras_dtd.core.kinds import Kind
from keras_dtd.core.linear_maps import LinearMap, MatrixMap, WeightedSumMap
from keras_dtd.rules.base import Rule, inner_relevance


class Recurrent(Rule):
    """A recurrent layer (LSTM, GRU, SimpleRNN, or a Bidirectional of them) explained step by
    step, from the last step to the first.

    LSTM (Keras gate order i, f, c, o): c_t = f⊙c_{t−1} + i⊙g, g = tanh(x W_c + h_{t−1} U_c + b_c),
    h_t = o⊙tanh(c_t): R_{c_t} = R_{h_t} + (relevance c_t passes on to step t+1), split over
    f⊙c_{t−1} and i⊙g by ``sum``; g's share goes to x_t and h_{t−1} through the c-gate rows by
    ``linear``; no relevance flows through the i, f and o weights.
    GRU (order z, r, h): h_t = z⊙h_{t−1} + (1−z)⊙ĥ, split by ``sum``; ĥ = tanh(x W_h + b_in +
    r⊙(h_{t−1} U_h + b_rec)) passes its share to x (contributions x_i W_ij) and h_{t−1}
    (r_j h_k U_kj) by ``linear``; with ``reset_after=False``, ĥ = tanh(x W_h + b + (r⊙h_{t−1}) U_h),
    contributions (r_k h_k) U_kj.
    SimpleRNN: h_t = tanh(x W + h_{t−1} U + b), ``linear`` on both inputs.
    Bidirectional: concat splits the relevance of the two directions, sum and ave share it by
    ``sum``; each direction is explained as above.
    Masked steps (``mask_zero=True``, a ``Masking`` layer) carry the state over, so they carry
    relevance over and get none themselves.

    Args:
      linear: the rule of the linear maps inside a cell (e.g. ``Epsilon(0.001)``, ``ZPlus()``).
      sum: the rule of the sums inside a cell.
      first: where the layer reads the model's input values (a first layer), the rule of its
        cell's maps there, e.g. DTD's w² or z^B: the input's entries get it, the state's get
        z⁺ terms as hidden units; None: ``linear`` everywhere.
    """

    uses_vjp = False

    def __init__(self, linear: Rule, sum: Rule, first: Rule | None = None):
        self.linear = linear
        self.sum = sum
        self.first = first

    def relevance(self, call, relevance):
        x = call.inputs[0]
        masks = [t for t in call.inputs[1:] if t.dtype == tf.bool]
        mask = masks[0] if masks else None
        domain = call.domains[0] if self.first is not None else None
        (r,) = relevance
        layer, path = call.node.layer, call.node.path
        if not hasattr(layer, "forward_layer"):
            return [_explain(self, layer, path, x, mask, domain, r)] + [None] * (len(call.inputs) - 1)
        units = layer.forward_layer.cell.units
        if layer.merge_mode == "concat":
            r_forward, r_backward = r[..., :units], r[..., units:]
        else:  # sum, ave: share R by the two directions' contributions to the merged output
            y = [sub(x, mask=mask, training=False) for sub in (layer.forward_layer, layer.backward_layer)]
            if layer.backward_layer.return_sequences:
                y[1] = tf.reverse(y[1], [1])
            if layer.merge_mode == "ave":
                y = [0.5 * t for t in y]
            r_forward, r_backward = _sum_share(self.sum, layer, path, y, r)
        if layer.backward_layer.return_sequences:  # Keras flips the backward outputs back in time
            r_backward = tf.reverse(r_backward, [1])
        forward = _explain(self, layer.forward_layer, path + "/forward", x, mask, domain, r_forward)
        backward = _explain(self, layer.backward_layer, path + "/backward", x, mask, domain, r_backward)
        return [forward + backward] + [None] * (len(call.inputs) - 1)


def _explain(rule, layer, path, x, mask, domain, r):
    """The relevance of the layer's input sequence x (batch, time, features) for the relevance
    r of its output (batch, units), or of every step's output with ``return_sequences``. A
    ``StackedRNNCells`` is its cells one after the other, each reading the outputs of the one
    before at every step."""

    def in_reading_order(t):  # (batch, time, ...) → (time, batch, ...), as the layer reads it
        return tf.transpose(tf.reverse(t, [1]) if layer.go_backwards else t, [1, 0, *range(2, t.shape.rank)])

    cells = getattr(layer.cell, "cells", [layer.cell])
    steps = [in_reading_order(x)]
    mask_steps = None if mask is None else in_reading_order(mask)
    batch = tf.shape(x)[0]
    for cell in cells[:-1]:  # the sequences between stacked cells
        zeros = tf.zeros(tf.stack([batch, cell.units]), x.dtype)
        _, after = _states(
            _CELLS[type(cell).__name__], cell, _weights(cell, x.dtype), steps[-1], mask_steps, zeros
        )
        steps.append(after[0])
    units = cells[-1].units
    if layer.return_sequences:
        r_steps = tf.transpose(r, [1, 0, 2])
    else:  # relevance arrives at the last step only
        earlier = tf.zeros(tf.stack([tf.shape(steps[0])[0] - 1, batch, units]), x.dtype)
        r_steps = tf.concat([earlier, r[None]], 0)
    domain_steps = None  # the model input's support and bounds, step by step, for the first cell
    if domain is not None and domain.support is not None:
        parts = {"support": domain.support, "low": domain.low, "high": domain.high}
        domain_steps = {k: in_reading_order(v) for k, v in parts.items() if v is not None}
    for k in reversed(range(len(cells))):
        name = path if len(cells) == 1 else f"{path}/cell_{k}"
        first = domain_steps if k == 0 else None
        r_steps = _explain_cell(rule, layer, name, cells[k], steps[k], mask_steps, first, r_steps)
    r_x = tf.transpose(r_steps, [1, 0, 2])
    return tf.reverse(r_x, [1]) if layer.go_backwards else r_x


def _explain_cell(rule, layer, path, cell, steps, mask_steps, domain_steps, r_steps):
    """The relevance of a cell's inputs at every step (time-major, in reading order) for the
    relevance ``r_steps`` of its outputs at every step; with ``domain_steps`` (the model input's
    support and bounds per step) its maps get ``rule.first``."""
    kind = _CELLS[type(cell).__name__]
    weights = _weights(cell, steps.dtype)
    zeros = tf.zeros(tf.stack([tf.shape(steps)[1], cell.units]), steps.dtype)
    before, _ = _states(kind, cell, weights, steps, mask_steps, zeros)
    saved = kind.parts(cell, weights, steps, before)

    def step(carry, elements):
        r_step, saved_t, x_t, mask_t, domain_t = elements  # () and {} where there is no mask, no domain
        domain_t = domain_t or None

        def linear(name, inputs, kernels, bias, r, linear_map=None):
            if domain_t is None:
                return _linear_share(rule.linear, layer, path + name, inputs, kernels, bias, r, linear_map)
            domains = [_cell_domain(domain_t, inputs)]
            return _linear_share(
                rule.first, layer, path + name, inputs, kernels, bias, r, linear_map, domains
            )

        def total(name, terms, r):
            return _sum_share(rule.sum, layer, path + name, terms, r)

        new_carry, r_x = kind.backward(linear, total, cell, weights, carry, r_step, saved_t, x_t)
        if mask_steps is None:
            return new_carry, r_x
        kept = mask_t[:, None]  # a masked step holds the state: R passes on, x_t gets none
        held = (carry[0] + r_step, *carry[1:])
        return tuple(tf.where(kept, n, o) for n, o in zip(new_carry, held)), tf.where(kept, r_x, 0)

    elements = (r_steps, saved, steps, () if mask_steps is None else mask_steps, domain_steps or {})
    initial = tuple(zeros for _ in range(kind.carries))
    relevance = tf.scan(
        lambda accumulated, e: step(accumulated[0], e), elements, (initial, steps[0]), reverse=True
    )
    return relevance[1]


def _states(kind, cell, weights, steps, mask_steps, zeros):
    """(states before each step, states after it): the state (h, and c for an LSTM),
    (time, batch, units) each; a masked step keeps the state it was given."""
    initial = tuple(zeros for _ in range(kind.carries))

    def step(state, elements):
        x_t = elements if mask_steps is None else elements[0]
        new = kind.state(cell, weights, state, x_t)
        if mask_steps is None:
            return new
        kept = elements[1][:, None]
        return tuple(tf.where(kept, n, o) for n, o in zip(new, state))

    after = tf.scan(step, steps if mask_steps is None else (steps, mask_steps), initial)
    return tuple(tf.concat([z[None], a[:-1]], 0) for z, a in zip(initial, after)), after


def _cell_domain(domain_t, inputs):
    """The domain of a first cell's inputs side by side, [x_t | state]: x_t's support and bounds
    (one row), the state's entries hidden units."""
    width = sum(int(t.shape[-1]) for t in inputs[1:])
    support = domain_t["support"]
    zeros = tf.zeros([1, width], support.dtype)

    def side_by_side(part):
        return None if part not in domain_t else tf.concat([domain_t[part], zeros], -1)

    hidden = tf.concat([tf.zeros_like(support), tf.ones_like(zeros)], -1)
    return Domain(side_by_side("support"), side_by_side("low"), side_by_side("high"), hidden)


def _linear_share(rule, layer, path, inputs, kernels, bias, r, linear_map=None, domains=None):
    """The relevance of each input under ``rule`` for r at z = Σ_k inputs_k · kernels_k + bias,
    or at ``linear_map`` of the inputs side by side (default: their matrix product)."""
    x, kernel = tf.concat(inputs, -1), tf.concat(kernels, -2)
    (r_x,) = inner_relevance(
        rule, layer, path, Kind.KERNEL, linear_map or MatrixMap(), [x], kernel, bias, r, domains
    )
    return tf.split(r_x, [int(t.shape[-1]) for t in inputs], -1)


def _sum_share(rule, layer, path, terms, r):
    """The relevance of each summand under ``rule`` for r at Σ_k terms_k."""
    return inner_relevance(rule, layer, path, Kind.ADD, WeightedSumMap(None), terms, None, None, r)


def _weights(cell, dtype):
    kernel = tf.cast(cell.kernel, dtype)
    recurrent = tf.cast(cell.recurrent_kernel, dtype)
    bias = None if cell.bias is None else tf.cast(cell.bias, dtype)
    return kernel, recurrent, bias


def _over_time(x, kernel):
    """x·W at every step: (time, batch, in) · (in, out) → (time, batch, out)."""
    return tf.einsum("tbi,io->tbo", x, kernel)


class _LSTM:
    """c_t = f⊙c_{t−1} + i⊙g, h_t = o⊙tanh(c_t); Keras' gate order i, f, c, o."""

    carries = 2  # the state (h, c), and R at each, passed from step t+1 to step t

    @staticmethod
    def _gates(cell, z):
        u = cell.units
        i = cell.recurrent_activation(z[..., :u])
        f = cell.recurrent_activation(z[..., u : 2 * u])
        g = cell.activation(z[..., 2 * u : 3 * u])
        o = cell.recurrent_activation(z[..., 3 * u :])
        return i, f, g, o

    @staticmethod
    def state(cell, weights, state, x_t):
        kernel, recurrent, bias = weights
        h, c = state
        z = tf.matmul(x_t, kernel) + tf.matmul(h, recurrent)
        i, f, g, o = _LSTM._gates(cell, z if bias is None else z + bias)
        c_new = f * c + i * g
        return o * cell.activation(c_new), c_new

    @staticmethod
    def parts(cell, weights, steps, before):
        """Per step: (h_{t−1}, f⊙c_{t−1}, i⊙g)."""
        kernel, recurrent, bias = weights
        h, c = before
        z = _over_time(steps, kernel) + _over_time(h, recurrent)
        i, f, g, _ = _LSTM._gates(cell, z if bias is None else z + bias)
        return h, f * c, i * g

    @staticmethod
    def backward(linear, total, cell, weights, carry, r_step, saved, x_t):
        h_previous, kept, written = saved
        r_h, r_c = carry
        r_c = r_c + r_h + r_step  # h_t = o⊙tanh(c_t): the gate o gets nothing, tanh passes R on
        r_kept, r_written = total("/cell_state", [kept, written], r_c)
        kernel, recurrent, bias = weights
        u = cell.units
        gate = slice(2 * u, 3 * u)  # i gets nothing; g = tanh(z_c) passes R on to z_c
        r_x, r_h_previous = linear(
            "/candidate",
            [x_t, h_previous],
            [kernel[:, gate], recurrent[:, gate]],
            None if bias is None else bias[gate],
            r_written,
        )
        return (r_h_previous, r_kept), r_x


class _GRU:
    """h_t = z⊙h_{t−1} + (1−z)⊙ĥ; Keras' gate order z, r, h."""

    carries = 1

    @staticmethod
    def _gates(cell, weights, x_part, h):
        """(z, r, ĥ) from x·W + b_in and the previous state h (any leading axes)."""
        _, recurrent, bias = weights
        u = cell.units
        _, recurrent_bias = _gru_biases(cell, bias, x_part.dtype)
        if cell.reset_after:
            h_part = tf.linalg.matmul(h, recurrent) + recurrent_bias
            z = cell.recurrent_activation(x_part[..., :u] + h_part[..., :u])
            r = cell.recurrent_activation(x_part[..., u : 2 * u] + h_part[..., u : 2 * u])
            return z, r, cell.activation(x_part[..., 2 * u :] + r * h_part[..., 2 * u :])
        h_part = tf.linalg.matmul(h, recurrent[:, : 2 * u])
        z = cell.recurrent_activation(x_part[..., :u] + h_part[..., :u])
        r = cell.recurrent_activation(x_part[..., u : 2 * u] + h_part[..., u:])
        return z, r, cell.activation(x_part[..., 2 * u :] + tf.linalg.matmul(r * h, recurrent[:, 2 * u :]))

    @staticmethod
    def state(cell, weights, state, x_t):
        kernel, _, bias = weights
        (h,) = state
        z, _, candidate = _GRU._gates(
            cell, weights, tf.matmul(x_t, kernel) + _gru_biases(cell, bias, x_t.dtype)[0], h
        )
        return (z * h + (1 - z) * candidate,)

    @staticmethod
    def parts(cell, weights, steps, before):
        """Per step: (h_{t−1}, r, z⊙h_{t−1}, (1−z)⊙ĥ)."""
        kernel, _, bias = weights
        (h,) = before
        x_part = _over_time(steps, kernel) + _gru_biases(cell, bias, steps.dtype)[0]
        z, r, candidate = _GRU._gates(cell, weights, x_part, h)
        return h, r, z * h, (1 - z) * candidate

    @staticmethod
    def backward(linear, total, cell, weights, carry, r_step, saved, x_t):
        h_previous, reset, kept, written = saved
        (r_h,) = carry
        r_kept, r_written = total("/state", [kept, written], r_h + r_step)
        kernel, recurrent, bias = weights
        u = cell.units
        input_bias, recurrent_bias = _gru_biases(cell, bias, x_t.dtype)
        gate = slice(2 * u, 3 * u)  # z and (1 − z) get nothing; ĥ = tanh(·) passes R on
        kernels, bias_h, linear_map = [kernel[:, gate], recurrent[:, gate]], input_bias[gate], None
        if cell.reset_after:  # contributions x_i W_ij and r_j h_k U_kj, biases b_in + r⊙b_rec
            inputs, linear_map = [x_t, h_previous], _ResetAfterMap(int(x_t.shape[-1]), reset)
            if recurrent_bias is not None:
                bias_h = bias_h + reset * recurrent_bias[gate]
        else:  # contributions (r_k h_k) U_kj: the reset gate gets nothing, h_{t−1} keeps it
            inputs = [x_t, reset * h_previous]
        r_x, r_h_previous = linear("/candidate", inputs, kernels, bias_h, r_written, linear_map)
        return (r_kept + r_h_previous,), r_x


class _ResetAfterMap(LinearMap):
    """A GRU candidate's pre-activation with ``reset_after``, on [x | h] with the kernel [W; U]:
    z = x·W + r⊙(h·U), the reset gate r scaling U's outputs per sample (r_j h_k U_kj)."""

    def __init__(self, split, reset):
        self.split = split
        self.reset = reset

    def apply(self, inputs, kernel):
        (xh,) = inputs
        s = self.split
        return tf.matmul(xh[:, :s], kernel[:s]) + self.reset * tf.matmul(xh[:, s:], kernel[s:])

    def transpose(self, inputs, kernel, cotangent):
        s = self.split
        to_x = tf.matmul(cotangent, kernel[:s], transpose_b=True)
        to_h = tf.matmul(self.reset * cotangent, kernel[s:], transpose_b=True)
        return [tf.concat([to_x, to_h], -1)]


def _gru_biases(cell, bias, dtype):
    """(input bias, recurrent bias or None) of a GRU cell, zeros where it has none."""
    if bias is None:
        return tf.zeros(3 * cell.units, dtype), None
    if cell.reset_after:
        return bias[0], bias[1]
    return bias, None


class _SimpleRNN:
    """h_t = tanh(x W + h_{t−1} U + b)."""

    carries = 1

    @staticmethod
    def state(cell, weights, state, x_t):
        kernel, recurrent, bias = weights
        (h,) = state
        z = tf.matmul(x_t, kernel) + tf.matmul(h, recurrent)
        return (cell.activation(z if bias is None else z + bias),)

    @staticmethod
    def parts(cell, weights, steps, before):
        """Per step: (h_{t−1},)."""
        return before

    @staticmethod
    def backward(linear, total, cell, weights, carry, r_step, saved, x_t):
        (h_previous,) = saved
        (r_h,) = carry
        kernel, recurrent, bias = weights
        r_x, r_h_previous = linear("/state", [x_t, h_previous], [kernel, recurrent], bias, r_h + r_step)
        return (r_h_previous,), r_x


_CELLS = {"LSTMCell": _LSTM, "GRUCell": _GRU, "SimpleRNNCell": _SimpleRNN}
