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

from keras_dtd.core.kinds import Kind
from keras_dtd.core.linear_maps import MatrixMap, WeightedSumMap
from keras_dtd.core.tracing import Node
from keras_dtd.rules.base import LayerCall, Rule


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

    Args:
      linear: the rule of the linear maps inside a cell (e.g. ``Epsilon(0.001)``, ``ZPlus()``).
      sum: the rule of the sums inside a cell.
    """

    uses_vjp = False

    def __init__(self, linear: Rule, sum: Rule):
        self.linear = linear
        self.sum = sum

    def relevance(self, call, relevance):
        (x,) = call.inputs
        (r,) = relevance
        layer = call.node.layer
        if not hasattr(layer, "forward_layer"):
            return [_explain(self, layer, call.node.path, x, r)]
        units = layer.forward_layer.cell.units
        if layer.merge_mode == "concat":
            r_forward, r_backward = r[..., :units], r[..., units:]
        else:  # sum, ave: share R by the two directions' contributions to the merged output
            y = [_outputs(layer.forward_layer, x), _outputs(layer.backward_layer, x)]
            if layer.backward_layer.return_sequences:
                y[1] = tf.reverse(y[1], [1])
            if layer.merge_mode == "ave":
                y = [0.5 * t for t in y]
            r_forward, r_backward = _sum_share(self.sum, layer, call.node.path, y, r)
        if layer.backward_layer.return_sequences:  # Keras flips the backward outputs back in time
            r_backward = tf.reverse(r_backward, [1])
        forward = _explain(self, layer.forward_layer, call.node.path + "/forward", x, r_forward)
        backward = _explain(self, layer.backward_layer, call.node.path + "/backward", x, r_backward)
        return [forward + backward]


def _outputs(layer, x):
    return layer(x, training=False)


def _explain(rule, layer, path, x, r):
    """The relevance of the layer's input sequence x (batch, time, features) for the relevance
    r of its output (batch, units), or of every step's output with ``return_sequences``."""
    cell = layer.cell
    sequence = tf.reverse(x, [1]) if layer.go_backwards else x  # in the order the layer reads it
    steps = tf.transpose(sequence, [1, 0, 2])
    batch = tf.shape(x)[0]
    zeros = tf.zeros(tf.stack([batch, cell.units]), x.dtype)
    if layer.return_sequences:
        r_steps = tf.transpose(r, [1, 0, 2])
    else:  # relevance arrives at the last step only
        earlier = tf.zeros(tf.stack([tf.shape(steps)[0] - 1, batch, cell.units]), x.dtype)
        r_steps = tf.concat([earlier, r[None]], 0)
    kind = _CELLS[type(cell).__name__]
    saved = kind.forward(cell, steps, zeros)

    def step(carry, elements):
        r_step, saved_t, x_t = elements
        return kind.backward(rule, layer, path, cell, carry, r_step, saved_t, x_t)

    initial = tuple(zeros for _ in range(kind.carries))
    relevance = tf.scan(
        lambda accumulated, elements: step(accumulated[0], elements),
        (r_steps, saved, steps),
        (initial, steps[0]),
        reverse=True,
    )
    r_x = tf.transpose(relevance[1], [1, 0, 2])
    return tf.reverse(r_x, [1]) if layer.go_backwards else r_x


def _linear_share(rule, layer, path, inputs, kernels, bias, r):
    """The relevance of each input under ``rule`` for r at z = Σ_k inputs_k · kernels_k + bias
    (kernels of shape (in, out), or (batch, in, out) when they differ per sample)."""
    x = tf.concat(inputs, -1)
    kernel = tf.concat(kernels, -2)
    linear_map = MatrixMap()
    z = linear_map.apply([x], kernel)
    node = Node(
        layer=layer,
        inputs=(0,),
        outputs=(1,),
        path=path,
        kind=Kind.KERNEL,
        linear_map=linear_map,
        nonnegative_inputs=(False,),
    )
    call = LayerCall(
        node=node,
        inputs=[x],
        outputs=[z if bias is None else z + bias],
        kernel=kernel,
        bias=bias,
        linear=z,
        domains=[None],
        vjp=lambda cotangents: linear_map.transpose([x], kernel, cotangents[0]),
    )
    (r_x,) = rule.relevance(call, [r])
    r_x = tf.zeros_like(x) if r_x is None else r_x
    return tf.split(r_x, [int(t.shape[-1]) for t in inputs], -1)


