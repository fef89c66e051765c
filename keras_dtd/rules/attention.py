"""Relevance through ``keras.layers.MultiHeadAttention``: AttnLRP (Achtibat et al., ICML 2024,
as LXT 2.1 computes it) and CP-LRP (Ali et al., ICML 2022).

The layer is recomputed from its projections: q = query·W_q + b_q, k, v alike; scores
s = (q/√d_k)·kᵀ (masked); A = softmax(s); o = A·v; y = o·W_o + b_o. The projections get the
composite's rule for kernel layers (``linear``); then, with d + ε·sign(d), sign(0) = +1:
- AttnLRP: the products A·v and q·kᵀ by the uniform rule, each operand half of the ε share,
  R_a = ½ a ⊙ Jᵀ_a (R / stab(y)); the softmax by R_s = s ⊙ (R_A − A ⊙ Σ R_A) per row;
- CP-LRP: the attention weights are constants: o = A·v is a linear map of v with weights A ≥ 0
  under ``linear``, and q and k get nothing.
Masked positions get no relevance.
"""

from __future__ import annotations

import tensorflow as tf

from keras_dtd.core.kinds import Kind
from keras_dtd.core.linear_maps import EinsumMap, LinearMap
from keras_dtd.core.tracing import UnsupportedLayerError, attention_gate
from keras_dtd.rules.base import Rule, inner_relevance

MODES = ("attnlrp", "cp")
_SCORES = "btnh,bsnh->bnts"  # (query, key) → scores per head
_COMBINE = "bnts,bsnh->btnh"  # (weights, value) → output per head


class Attention(Rule):
    """MultiHeadAttention under AttnLRP (``mode="attnlrp"``) or CP-LRP (``mode="cp"``).

    Args:
      linear: the rule of the query, key, value and output projections (and, for CP-LRP, of
        o = A·v with the weights A held constant), e.g. ``Epsilon(1e-6)``, ``ZPlus()``.
      mode: "attnlrp" or "cp".
      epsilon: the stabilizer of AttnLRP's product rules.
    """

    uses_vjp = False

    def __init__(self, linear: Rule, mode: str = "attnlrp", epsilon: float = 1e-6):
        if mode not in MODES:
            raise ValueError(f"Attention: mode must be one of {MODES}; received: {mode!r}.")
        self.linear = linear
        self.mode = mode
        self.epsilon = epsilon

    def receivers(self, node):
        positions = _argument_positions(node)
        return tuple(positions[name] for name in ("query", "value", "key") if name in positions)

    def forward(self, node, inputs):
        """The layer's output y, computed here once for both passes, and its intermediates."""
        layer = node.layer
        positions = _argument_positions(node)
        query, value = inputs[positions["query"]], inputs[positions["value"]]
        key = inputs[positions["key"]] if "key" in positions else value
        mask = _mask(layer, node, inputs, positions, query, key)
        q, k, v = (
            _project(sub, x)
            for sub, x in ((layer.query_dense, query), (layer.key_dense, key), (layer.value_dense, value))
        )
        scaled = q * tf.cast(layer.key_dim**-0.5, q.dtype)
        scores = tf.einsum(_SCORES, scaled, k)
        if mask is not None:
            scores = tf.where(mask, scores, tf.constant(-1e9, scores.dtype))
        weights = tf.nn.softmax(scores, axis=-1)
        if mask is not None:
            weights = tf.where(mask, weights, 0)
        o = tf.einsum(_COMBINE, weights, v)
        gate_dense = attention_gate(layer)
        gated = o if gate_dense is None else o * gate_dense.activation(_project(gate_dense, query))
        y = _project(layer.output_dense, gated)
        saved = {"positions": positions, "mask": mask, "scaled": scaled, "k": k, "v": v}
        saved.update(scores=scores, weights=weights, o=o, gated=gated)
        return [y], saved

    def relevance(self, call, relevance):
        (r,) = relevance
        node, layer = call.node, call.node.layer
        saved = call.saved if call.saved is not None else self.forward(node, call.inputs)[1]
        positions, mask = saved["positions"], saved["mask"]
        scaled, k, v, scores, weights, o = (saved[n] for n in ("scaled", "k", "v", "scores", "weights", "o"))
        query, value = call.inputs[positions["query"]], call.inputs[positions["value"]]
        key = call.inputs[positions["key"]] if "key" in positions else value
        gate_dense, r_gate = attention_gate(layer), None
        if gate_dense is None:
            r_o = _through(self.linear, layer, layer.output_dense, node.path + "/output", o, r)
        else:  # y = (o ⊙ σ(query·W_g + b_g))·W_o + b_o: a gated product
            gated = saved["gated"]
            r_gated = _through(self.linear, layer, layer.output_dense, node.path + "/output", gated, r)
            if self.mode == "cp":  # signal-take-all: the gate gets nothing
                r_o = r_gated
            else:  # the uniform rule: half to each factor; σ passes its half on
                r_o = 0.5 * tf.math.divide_no_nan(gated, _stabilized(gated, self.epsilon)) * r_gated
                r_gate = _through(self.linear, layer, gate_dense, node.path + "/gate", query, r_o)
        if self.mode == "cp":
            r_v = _through(self.linear, layer, _Weights(), node.path + "/combine", v, r_o, kernel=weights)
            r_q = r_k = None
        else:
            s = _divide(r_o, o, self.epsilon)
            r_weights = 0.5 * weights * tf.einsum("btnh,bsnh->bnts", s, v)
            r_v = 0.5 * v * tf.einsum("bnts,btnh->bsnh", weights, s)
            r_scores = scores * (r_weights - weights * tf.reduce_sum(r_weights, axis=-1, keepdims=True))
            if mask is not None:
                r_scores = tf.where(mask, r_scores, 0)
            s = _divide(r_scores, scores, self.epsilon)
            r_q = 0.5 * scaled * tf.einsum("bnts,bsnh->btnh", s, k)
            r_k = 0.5 * k * tf.einsum("bnts,btnh->bsnh", s, scaled)
        out = [None] * len(call.inputs)
        r_query = (
            []
            if r_q is None
            else [_through(self.linear, layer, layer.query_dense, node.path + "/query", query, r_q)]
        )
        r_query += [] if r_gate is None else [r_gate]
        out[positions["query"]] = tf.add_n(r_query) if r_query else None
        out[positions["value"]] = _through(
            self.linear, layer, layer.value_dense, node.path + "/value", value, r_v
        )
        if r_k is not None:
            r_key = _through(self.linear, layer, layer.key_dense, node.path + "/key", key, r_k)
            if "key" in positions:
                out[positions["key"]] = r_key
            else:
                out[positions["value"]] = out[positions["value"]] + r_key
        return out


