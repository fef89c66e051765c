"""Which rule goes to which layer: presets (DTD, LRP variants) and the user's registry.

A rule is chosen for each node, first match wins:
  1. ``layer_rules`` given to the analyzer, by layer name (or nested path ``outer/inner``);
  2. rules registered with :func:`register_rule`, by layer class (latest first);
  3. the preset, by the layer's kind; the first kernel layer(s) seen from the input
     get the preset's ``first_kernel`` rule.
"""

from __future__ import annotations

import dataclasses

from keras_dtd import layers as L
from keras_dtd import rules as R


class UnsupportedLayerError(TypeError):
    """A layer for which no relevance rule is known."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """Rules by layer kind (see :mod:`keras_dtd.layers`)."""

    name: str
    kernel: R.Rule
    first_kernel: R.Rule
    average_pool: R.Rule = R.ZPlus()
    add: R.Rule = R.ZPlus()
    batch_norm: R.Rule = R.ZPlus()
    max_pool: R.Rule = R.WinnerTakeAll()
    structural: R.Rule = R.Route()
    elementwise: R.Rule = R.PassThrough()


def dtd(input_range=None) -> Preset:
    """Deep Taylor Decomposition: w² (or z^B with ``input_range``) first, z⁺ above."""
    bounded = input_range is not None
    return Preset(
        name="deep_taylor.bounded" if bounded else "deep_taylor",
        kernel=R.ZPlus(),
        first_kernel=R.ZBox() if bounded else R.WSquare(),
    )


def lrp(rule: R.Rule, first_rule: R.Rule | None = None, name: str = "lrp") -> Preset:
    """An LRP preset: ``rule`` on every linear layer, ``first_rule`` on the first kernel layer."""
    return Preset(
        name=name,
        kernel=rule,
        first_kernel=first_rule or rule,
        average_pool=rule,
        add=rule,
        batch_norm=rule,
    )


_REGISTRY: list[tuple[type, R.Rule]] = []


def register_rule(layer_class: type, rule: R.Rule) -> None:
    """Use ``rule`` for every layer of type ``layer_class`` (and its subclasses).

    Example: ``keras_dtd.register_rule(MyScaling, keras_dtd.rules.PassThrough())``.
    A later registration for the same class replaces the earlier one.
    """
    if not isinstance(layer_class, type):
        raise TypeError(f"register_rule needs a layer class, got {layer_class!r}.")
    if not isinstance(rule, R.Rule):
        raise TypeError(f"register_rule needs a keras_dtd.rules.Rule instance, got {rule!r}.")
    _REGISTRY[:] = [(c, r) for c, r in _REGISTRY if c is not layer_class]
    _REGISTRY.insert(0, (layer_class, rule))


def unregister_rule(layer_class: type) -> None:
    """Forget the rule registered for ``layer_class``."""
    _REGISTRY[:] = [(c, r) for c, r in _REGISTRY if c is not layer_class]


def assign(graph, preset: Preset, layer_rules=None) -> tuple[R.Rule, ...]:
    """One rule per node of the canonized ``graph``."""
    layer_rules = layer_rules or {}
    first = _first_kernel_nodes(graph)
    chosen = []
    for k, node in enumerate(graph.nodes):
        rule = layer_rules.get(node.path) or layer_rules.get(node.layer.name)
        if rule is None:
            rule = next((r for c, r in _REGISTRY if isinstance(node.layer, c)), None)
        if rule is None:
            rule = _preset_rule(node, preset, k in first)
        chosen.append(rule)
    unknown = set(layer_rules) - {n.path for n in graph.nodes} - {n.layer.name for n in graph.nodes}
    if unknown:
        raise ValueError(
            f"layer_rules names layers the model does not have: {sorted(unknown)} (a BatchNormalization "
            "folded into the Dense/Conv before it has no rule of its own)."
        )
    return tuple(chosen)


def _preset_rule(node, preset: Preset, is_first: bool) -> R.Rule:
    kind = node.kind
    if kind is None:
        cls = type(node.layer).__name__
        raise UnsupportedLayerError(
            f"Layer '{node.path}' of type {cls} is not supported by keras_dtd. Register a rule "
            f"for it, e.g. keras_dtd.register_rule({cls}, keras_dtd.rules.PassThrough()) for a "
            "layer that keeps relevance as it is, or pass layer_rules={'"
            f"{node.layer.name}': rule}} to the analyzer."
        )
    if node.activation not in L.HIDDEN_ACTIVATIONS:
        raise UnsupportedLayerError(
            f"Layer '{node.path}' ({type(node.layer).__name__}) has activation "
            f"'{node.activation}'. Deep Taylor rules need ReLU networks: hidden layers may use "
            f"{'/'.join(L.HIDDEN_ACTIVATIONS)}, and {'/'.join(L.OUTPUT_ACTIVATIONS)} only on "
            "the output (it is stripped). Register a rule for this layer to override."
        )
    if kind == "kernel":
        return preset.first_kernel if is_first else preset.kernel
    if kind == "stripped":
        return preset.elementwise
    return getattr(preset, kind)


def _first_kernel_nodes(graph) -> set[int]:
    """Indices of kernel nodes reached from a model input through no other kernel layer."""
    before_kernels = set(graph.inputs)
    first = set()
    for k, node in enumerate(graph.nodes):
        if not any(i in before_kernels for i in node.inputs):
            continue
        if node.kind == "kernel":
            first.add(k)
        else:
            before_kernels.update(node.outputs)
    return first