def _sum_share(rule, layer, path, terms, r):
    """The relevance of each summand under ``rule`` for r at Σ_k terms_k."""
    linear_map = WeightedSumMap(None)
    total = tf.add_n(terms)
    node = Node(
        layer=layer,
        inputs=tuple(range(len(terms))),
        outputs=(len(terms),),
        path=path,
        kind=Kind.ADD,
        linear_map=linear_map,
        nonnegative_inputs=(False,) * len(terms),
    )
    call = LayerCall(
        node=node,
        inputs=list(terms),
        outputs=[total],
        kernel=None,
        bias=None,
        linear=total,
        domains=[None] * len(terms),
        vjp=lambda cotangents: linear_map.transpose(list(terms), None, cotangents[0]),
    )
    shares = rule.relevance(call, [r])
    return [tf.zeros_like(t) if s is None else s for t, s in zip(terms, shares)]


def _weights(cell, dtype):
    kernel = tf.cast(cell.kernel, dtype)
    recurrent = tf.cast(cell.recurrent_kernel, dtype)
    bias = None if cell.bias is None else tf.cast(cell.bias, dtype)
    return kernel, recurrent, bias


class _LSTM:
    """c_t = f⊙c_{t−1} + i⊙g, h_t = o⊙tanh(c_t); Keras' gate order i, f, c, o."""

    carries = 2  # R at h_t and at c_t, passed from step t+1

    @staticmethod
    def forward(cell, steps, zeros):
        """Per step: (h_{t−1}, f⊙c_{t−1}, i⊙g, c_t, z_c without bias)."""
        kernel, recurrent, bias = _weights(cell, steps.dtype)
        u = cell.units

        def step(state, x_t):
            h, c = state[0], state[1]
            z = tf.matmul(x_t, kernel) + tf.matmul(h, recurrent)
            if bias is not None:
                z = z + bias
            i = cell.recurrent_activation(z[:, :u])
            f = cell.recurrent_activation(z[:, u : 2 * u])
            g = cell.activation(z[:, 2 * u : 3 * u])
            o = cell.recurrent_activation(z[:, 3 * u :])
            kept, written = f * c, i * g
            c_new = kept + written
            return (o * cell.activation(c_new), c_new, h, kept, written)

        first = (zeros, zeros, zeros, zeros, zeros)
        states = tf.scan(step, steps, first)
        return states[2], states[3], states[4]

    @staticmethod
    def backward(rule, layer, path, cell, carry, r_step, saved, x_t):
        h_previous, kept, written = saved
        r_h, r_c = carry
        r_c = r_c + r_h + r_step  # h_t = o⊙tanh(c_t): the gate o gets nothing, tanh passes R on
        r_kept, r_written = _sum_share(rule.sum, layer, path + "/cell_state", [kept, written], r_c)
        kernel, recurrent, bias = _weights(cell, x_t.dtype)
        u = cell.units
        gate = slice(2 * u, 3 * u)  # i gets nothing; g = tanh(z_c) passes R on to z_c
        r_x, r_h_previous = _linear_share(
            rule.linear,
            layer,
            path + "/candidate",
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
    def forward(cell, steps, zeros):
        """Per step: (h_{t−1}, r, z⊙h_{t−1}, (1−z)⊙ĥ)."""
        kernel, recurrent, bias = _weights(cell, steps.dtype)
        u = cell.units
        input_bias, recurrent_bias = _gru_biases(cell, bias, steps.dtype)

        def step(state, x_t):
            h = state[0]
            x_part = tf.matmul(x_t, kernel) + input_bias
            if cell.reset_after:
                h_part = tf.matmul(h, recurrent) + recurrent_bias
                z = cell.recurrent_activation(x_part[:, :u] + h_part[:, :u])
                r = cell.recurrent_activation(x_part[:, u : 2 * u] + h_part[:, u : 2 * u])
                candidate = cell.activation(x_part[:, 2 * u :] + r * h_part[:, 2 * u :])
            else:
                h_part = tf.matmul(h, recurrent[:, : 2 * u])
                z = cell.recurrent_activation(x_part[:, :u] + h_part[:, :u])
                r = cell.recurrent_activation(x_part[:, u : 2 * u] + h_part[:, u:])
                candidate = cell.activation(x_part[:, 2 * u :] + tf.matmul(r * h, recurrent[:, 2 * u :]))
            kept, written = z * h, (1 - z) * candidate
            return (kept + written, h, r, kept, written)

        states = tf.scan(step, steps, (zeros,) * 5)
        return states[1], states[2], states[3], states[4]

    @staticmethod
    def backward(rule, layer, path, cell, carry, r_step, saved, x_t):
        h_previous, reset, kept, written = saved
        (r_h,) = carry
        r_h = r_h + r_step
        r_kept, r_written = _sum_share(rule.sum, layer, path + "/state", [kept, written], r_h)
        kernel, recurrent, bias = _weights(cell, x_t.dtype)
        u = cell.units
        input_bias, recurrent_bias = _gru_biases(cell, bias, x_t.dtype)
        gate = slice(2 * u, 3 * u)  # z and (1 − z) get nothing; ĥ = tanh(·) passes R on
        if cell.reset_after:  # contributions x_i W_ij and r_j h_k U_kj, biases b_in + r⊙b_rec
            scaled = recurrent[None, :, gate] * reset[:, None, :]
            batch = tf.shape(x_t)[0]
            kernels = [
                tf.broadcast_to(kernel[None, :, gate], tf.concat([[batch], tf.shape(kernel[:, gate])], 0)),
                scaled,
            ]
            bias_h = _add(input_bias[gate], None if recurrent_bias is None else reset * recurrent_bias[gate])
            r_x, r_h_previous = _linear_share(
                rule.linear, layer, path + "/candidate", [x_t, h_previous], kernels, bias_h, r_written
            )
        else:  # contributions (r_k h_k) U_kj: the reset gate gets nothing, h_{t−1} keeps it
            r_x, r_h_previous = _linear_share(
                rule.linear,
                layer,
                path + "/candidate",
                [x_t, reset * h_previous],
                [kernel[:, gate], recurrent[:, gate]],
                input_bias[gate],
                r_written,
            )
        return (r_kept + r_h_previous,), r_x


def _gru_biases(cell, bias, dtype):
    """(input bias, recurrent bias or None) of a GRU cell, zeros where it has none."""
    if bias is None:
        return tf.zeros(3 * cell.units, dtype), None
    if cell.reset_after:
        return bias[0], bias[1]
    return bias, None


def _add(a, b):
    return a if b is None else a + b


class _SimpleRNN:
    """h_t = tanh(x W + h_{t−1} U + b)."""

    carries = 1

    @staticmethod
    def forward(cell, steps, zeros):
        """Per step: (h_{t−1},)."""
        kernel, recurrent, bias = _weights(cell, steps.dtype)

        def step(state, x_t):
            h = state[0]
            z = tf.matmul(x_t, kernel) + tf.matmul(h, recurrent)
            return (cell.activation(z if bias is None else z + bias), h)

        states = tf.scan(step, steps, (zeros, zeros))
        return (states[1],)

    @staticmethod
    def backward(rule, layer, path, cell, carry, r_step, saved, x_t):
        (h_previous,) = saved
        (r_h,) = carry
        kernel, recurrent, bias = _weights(cell, x_t.dtype)
        r_x, r_h_previous = _linear_share(
            rule.linear, layer, path + "/state", [x_t, h_previous], [kernel, recurrent], bias, r_h + r_step
        )
        return (r_h_previous,), r_x


_CELLS = {"LSTMCell": _LSTM, "GRUCell": _GRU, "SimpleRNNCell": _SimpleRNN}
