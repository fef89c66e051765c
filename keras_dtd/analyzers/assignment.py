"""Which rule goes to which layer: the user's overrides, the registry, then the composite.

A rule is chosen for each node, first match wins:
  1. ``layer_rules`` given to the analyzer, by layer name (or nested path ``outer/inner``);
  2. rules registered with :func:`register_rule`, by layer class (latest first);
  3. the composite (:mod:`keras_dtd.composites`): by position (first kernel layers),
     layer class or kind.
A node that relevance cannot reach (its outputs feed only inputs that the rules give
none: a normalization's statistics, a mask, sines computed from positions) gets
:class:`~keras_dtd.rules.NoRelevance` and needs no rule.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import NamedTuple

from keras_dtd import rules
from keras_dtd.analyzers.composites import Composite
from keras_dtd.core import registry
from keras_dtd.core.kinds import Kind
from keras_dtd.core.tracing import UnsupportedLayerError, operation_name


class NonReLUWarning(UserWarning):
    """DTD passes relevance through activations other than ReLU: the map stays conservative
    and positive, but the paper's root-point derivation assumes ReLU."""


_REGISTRY: list[tuple[type, rules.Rule]] = []


def register_rule(layer_class: type, rule: rules.Rule) -> None:
    """Use ``rule`` for every layer of type ``layer_class`` (and its subclasses), ahead of
    any composite; the latest registration wins.

    Example: ``keras_dtd.register_rule(MyScaling, keras_dtd.rules.PassThrough())``. To give a
    linear layer every rule at once, register the layer instead
    (:func:`keras_dtd.register_layer`).

    Args:
      layer_class: a layer class.
      rule: a :class:`keras_dtd.rules.Rule` instance.

    Raises:
      TypeError: ``layer_class`` is not a class or ``rule`` not a Rule.
    """
    if not isinstance(layer_class, type):
        raise TypeError(f"register_rule needs a layer class, got {layer_class!r}.")
    if not isinstance(rule, rules.Rule):
        raise TypeError(f"register_rule needs a keras_dtd.rules.Rule instance, got {rule!r}.")
    _REGISTRY[:] = [(c, r) for c, r in _REGISTRY if c is not layer_class]
    _REGISTRY.insert(0, (layer_class, rule))


def unregister_rule(layer_class: type) -> None:
    """Forget the rule registered for ``layer_class``."""
    _REGISTRY[:] = [(c, r) for c, r in _REGISTRY if c is not layer_class]


_UNREACHED = rules.NoRelevance()


def registered_rule(layer):
    """The rule :func:`register_rule` gave the layer's class (the latest match), or None."""
    return next((r for c, r in _REGISTRY if isinstance(layer, c)), None)


class Assignment(NamedTuple):
    """What :func:`assign` returns: one rule per node; the hidden non-ReLU activations
    ("path (activation)"); the tensors relevance can reach (model inputs among them)."""

    rules: tuple
    non_relu: tuple
    reached: frozenset


def assign(graph, composite: Composite, layer_rules=None) -> Assignment:
    """The rules of the canonized ``graph``'s nodes (an :class:`Assignment`); refuses
    non-ReLU activations if the composite says so (see :func:`non_relu_warning` for "warn")."""
    layer_rules = layer_rules or {}
    first = _first_kernel_nodes(graph)
    if composite.first_layer == "one":
        selected = [k for k in sorted(first) if composite.first_rule(graph.nodes[k]) is not None]
        first = set(selected[:1])
    chosen = [None] * len(graph.nodes)
    non_relu = []
    reached = set(graph.outputs)
    for k in reversed(range(len(graph.nodes))):
        node = graph.nodes[k]
        if not reached & set(node.outputs):
            chosen[k] = _UNREACHED
            continue
        rule = layer_rules.get(node.path) or layer_rules.get(node.layer.name)
        if rule is None:
            rule = registered_rule(node.layer)
        if rule is None:
            rule = _composite_rule(node, composite, k in first)
            if node.kind == Kind.ATTENTION:
                non_relu.append(f"{node.path} (softmax attention)")
            elif node.activation not in registry.RELU_ACTIVATIONS:
                non_relu.append(f"{node.path} ({node.activation})")
        chosen[k] = rule
        receivers = rule.receivers(node)
        reached.update(node.inputs if receivers is None else [node.inputs[i] for i in receivers])
    non_relu.reverse()
    if non_relu and composite.non_relu == "refuse":
        raise UnsupportedLayerError(
            f"strict=True: {len(non_relu)} layers use activations other than ReLU: {_listed(non_relu)}. Deep "
            "Taylor rules are derived for ReLU networks; without strict=True relevance passes through them."
        )
    unknown = set(layer_rules) - {n.path for n in graph.nodes} - {n.layer.name for n in graph.nodes}
    if unknown:
        raise ValueError(
            f"layer_rules names layers the model does not have: {sorted(unknown)} (a BatchNormalization "
            "folded into the Dense/Conv before it has no rule of its own)."
        )
    return Assignment(tuple(chosen), tuple(non_relu), frozenset(reached))


