"""Rules for layers without learned weights: pass-through, routing, winner-take-all, gates,
products of activations, softmax and embeddings."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_dtd.rules.base import Rule


class PassThrough(Rule):
    """R_in = R_out, for elementwise layers (ReLU, Dropout, Rescaling, a stripped softmax);
    further tensor inputs (a softmax's mask) get none."""

    uses_vjp = False

    def receivers(self, node):
        return (0,)

    def relevance(self, call, relevance):
        x = call.inputs[0]
        (r,) = relevance
        if x.shape.rank is not None and r.shape.rank is not None and x.shape[1:] != r.shape[1:]:
            raise ValueError(
                f"PassThrough needs equal input and output shapes; layer '{call.node.path}' maps "
                f"{x.shape} to {r.shape}. Use keras_dtd.rules.Route for layers that move values."
            )
        return [r] + [None] * (len(call.inputs) - 1)


class Route(Rule):
    """R_in = Jᵀ R_out with J the layer's 0/1 Jacobian: each input receives the relevance
    of the outputs it is copied to (Flatten, Reshape, Permute, padding, cropping), and a
    Concatenate splits relevance back onto its inputs. On any other layer: the gradient
    (iNNvestigate's treatment of Add, which copies R to each summand)."""

    def needs_vjp(self, node):
        return self.uses_vjp and _concatenated_sizes(node) is None

    def keeps_rectified(self, node):
        return "yes"  # values move: an output ≥ 0 is an input ≥ 0

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


class NoRelevance(Rule):
    """Values that carry no relevance (comparisons, Keras masks): nothing passes to the inputs."""

    uses_vjp = False

    def receivers(self, node):
        return ()

    def relevance(self, call, relevance):
        return [None] * len(call.inputs)


class WinnerTakeAll(Route):
    """Max pooling, Maximum, Minimum: the whole relevance R_j of a window goes to its
    winning input (R_i = Σ_j [i = argmax_window(j)] R_j)."""


class Gate(Rule):
    """A multiplicative gate y = x ⊙ g (squeeze-excitation, gated units; Arras et al. 2017):
    the signal x keeps all relevance, R_x = R_y (summed over axes x was broadcast along),
    and the gates g get none."""

    uses_vjp = False

    def receivers(self, node):
        return () if node.signal is None else (node.signal,)

    def relevance(self, call, relevance):
        (r,) = relevance
        k = call.node.signal
        if k is None:
            raise ValueError(
                f"Layer '{call.node.path}' has no known signal input; name its gate with gates=...."
            )
        out = [None] * len(call.inputs)
        out[k] = _reduced_to(r, call.inputs[k])
        return out


class UniformProduct(Rule):
    """AttnLRP's uniform rule for a product of n activations, elementwise (GeGLU's
    gelu(g) ⊙ x) or contracting (q·kᵀ and A·v as einsum or matmul): each factor gets 1/n
    of the ε share, R_k = (1/n) · x_k ⊙ J_kᵀ (R / stab(y)), stab(y) = y + ε·sign(y),
    sign(0) = +1 (for y = a ⊙ b: R_a = ½ · y / stab(y) · R, summed over the axes a was
    broadcast along).

    Args:
      epsilon: the stabilizer ε.
      signal_takes_all: where the product's signal is known (one factor is attention
        weights, :mod:`keras_dtd.core.canonize`), the other factor is held constant and the
        signal gets the whole share, R_v = v ⊙ J_vᵀ (R / stab(y)) (CP-LRP's A·v).
    """

    def __init__(self, epsilon=1e-6, signal_takes_all=False):
        self.epsilon = epsilon
        self.signal_takes_all = signal_takes_all

    def receivers(self, node):
        return (node.signal,) if self.signal_takes_all and node.signal is not None else None

    def relevance(self, call, relevance):
        (r,) = relevance
        (y,) = call.outputs
        sign = tf.where(y >= 0, tf.constant(1, y.dtype), tf.constant(-1, y.dtype))
        grads = call.vjp([tf.math.divide_no_nan(r, y + self.epsilon * sign)])
        shares = [None if g is None else x * g for x, g in zip(call.inputs, grads)]
        signal = self.receivers(call.node)
        if signal is not None:
            return [s if k in signal else None for k, s in enumerate(shares)]
        return [None if s is None else s / len(shares) for s in shares]


class Softmax(Rule):
    """AttnLRP's rule for a softmax p = softmax(s) inside the model (attention weights),
    as LXT 2.1 computes it: R_s = s ⊙ (R_p − p ⊙ Σ R_p), the sum along the softmax's
    axis; a mask given to the softmax gets none."""

    uses_vjp = False

    def receivers(self, node):
        return (0,)

    def relevance(self, call, relevance):
        (r,) = relevance
        s, (p,) = call.inputs[0], call.outputs
        axis = getattr(call.node.layer, "axis", -1)
        r_s = s * (r - p * tf.reduce_sum(r, axis=axis, keepdims=True))
        return [r_s] + [None] * (len(call.inputs) - 1)


def _reduced_to(t, x):
    """t summed over the axes along which x was broadcast to t's shape."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        spread = tf.broadcast_to(x, tf.shape(t))
    return tape.gradient(spread, x, output_gradients=t)


class EmbeddingSum(Rule):
    """Embedding: the relevance of a token is that of its vector, R_t = Σ_d R_(t,d);
    the map has the shape of the integer input."""

    uses_vjp = False

    def relevance(self, call, relevance):
        (r,) = relevance
        return [tf.reduce_sum(r, axis=-1)]
