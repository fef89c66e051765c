"""Model-preserving rewrites of a traced graph, done once before rules are assigned.

- Each node gets its kind and, if linear, its linear map (:mod:`keras_dtd.core.registry`).
- BatchNormalization right after a layer whose registry entry folds it (Dense, the
  convolutions) with linear activation is folded into it (on tensors computed from the live
  variables; the model is untouched).
- A layer whose entry gives a chain of maps (a SeparableConv: its depthwise map, then its
  pointwise 1×1 convolution with the bias and activation) becomes one kernel node per map.
- A softmax/sigmoid that ends the model is stripped: DTD explains the score before it.
- A Multiply learns which input is its signal: the one not produced by a gate-like
  activation (sigmoid, hard sigmoid, bounded ReLU; else by another non-linear activation,
  GeGLU's gelu), or the one the user did not name in ``gates``. A Multiply by the reciprocal
  of a statistic (``x * reciprocal(sqrt(mean(x²) + ε))``, an RMSNorm traced from its call)
  is a normalization (1/σ held constant), its signal x.
- A product of two tensors (einsum, matmul) learns which input is its signal when the other
  is attention weights (produced by a softmax): CP-LRP holds those constant.
- A hidden softmax is of kind "softmax" (AttnLRP has a rule for it).
- Each node learns which of its inputs are non-negative by construction (ReLU
  outputs and what pooling/reshaping passes on), which lets z⁺ skip the x⁻ term,
  and whether relevance can reach its negative outputs (else z⁺ skips its sign-aware part).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools

from keras_dtd.core import registry
from keras_dtd.core.registry import Kind
from keras_dtd.core.tracing import Graph, Node


def canonize(graph: Graph, gates=None) -> Graph:
    """Return a copy of ``graph`` with the rewrites above applied. ``gates``: ``{name of a
    Multiply layer: name of the layer whose output is its gate}`` where detection is not wanted."""
    nodes = [
        dataclasses.replace(n, kind=registry.kind_of(n.layer, len(n.inputs), n.arguments))
        for n in graph.nodes
    ]
    for node in nodes:  # options of a layer that its entry says keras_dtd cannot explain
        entry = registry.lookup(node.layer, len(node.inputs), node.arguments)
        if entry is not None and entry.check is not None:
            entry.check(node.layer)
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
        if bn_node.kind != Kind.BATCH_NORM:
            continue
        k = producer.get(bn_node.inputs[0])
        if k is None:
            continue
        layer = nodes[k].layer
        if not registry.folds_batch_norm(layer):
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
            registry.activation_name(node.layer)
            if kind in (Kind.KERNEL, Kind.ELEMENTWISE, Kind.RECURRENT)
            else "linear"
        )
        outputs = folded[k].outputs if k in folded else node.outputs
        if set(outputs) & model_outputs and activation in registry.OUTPUT_ACTIVATIONS:
            activation = "linear"
            if kind == Kind.ELEMENTWISE:
                kind = Kind.STRIPPED
        elif kind == Kind.ELEMENTWISE and activation == "softmax":
            kind = Kind.SOFTMAX
        node = dataclasses.replace(node, outputs=outputs, kind=kind, activation=activation)
        maps = registry.linear_map(node, folded[k].layer if k in folded else None)
        if not isinstance(maps, tuple):
            result.append(dataclasses.replace(node, linear_map=maps))
            continue
        # two maps in a row (a SeparableConv): the first, named <path>/depthwise, then the second
        first, second = maps
        middle = (next(fresh_ids),)
        path = node.path + "/depthwise"
        result.append(
            dataclasses.replace(node, outputs=middle, path=path, linear_map=first, activation="linear")
        )
        result.append(dataclasses.replace(node, inputs=middle, input_shapes=(), linear_map=second))
    return result


_STATISTICS = ("reciprocal", "rsqrt")  # 1/σ of a normalization traced from its call
_PASSING = (Kind.ELEMENTWISE, Kind.STRUCTURAL, Kind.STRIPPED)


def _choose_signals(nodes: list[Node], gates: dict) -> list[Node]:
    producer = {out: node for node in nodes for out in node.outputs}
    names = {name for node in nodes for name in (node.path, node.layer.name)}
    unknown = set(gates) - names
    if unknown:
        raise ValueError(f"gates names layers the model does not have: {sorted(unknown)}.")

    def source(i, found):
        """Whether tensor i is made by a node for which ``found(node)`` holds, followed only by
        linear one-input moves or casts."""
        node = producer.get(i)
        while node is not None:
            if found(node):
                return True
            if node.activation != "linear" or node.kind not in _PASSING or len(node.inputs) != 1:
                return False
            node = producer.get(node.inputs[0])
        return False

    def gate_like(node):
        return node.activation in registry.GATE_ACTIVATIONS

    def activated(node):
        return node.activation not in ("linear", "softmax") and node.kind != Kind.STRIPPED

    def statistic(node):
        return registry.operation_name(node.layer) in _STATISTICS

    def attention_weights(node):
        return node.kind == Kind.SOFTMAX

    def other(flags):
        signals = [k for k, flag in enumerate(flags) if not flag]
        return signals[0] if len(signals) == 1 and len(flags) == 2 else None

    chosen = []
    for node in nodes:
        if node.kind == Kind.GATE:
            named = gates.get(node.path, gates.get(node.layer.name))
            if named is not None:
                flags = [
                    producer.get(i) is not None and named in (producer[i].path, producer[i].layer.name)
                    for i in node.inputs
                ]
                if sum(flags) != 1 or len(node.inputs) != 2:
                    raise ValueError(f"gates: '{named}' is not one of the two inputs of '{node.path}'.")
                node = dataclasses.replace(node, signal=other(flags))
            elif other([source(i, statistic) for i in node.inputs]) is not None:
                signal = other([source(i, statistic) for i in node.inputs])
                node = dataclasses.replace(node, kind=Kind.NORMALIZE, signal=signal)
            else:
                signal = other([source(i, gate_like) for i in node.inputs])
                if signal is None:
                    signal = other([source(i, activated) for i in node.inputs])
                node = dataclasses.replace(node, signal=signal)
        elif node.kind == Kind.PRODUCT:
            node = dataclasses.replace(
                node, signal=other([source(i, attention_weights) for i in node.inputs])
            )
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
        if node.activation in registry.NONNEGATIVE_ACTIVATIONS:
            out = True
        elif node.activation == "linear" and registry.keeps_sign(node):
            out = flags[node.signal] if node.kind == Kind.GATE and node.signal is not None else all(flags)
        else:
            out = False
        for i in node.outputs:
            nonnegative[i] = out
        rectified = (
            out
            or all(
                c.kind == Kind.ELEMENTWISE and c.activation in registry.RECTIFIERS
                for i in node.outputs
                for c in consumers[i]
            )
            and bool(consumers[node.outputs[0]])
        )
        marked.append(dataclasses.replace(node, nonnegative_inputs=flags, rectified=rectified))
    return marked