def mark_rectified(graph, node_rules):
    """The graph with ``rectified`` also set on nodes whose outputs feed only layers that,
    under their rules, pass relevance to positive inputs alone: sums and average pooling
    under z⁺ (fixed non-negative weights: only x⁺ contributes) and moves (Route), whose own
    negative outputs get none; z⁺ then skips its sign-aware part (e.g. the last convolution
    of a ResNet block, whose Add feeds a ReLU). ``maybe_rectified`` where that depends on
    weights: a BatchNormalization under z⁺ passes relevance to x > 0 where its scale is > 0
    (DenseNet's convolutions feed one through a Concatenate); z⁺ then checks at run time."""
    nodes = list(graph.nodes)
    consumers = collections.defaultdict(list)
    for k, node in enumerate(nodes):
        for i in node.inputs:
            consumers[i].append(k)

    def passes(k):
        """ "yes", "maybe" or "no": whether node k's rule sends relevance to inputs > 0 alone."""
        node = nodes[k]
        if not (node.rectified or node.maybe_rectified):
            return "no"
        answer = node_rules[k].keeps_rectified(node)
        return "maybe" if answer == "yes" and not node.rectified else answer

    for k in reversed(range(len(nodes))):
        users = [passes(j) for i in nodes[k].outputs for j in consumers[i]]
        if nodes[k].rectified or not users or "no" in users:
            continue
        key = "rectified" if all(u == "yes" for u in users) else "maybe_rectified"
        nodes[k] = dataclasses.replace(nodes[k], **{key: True})
    return dataclasses.replace(graph, nodes=tuple(nodes))


def _listed(names, limit=8):
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def non_relu_warning(non_relu) -> str:
    """The message of the :class:`NonReLUWarning` for these layers ("path (activation)")."""
    return (
        f"{len(non_relu)} layers use activations other than ReLU: {_listed(list(non_relu))}. "
        "Relevance passes through them unchanged, so the map stays conservative and positive, but the "
        "deep Taylor (root point) interpretation is approximate there. DTD(..., strict=True) refuses "
        "such models."
    )


def _composite_rule(node, composite: Composite, is_first: bool) -> rules.Rule:
    kind = node.kind
    if kind is None:
        cls = type(node.layer).__name__
        if operation_name(node.layer) is not None:
            raise UnsupportedLayerError(
                f"Operation '{node.path}' (keras.ops.{operation_name(node.layer)}, used on symbolic tensors "
                f"with {len(node.inputs)} tensor input(s)) has no relevance rule in keras_dtd. Give it one "
                f"by name, e.g. layer_rules={{'{node.layer.name}': keras_dtd.rules.PassThrough()}}, or wrap "
                "the computation in a Keras layer and register a rule for that layer's class."
            )
        raise UnsupportedLayerError(
            f"Layer '{node.path}' of type {cls} is not supported by keras_dtd. Say what it is: "
            f"keras_dtd.register_layer({cls}, 'kernel', linear_map) for a linear map (see "
            "keras_dtd.core.linear_maps), or register a rule for it, e.g. "
            f"keras_dtd.register_rule({cls}, keras_dtd.rules.PassThrough()) for a layer that keeps "
            f"relevance as it is, or pass layer_rules={{'{node.layer.name}': rule}} to the analyzer."
        )
    if node.activation not in registry.ELEMENTWISE_ACTIVATIONS and kind != Kind.SOFTMAX:
        raise UnsupportedLayerError(
            f"Layer '{node.path}' ({type(node.layer).__name__}) has activation '{node.activation}', which "
            f"is not elementwise; {'/'.join(registry.OUTPUT_ACTIVATIONS)} are accepted only on the output "
            "(where they are stripped). Register a rule for this layer to override."
        )
    rule = composite.rule(node, is_first)
    if kind == Kind.GATE and node.signal is None and isinstance(rule, rules.Gate):
        raise UnsupportedLayerError(
            f"Layer '{node.path}' ({type(node.layer).__name__}) multiplies {len(node.inputs)} tensors, and "
            "keras_dtd cannot tell the signal from the gate (a gate is produced by a sigmoid-like "
            "activation). Name the gate: "
            f"DTD(model, gates={{'{node.layer.name}': '<layer producing the gate>'}})."
        )
    if rule is None:
        raise UnsupportedLayerError(
            f"Composite '{composite.name}' has no rule for layer '{node.path}' ({type(node.layer).__name__}, "
            f"kind '{kind}'). Add one for its class or kind to the composite, or pass "
            f"layer_rules={{'{node.layer.name}': rule}} to the analyzer."
        )
    return rule


def _first_kernel_nodes(graph) -> set[int]:
    """Indices of kernel (and recurrent) nodes that see model input values: reached from a model input
    through layers that pass its domain on (:func:`keras_dtd.core.registry.passes_domain`)."""
    reached = set(graph.inputs)
    first = set()
    for k, node in enumerate(graph.nodes):
        if not any(i in reached for i in node.inputs):
            continue
        if node.kind in (Kind.KERNEL, Kind.RECURRENT):
            first.add(k)
        elif registry.passes_domain(node):
            reached.update(node.outputs)
    return first
