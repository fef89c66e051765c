"""Composites: which rule goes to which layer, by layer class, layer kind and position.

A composite maps selectors to rules. A selector is a Keras layer class or a tuple of
classes (matched with isinstance; a SeparableConv's depthwise and pointwise halves
match its class), or a layer kind (:class:`keras_dtd.core.kinds.Kind`): "kernel" (Dense,
the convolutions, LayerNormalization, ...), "pool" (average pooling), "add" (sums),
"batch_norm" (a BatchNormalization no kernel layer absorbs), "max_pool", "gate",
"embedding", "structural", "elementwise", "stripped" (a final softmax or sigmoid). For
each layer the first match wins:

  1. ``names``: ``{layer name (or nested path "outer/inner"): rule}``;
  2. ``first``, for the first kernel layer(s): those that see model input values;
     ``first_layer="every"`` counts each of them (DTD), "one" only the first in the
     model's order that ``first`` selects (zennit's convention);
  3. ``rules``;
  4. defaults: max pooling → WinnerTakeAll, gates → Gate, Embedding → EmbeddingSum,
     layers that move values → Route, elementwise layers and a stripped output → PassThrough.

``DeepTaylor`` (what ``DTD`` uses), ``Uniform`` (``LRP`` with one rule), iNNvestigate's
presets and zennit's composites are all composites. ``DENSE`` and ``CONVOLUTIONS`` are the
layer groups of the registry (:mod:`keras_dtd.core.registry`), as zennit's ``types``:

    LRP(model, composites.EpsilonGammaBox(low=0.0, high=1.0))
    LRP(model, composites.Composite({keras.layers.Dense: rules.Epsilon(), CONVOLUTIONS: rules.ZPlus()}))
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from keras_dtd import rules
from keras_dtd.core import registry
from keras_dtd.core.kinds import Kind

KINDS = Kind.ALL
_DEFAULTS = {
    Kind.MAX_POOL: rules.WinnerTakeAll(),
    Kind.GATE: rules.Gate(),
    Kind.NORMALIZE: rules.Gate(),
    Kind.PRODUCT: rules.UniformProduct(),
    Kind.SOFTMAX: rules.PassThrough(),
    Kind.EMBEDDING: rules.EmbeddingSum(),
    Kind.STRUCTURAL: rules.Route(),
    Kind.ELEMENTWISE: rules.PassThrough(),
    Kind.STRIPPED: rules.PassThrough(),
    Kind.MASK: rules.NoRelevance(),
}


class LayerGroup(tuple):
    """A group of layer classes, as zennit's ``types``: the registry group's built-in classes
    (a tuple of them), and as a selector also every class registered with
    ``register_layer(..., group=name)``, when the composite is applied."""

    def __new__(cls, name):
        group = super().__new__(cls, registry.layer_classes(name))
        group.name = name
        return group


DENSE = LayerGroup("dense")
CONVOLUTIONS = LayerGroup("convolution")


def _check_map(name, mapping):
    for selector, rule in mapping.items():
        classes = selector if isinstance(selector, tuple) else (selector,)
        if isinstance(selector, str):
            if selector not in KINDS:
                raise ValueError(
                    f"Composite {name}: unknown layer kind '{selector}'; kinds are {', '.join(KINDS)}."
                )
        elif not classes or not all(isinstance(c, type) for c in classes):
            raise TypeError(
                f"Composite {name}: a selector is a layer class, a tuple of classes or a kind; "
                f"got {selector!r}."
            )
        if not isinstance(rule, rules.Rule):
            raise TypeError(f"Composite {name}: {selector!r} maps to {rule!r}, not a keras_dtd.rules.Rule.")


def _matches(selector, node) -> bool:
    if isinstance(selector, str):
        return node.kind == selector
    if isinstance(selector, LayerGroup):
        return registry.in_group(node.layer, selector.name)
    return isinstance(node.layer, selector)


@dataclasses.dataclass(frozen=True)
class Composite:
    """Rules by selector (see the module docstring). ``non_relu``: what to do with hidden
    activations other than ReLU, through which relevance passes: "pass", "warn" (one
    :class:`keras_dtd.NonReLUWarning` naming the layers) or "refuse"."""

    rules: Any = dataclasses.field(default_factory=dict)
    first: Any = dataclasses.field(default_factory=dict)
    names: Any = dataclasses.field(default_factory=dict)
    first_layer: str = "every"
    non_relu: str = "pass"
    name: str = "composite"

    def __post_init__(self):
        _check_map(self.name, self.rules)
        _check_map(self.name, self.first)
        for layer_name, rule in self.names.items():
            if not isinstance(layer_name, str) or not isinstance(rule, rules.Rule):
                raise TypeError(
                    f"Composite {self.name}: names maps layer names to rules; got {layer_name!r}: {rule!r}."
                )
        if self.first_layer not in ("every", "one"):
            raise ValueError(
                f"Composite {self.name}: first_layer must be 'every' or 'one', got {self.first_layer!r}."
            )
        if self.non_relu not in ("pass", "warn", "refuse"):
            raise ValueError(
                f"Composite {self.name}: non_relu must be 'pass', 'warn' or 'refuse', got {self.non_relu!r}."
            )

    def first_rule(self, node):
        """The rule ``first`` gives this node, or None."""
        return next((r for s, r in self.first.items() if _matches(s, node)), None)

    def rule(self, node, is_first: bool):
        """The rule for a node (None if the composite has none for its kind)."""
        named = self.names.get(node.path) or self.names.get(node.layer.name)
        if named is not None:
            return named
        if is_first:
            rule = self.first_rule(node)
            if rule is not None:
                return rule
        rule = next((r for s, r in self.rules.items() if _matches(s, node)), None)
        if rule is None and node.kind == Kind.RECURRENT:
            return self._recurrent_rule(is_first)
        if rule is None and node.kind == Kind.ATTENTION:  # the attention weights held constant
            linear = self.rules.get(Kind.KERNEL)
            return None if linear is None else rules.Attention(linear, mode="cp")
        return rule if rule is not None else _DEFAULTS.get(node.kind)

    def _recurrent_rule(self, is_first):
        """The composite's rules for kernel layers and sums inside a recurrent cell, and its
        first-layer rule where the layer reads the model's input (None when it has no rule
        for one of those kinds)."""
        linear, sum_rule = (self.rules.get(kind) for kind in (Kind.KERNEL, Kind.ADD))
        if linear is None or sum_rule is None:
            return None
        return rules.Recurrent(linear, sum_rule, self.first.get(Kind.KERNEL) if is_first else None)


def DeepTaylor(input_range=None, strict=False) -> Composite:
    """Deep Taylor Decomposition: w² (or z^B with ``input_range``) on the first kernel
    layers, z⁺ on every other linear map. Activations other than ReLU pass relevance on
    with a warning (refused if ``strict``).

    Args:
      input_range: None (inputs in ℝ^d: w²) or the input bounds (z^B; the bounds
        themselves are given to the analyzer).
      strict: refuse hidden activations other than ReLU instead of warning.

    Returns:
      A :class:`Composite` named "deep_taylor" or "deep_taylor.bounded".
    """
    bounded = input_range is not None
    return Composite(
        rules={kind: rules.ZPlus() for kind in Kind.LINEAR},
        first={Kind.KERNEL: rules.ZBox() if bounded else rules.WSquare()},
        non_relu="refuse" if strict else "warn",
        name="deep_taylor.bounded" if bounded else "deep_taylor",
    )


def Uniform(rule: rules.Rule, first_rule: rules.Rule | None = None, name: str = "lrp") -> Composite:
    """One rule on every linear map (what ``LRP(model, rule)`` uses).

    Args:
      rule: the rule of every kernel, pooling, sum and BatchNormalization layer.
      first_rule: if given, the rule of the first kernel layers (those that see input values).
      name: the composite's name.

    Returns:
      A :class:`Composite`.
    """
    return Composite(
        rules={kind: rule for kind in Kind.LINEAR},
        first={} if first_rule is None else {Kind.KERNEL: first_rule},
        name=name,
    )


def AttnLRP(epsilon=1e-6) -> Composite:
    """AttnLRP (Achtibat et al., ICML 2024), as LXT 2.1 computes it: ε (bias in the
    denominator) on every linear map, sums proportional to their signed summands, relevance
    passing through elementwise activations, LayerNormalization linear with 1/σ held
    constant, and in MultiHeadAttention the uniform rule on q·kᵀ and A·v and AttnLRP's
    softmax rule (:class:`keras_dtd.rules.Attention`); the same rules on those operations
    traced inside custom layers (:class:`~keras_dtd.rules.UniformProduct` on products of two
    activations, GeGLU's included, :class:`~keras_dtd.rules.Softmax`), and an RMSNorm's
    1/σ held constant."""
    return _transformer("attnlrp", epsilon)


def CPLRP(epsilon=1e-6) -> Composite:
    """CP-LRP (Ali et al., ICML 2022): as :func:`AttnLRP`, but the attention weights are
    constants: all relevance of A·v goes to v, none to q and k; and a gated product (GeGLU)
    gives its gate none (signal-take-all), as LXT 2.1's CP-LRP does."""
    return _transformer("cp", epsilon)


def _transformer(mode, epsilon):
    linear = rules.Epsilon(epsilon)
    by_kind = {kind: linear for kind in Kind.LINEAR}
    by_kind[Kind.ATTENTION] = rules.Attention(linear, mode=mode, epsilon=epsilon)
    if mode == "attnlrp":  # gated products (GeGLU) by the uniform rule; CP-LRP keeps signal-take-all
        by_kind[Kind.GATE] = rules.UniformProduct(epsilon)
        by_kind[Kind.SOFTMAX] = rules.Softmax()
    # products of two activations traced inside layers (q·kᵀ, A·v): uniform, or A held constant (CP-LRP)
    by_kind[Kind.PRODUCT] = rules.UniformProduct(epsilon, signal_takes_all=mode == "cp")
    return Composite(rules=by_kind, name="attnlrp" if mode == "attnlrp" else "cplrp")


def dtd(input_range=None, strict=False) -> Composite:
    """Deprecated alias of :func:`DeepTaylor`."""
    warnings.warn(
        "composites.dtd is deprecated; use composites.DeepTaylor.", DeprecationWarning, stacklevel=2
    )
    return DeepTaylor(input_range, strict)


def lrp(rule: rules.Rule, first_rule: rules.Rule | None = None, name: str = "lrp") -> Composite:
    """Deprecated alias of :func:`Uniform`."""
    warnings.warn("composites.lrp is deprecated; use composites.Uniform.", DeprecationWarning, stacklevel=2)
    return Uniform(rule, first_rule, name)


# ---------------------------------------------------------------- zennit's composites
# zennit 1.0.0 conventions: stabilizer ε·sign(d), sign(0) = +1, ε = 1e-6 on every rule;
# biases in the denominators; average pooling and sums get its Norm rule (z with the
# stabilizer), BatchNorm is merged into the preceding layer, activations pass relevance;
# the first layer is the first in the model's order.
_ZENNIT_EPSILON = 1e-6


def _zennit(name, dense, convolution, first=None):
    norm = rules.Z(stabilizer=_ZENNIT_EPSILON)
    by_selector = {
        DENSE: dense,
        CONVOLUTIONS: convolution,
        Kind.POOL: norm,
        Kind.ADD: norm,
        Kind.BATCH_NORM: rules.PassThrough(),
    }
    return Composite(rules=by_selector, first=first or {}, first_layer="one", name=name)


def _zennit_plus():
    return rules.AlphaBeta(1.0, 0.0, bias="include", stabilizer=_ZENNIT_EPSILON)  # zennit's ZPlus


def _zennit_alpha2beta1():
    return rules.AlphaBeta(2.0, 1.0, bias="include", stabilizer=_ZENNIT_EPSILON)


def _zennit_flat_first():
    return {Kind.KERNEL: rules.Flat(stabilizer=_ZENNIT_EPSILON)}


def EpsilonPlus(epsilon=1e-6) -> Composite:
    """zennit's EpsilonPlus: ε on Dense, z⁺ (bias b⁺ in the denominator) on convolutions."""
    return _zennit("EpsilonPlus", rules.Epsilon(epsilon), _zennit_plus())


def EpsilonPlusFlat(epsilon=1e-6) -> Composite:
    """zennit's EpsilonPlusFlat: as EpsilonPlus, and flat on the first Dense or convolution."""
    return _zennit("EpsilonPlusFlat", rules.Epsilon(epsilon), _zennit_plus(), _zennit_flat_first())


def EpsilonGammaBox(low, high, epsilon=1e-6, gamma=0.25) -> Composite:
    """zennit's EpsilonGammaBox: ε on Dense, sign-aware γ (bias in the denominators) on
    convolutions, z^B with bounds (low, high) on the first convolution (a first Dense
    layer keeps ε, as in zennit)."""
    gamma_rule = rules.Gamma(gamma, bias="include", stabilizer=_ZENNIT_EPSILON, sign_aware=True)
    first = {CONVOLUTIONS: rules.ZBox(low, high, stabilizer=_ZENNIT_EPSILON)}
    return _zennit("EpsilonGammaBox", rules.Epsilon(epsilon), gamma_rule, first)


def EpsilonAlpha2Beta1(epsilon=1e-6) -> Composite:
    """zennit's EpsilonAlpha2Beta1: ε on Dense, α2β1 (b⁺, b⁻ in the denominators) on convolutions."""
    return _zennit("EpsilonAlpha2Beta1", rules.Epsilon(epsilon), _zennit_alpha2beta1())


def EpsilonAlpha2Beta1Flat(epsilon=1e-6) -> Composite:
    """zennit's EpsilonAlpha2Beta1Flat: as EpsilonAlpha2Beta1, and flat on the first layer."""
    return _zennit(
        "EpsilonAlpha2Beta1Flat", rules.Epsilon(epsilon), _zennit_alpha2beta1(), _zennit_flat_first()
    )
