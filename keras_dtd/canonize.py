"""Model-preserving rewrites of a traced graph, done once before rules are assigned.

- Each node gets its kind and, if linear, its linear map (:mod:`keras_dtd.layers`).
- BatchNormalization right after a Dense/Conv/DepthwiseConv/ConvTranspose/SeparableConv
  with linear activation is folded into it (on tensors computed from the live
  variables; the model is untouched).
- A SeparableConv becomes two kernel nodes: its depthwise map, then its pointwise
  1×1 convolution with the bias and activation.
- A softmax/sigmoid that ends the model is stripped: DTD explains the score before it.
- A Multiply learns which input is its signal: the one not produced by a gate-like
  activation (sigmoid, hard sigmoid, bounded ReLU), or the one the user did not name
  in ``gates``.
- Each node learns which of its inputs are non-negative by construction (ReLU
  outputs and what pooling/reshaping passes on), which lets z⁺ skip the x⁻ term,
  and whether relevance can reach its negative outputs (else z⁺ skips its sign-aware part).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools

from keras_dtd import layers as L
from keras_dtd.graph import Graph, Node

_FOLDING_KERNELS = (
    L.KL.Dense,
    L.KL.Conv1D,
    L.KL.Conv2D,
    L.KL.Conv3D,
    L.KL.DepthwiseConv1D,
    L.KL.DepthwiseConv2D,
    L.KL.Conv1DTranspose,
    L.KL.Conv2DTranspose,
    L.KL.Conv3DTranspose,
    L.KL.SeparableConv1D,
    L.KL.SeparableConv2D,
)


def canonize(graph: Graph, gates=None) -> Graph:
    """Return a copy of ``graph`` with the rewrites above applied. ``gates``: ``{name of a
    Multiply layer: name of the layer whose output is its gate}`` where detection is not wanted."""
    nodes = [dataclasses.replace(n, kind=L.kind_of(n.layer, len(n.inputs))) for n in graph.nodes]
    nodes = _attach_ops(graph, nodes, _foldable_batch_norms(graph, nodes))
    nodes = _choose_signals(nodes, gates or {})
    return dataclasses.replace(graph, nodes=tuple(_mark_nonnegative_inputs(nodes)))


def _foldable_batch_norms(graph: Graph, nodes: list[Node]) -> dict[int, Node]:
    """Map index of a kernel node → the BatchNormalization node folded into it."""
    uses = collections.Counter(i for node in nodes for i in node.inputs)
    uses.update(graph.outputs)
    producer = {out: k for k, node in enumerate(nodes) for out in node.outputs}
    folded = {}
    for bn_node in nodes:
        if bn_node.kind != "batch_norm":
            continue
        k = producer.get(bn_node.inputs[0])
        if k is None:
            continue
        layer = nodes[k].layer
        if not isinstance(layer, _FOLDING_KERNELS) or L.activation_name(layer) != "linear":
            continue
        if uses[nodes[k].outputs[0]] != 1:
            continue
        rank = len(bn_node.input_shapes[0])
        channel_axis = 1 if getattr(layer, "data_format", None) == "channels_first" else -1
        if bn_node.layer.axis % rank != channel_axis % rank:
            continue
        folded[k] = bn_node
    return folded


def _attach_ops(graph: Graph, nodes: list[Node], folded: dict[int, Node]) -> list[Node]:
    folded_ids = {id(bn) for bn in folded.values()}
    model_outputs = set(graph.outputs)
    fresh_ids = itertools.count(1 + max(i for n in nodes for i in n.inputs + n.outputs))
    result = []
    for k, node in enumerate(nodes):
        if id(node) in folded_ids:
            continue
        kind = node.kind
        activation = (
            L.activation_name(node.layer) if kind in ("kernel", "separable", "elementwise") else "linear"
        )
        outputs = folded[k].outputs if k in folded else node.outputs
        if set(outputs) & model_outputs and activation in L.OUTPUT_ACTIVATIONS:
            activation = "linear"
            if kind == "elementwise":
                kind = "stripped"
        node = dataclasses.replace(node, outputs=outputs, kind=kind, activation=activation)
        batch_norm = folded[k].layer if k in folded else None
        if kind == "separable":
            depthwise, pointwise = L.separable_ops(node.layer, batch_norm)
            middle = (next(fresh_ids),)
            result.append(
                dataclasses.replace(
                    node,
                    outputs=middle,
                    path=node.path + "/depthwise",
                    kind="kernel",
                    op=depthwise,
                    activation="linear",
                )
            )
            result.append(
                dataclasses.replace(node, inputs=middle, input_shapes=(), kind="kernel", op=pointwise)
            )
        else:
            result.append(dataclasses.replace(node, op=L.linear_op(node, batch_norm)))
    return result


def _choose_signals(nodes: list[Node], gates: dict) -> list[Node]:
    producer = {out: node for node in nodes for out in node.outputs}
    names = {name for node in nodes for name in (node.path, node.layer.name)}
    unknown = set(gates) - names
    if unknown:
        raise ValueError(f"gates names layers the model does not have: {sorted(unknown)}.")

    def gate_like(i):
        node = producer.get(i)
        while node is not None:
            if node.activation in L.GATE_ACTIVATIONS:
                return True
            if (
                node.activation != "linear"
                or node.kind not in ("elementwise", "structural")
                or len(node.inputs) != 1
            ):
                return False
            node = producer.get(node.inputs[0])
        return False

    chosen = []
    for node in nodes:
        if node.kind == "gate":
            named = gates.get(node.path, gates.get(node.layer.name))
            if named is not None:
                flags = [
                    producer.get(i) is not None and named in (producer[i].path, producer[i].layer.name)
                    for i in node.inputs
                ]
                if sum(flags) != 1 or len(node.inputs) != 2:
                    raise ValueError(f"gates: '{named}' is not one of the two inputs of '{node.path}'.")
            else:
                flags = [gate_like(i) for i in node.inputs]
            signals = [k for k, is_gate in enumerate(flags) if not is_gate]
            node = dataclasses.replace(node, signal=signals[0] if len(signals) == 1 else None)
        chosen.append(node)
    return chosen


def _mark_nonnegative_inputs(nodes: list[Node]) -> list[Node]:
    """Marks inputs ≥ 0 by construction, and nodes whose relevance can only reach outputs ≥ 0:
    outputs ≥ 0, or consumed only by ReLU-like layers (a ReLU zeroes the negative values,
    and zero values receive no relevance from above)."""
    consumers = collections.defaultdict(list)
    for node in nodes:
        for i in node.inputs:
            consumers[i].append(node)
    nonnegative: dict[int, bool] = {}
    marked = []
    for node in nodes:
        flags = tuple(nonnegative.get(i, False) for i in node.inputs)
        if node.activation in L.NONNEGATIVE_ACTIVATIONS:
            out = True
        elif node.activation == "linear" and L.keeps_sign(node):
            out = flags[node.signal] if node.kind == "gate" and node.signal is not None else all(flags)
        else:
            out = False
        for i in node.outputs:
            nonnegative[i] = out
        rectified = (
            out
            or all(
                c.kind == "elementwise" and c.activation in L.RECTIFIERS
                for i in node.outputs
                for c in consumers[i]
            )
            and bool(consumers[node.outputs[0]])
        )
        marked.append(dataclasses.replace(node, nonnegative_inputs=flags, rectified=rectified))
    return marked