def _argument_positions(node):
    """{argument name: position in the node's inputs} for query, value, key, attention_mask."""
    arguments = node.arguments
    tensors = list(arguments.keras_tensors)
    used = set()
    named = {"query": arguments.args[0] if arguments.args else arguments.kwargs.get("query")}
    named["value"] = arguments.args[1] if len(arguments.args) > 1 else arguments.kwargs.get("value")
    for name in ("key", "attention_mask"):
        found = arguments.args[2] if name == "key" and len(arguments.args) > 2 else arguments.kwargs.get(name)
        if found is not None:
            named[name] = found
    if arguments.kwargs.get("return_attention_scores"):
        raise UnsupportedLayerError(
            f"Layer '{node.path}' is called with return_attention_scores=True; keras_dtd explains its output "
            "alone. Explain a model built without returning the scores (same weights)."
        )
    for keyword in ("query_mask", "value_mask", "key_mask"):
        if arguments.kwargs.get(keyword) is not None:
            raise UnsupportedLayerError(
                f"Layer '{node.path}' is called with {keyword}=; keras_dtd explains attention_mask."
            )
    positions = {}
    for name, tensor in named.items():
        if tensor is None:
            continue
        k = next(i for i, t in enumerate(tensors) if t is tensor and i not in used)
        used.add(k)
        positions[name] = k
    return positions


def _mask(layer, node, inputs, positions, query, key):
    """The boolean mask (batch, 1, T, S) of allowed query/key pairs, or None."""
    mask = None
    if "attention_mask" in positions:
        mask = tf.cast(inputs[positions["attention_mask"]], tf.bool)
    if node.arguments.kwargs.get("use_causal_mask"):
        t, s = tf.shape(query)[1], tf.shape(key)[1]
        causal = tf.linalg.band_part(tf.ones(tf.stack([t, s]), tf.bool), -1, 0)[None]
        mask = causal if mask is None else tf.logical_and(mask, causal)
    return None if mask is None else mask[:, None]


def _project(dense, x):
    """An EinsumDense sublayer's pre-activation, by its linear map (live, refused if quantized)."""
    linear_map = EinsumMap(dense, "kernel", "bias")
    kernel, bias = linear_map.parameters([x])
    z = linear_map.apply([x], kernel)
    return z if bias is None else z + bias


def _stabilized(y, epsilon):
    return y + epsilon * tf.where(y >= 0, tf.constant(1, y.dtype), tf.constant(-1, y.dtype))


def _divide(r, y, epsilon):
    return tf.math.divide_no_nan(r, _stabilized(y, epsilon))


class _Weights(LinearMap):
    """o = A·v, a linear map of v with the attention weights A (batch, heads, T, S) as its kernel."""

    def apply(self, inputs, kernel):
        return tf.einsum(_COMBINE, kernel, inputs[0])

    def transpose(self, inputs, kernel, cotangent):
        return [tf.einsum("bnts,btnh->bsnh", kernel, cotangent)]


def _through(rule, layer, dense_or_map, path, x, r, kernel=None):
    """The relevance of x under ``rule`` for r at a projection (an EinsumDense sublayer of
    ``layer``) of x, or at the attention map o = A·v (``kernel`` = A)."""
    if kernel is None:
        linear_map = EinsumMap(dense_or_map, "kernel", "bias")
        kernel, bias = linear_map.parameters([x])
    else:
        linear_map, bias = dense_or_map, None
    (r_x,) = inner_relevance(rule, layer, path, Kind.KERNEL, linear_map, [x], kernel, bias, r)
    return r_x
