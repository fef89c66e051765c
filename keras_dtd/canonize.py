"""Model-preserving rewrites of a traced graph, done once before rules are assigned.

- BatchNormalization right after a Dense/Conv with linear activation is folded
  into it (on tensors computed from the live variables; the model is untouched).
- Dense/Conv, average pooling, Add and lone BatchNormalization get a linear map
  (:mod:`keras_dtd.layers`) that rules evaluate with modified weights.
- A softmax/sigmoid that ends the model is stripped: DTD explains the score
  before it.
- Each node learns which of its inputs are non-negative by construction (ReLU
  outputs and what pooling/reshaping passes on), which lets z⁺ skip the x⁻ term.
"""

from __future__ import annotations

import collections
import dataclasses

import keras

from keras_dtd import layers as L
from keras_dtd.graph import Graph, Node


def canonize(graph: Graph) -> Graph:
    """Return a copy of ``graph`` with the rewrites above applied."""
    nodes = _attach_ops(graph, _foldable_batch_norms(graph))
    return dataclasses.replace(graph, nodes=tuple(_mark_nonnegative_inputs(nodes)))


def _foldable_batch_norms(graph: Graph) -> dict[int, Node]:
    """Map index of a kernel node → the BatchNormalization node folded into it."""
    uses = collections.Counter(i for node in graph.nodes for i in node.inputs)
    uses.update(graph.outputs)
    producer = {out: k for k, node in enumerate(graph.nodes) for out in node.outputs}
    folded = {}
    for bn_node in graph.nodes:
        if L.kind_of(bn_node.layer) != "batch_norm":
            continue
        k = producer.get(bn_node.inputs[0])
        if k is None:
            continue
        kernel_node = graph.nodes[k]
        layer = kernel_node.layer
        if L.kind_of(layer) != "kernel" or L.activation_name(layer) != "linear":
            continue
        if uses[kernel_node.outputs[0]] != 1:
            continue
        rank = len(bn_node.input_shapes[0])
        channel_axis = 1 if getattr(layer, "data_format", None) == "channels_first" else -1
        if bn_node.layer.axis % rank != channel_axis % rank:
            continue
        folded[k] = bn_node
    return folded


def _attach_ops(graph: Graph, folded: dict[int, Node]) -> list[Node]:
    folded_ids = {id(bn) for bn in folded.values()}
    model_outputs = set(graph.outputs)
    nodes = []
    for k, node in enumerate(graph.nodes):
        if id(node) in folded_ids:
            continue
        layer = node.layer
        kind = L.kind_of(layer)
        activation = L.activation_name(layer) if kind in ("kernel", "elementwise") else "linear"
        outputs = folded[k].outputs if k in folded else node.outputs
        ends_model = bool(set(outputs) & model_outputs)
        if ends_model and activation in L.OUTPUT_ACTIVATIONS:
            activation = "linear"
            if kind == "elementwise":
                kind = "stripped"
        op = None
        if kind == "kernel":
            op = L.KernelOp(layer, folded[k].layer if k in folded else None)
        elif kind == "average_pool":
            op = L.PoolOp(layer)
        elif kind == "add":
            op = L.SumOp()
        elif kind == "batch_norm":
            op = L.BatchNormOp(layer)
        nodes.append(dataclasses.replace(node, outputs=outputs, kind=kind, op=op, activation=activation))
    return nodes


_PRESERVE_SIGN = ("average_pool", "max_pool", "add", "structural", "elementwise", "stripped")


def _mark_nonnegative_inputs(nodes: list[Node]) -> list[Node]:
    nonnegative: dict[int, bool] = {}
    marked = []
    for node in nodes:
        flags = tuple(nonnegative.get(i, False) for i in node.inputs)
        if node.activation == "relu":
            out = True
        elif (
            node.kind in _PRESERVE_SIGN
            and node.activation == "linear"
            and not isinstance(node.layer, keras.layers.Rescaling)
        ):
            out = all(flags)
        else:
            out = False
        for i in node.outputs:
            nonnegative[i] = out
        marked.append(dataclasses.replace(node, nonnegative_inputs=flags))
    return marked
