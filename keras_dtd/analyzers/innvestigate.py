"""iNNvestigate's entry point: ``create_analyzer(name, model, **kwargs)`` with iNNvestigate
2.1.2's 28 analyzer names, keyword arguments and numbers.

    analyzer = create_analyzer("lrp.epsilon", model, neuron_selection_mode="index", epsilon=0.01)
    R = analyzer.analyze(x, neuron_selection=3)

Each name builds a keras_dtd analyzer with iNNvestigate's conventions (tested against
iNNvestigate's own outputs): LRP starts from the signed selected output; a kernel layer's
rule skips its fused activation; average pooling gets the z rule, Add and BatchNorm the
gradient (which copies relevance to each summand); a standalone ReLU layer the gradient;
αβ with bias puts the whole bias in both denominators; ``deep_taylor`` is z⁺ everywhere with
gradient pooling (``keras_dtd.DTD`` is the paper's w²/z^B + z⁺ instead).
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import keras

from keras_dtd import rules
from keras_dtd.analyzers import composites as C
from keras_dtd.analyzers.analyzer import LRP, Analyzer
from keras_dtd.analyzers.baselines import (
    Gradient,
    InputTimesGradient,
    InputValues,
    IntegratedGradients,
    Random,
    SmoothGrad,
)
from keras_dtd.core.kinds import Kind

_MODES = ("max_activation", "index", "all")
_ANALYZER_KWARGS = ("batch_size", "jit_compile", "output", "gates")  # passed on to every analyzer
_EPSILON = 1e-7  # iNNvestigate's default ε (K.epsilon())


def _base(route_pooling=False):
    """iNNvestigate's treatment of the layers without a kernel."""
    return {
        keras.layers.ReLU: rules.Route(),
        Kind.POOL: rules.Route() if route_pooling else rules.Z(),
        Kind.ADD: rules.Route(),
        Kind.BATCH_NORM: rules.Route(),
    }


def _lrp(model, kernel_rules, first=None, names=None, name="lrp", **kw):
    composite = C.Composite(
        rules={**kernel_rules, **_base()}, first=first or {}, names=names or {}, name=name
    )
    return LRP(model, composite, **kw)


def _one_rule(rule_factory, name):
    def make(model, **kw):
        return _lrp(model, {Kind.KERNEL: rule_factory()}, name=name, **kw)

    return make


RULE_NAMES = {  # iNNvestigate's rule names (for the "lrp" analyzer's rule=...)
    "Z": lambda: rules.Z(bias="include"),
    "ZIgnoreBias": lambda: rules.Z(),
    "Epsilon": lambda: rules.Epsilon(_EPSILON),
    "EpsilonIgnoreBias": lambda: rules.Epsilon(_EPSILON, bias="ignore"),
    "WSquare": lambda: rules.WSquare(),
    "Flat": lambda: rules.Flat(),
    "Alpha2Beta1": lambda: rules.AlphaBeta(2.0, 1.0, bias="both"),
    "Alpha2Beta1IgnoreBias": lambda: rules.AlphaBeta(2.0, 1.0),
    "Alpha1Beta0": lambda: rules.AlphaBeta(1.0, 0.0, bias="both"),
    "Alpha1Beta0IgnoreBias": lambda: rules.AlphaBeta(1.0, 0.0),
    "ZPlus": lambda: rules.AlphaBeta(1.0, 0.0),
    "ZPlusFast": lambda: rules.ZPlusFast(),
}


def _rule(rule):
    if isinstance(rule, rules.Rule):
        return rule
    if rule in RULE_NAMES:
        return RULE_NAMES[rule]()
    raise ValueError(f"Unknown LRP rule {rule!r}. Rules: {', '.join(RULE_NAMES)}, or a keras_dtd.rules.Rule.")


def _kernel_layers(model):
    """(index in model.layers, layer) of the layers with a kernel, in the model's order."""
    return [
        (k, layer)
        for k, layer in enumerate(model.layers)
        if any(w.path.split("/")[-1].endswith("kernel") for w in layer.weights)
    ]


def lrp(model, rule=None, input_layer_rule=None, **kw):
    """``rule``: one rule name (or Rule) for every kernel layer, or a list; iNNvestigate pops
    the list while it visits the kernel layers in order, so the LAST entry goes to the
    first kernel layer. ``input_layer_rule``: the rule of the kernel layers that see the input."""
    if rule is None:
        raise ValueError("lrp needs rule=<rule name, Rule, or a list with one per kernel layer>.")
    first = {} if input_layer_rule is None else {Kind.KERNEL: _rule(input_layer_rule)}
    if not isinstance(rule, (list, tuple)):
        return _lrp(model, {Kind.KERNEL: _rule(rule)}, first, **kw)
    kernels = _kernel_layers(model)
    if len(rule) != len(kernels):
        raise ValueError(f"lrp: rule lists {len(rule)} rules for {len(kernels)} kernel layers.")
    names = {layer.name: _rule(r) for (_, layer), r in zip(kernels, reversed(list(rule)))}
    return _lrp(model, {Kind.KERNEL: rules.Z(bias="include")}, first, names, **kw)


def lrp_alpha_beta(model, alpha=None, beta=None, bias=True, **kw):
    """αβ with α − β = 1; one of them may be left out. ``bias``: the whole bias in both denominators."""
    if alpha is None and beta is None:
        raise ValueError("lrp.alpha_beta needs alpha or beta (alpha - beta = 1).")
    alpha = beta + 1.0 if alpha is None else alpha
    beta = alpha - 1.0 if beta is None else beta
    return _one_rule(
        lambda: rules.AlphaBeta(alpha, beta, bias="both" if bias else "ignore"), "lrp.alpha_beta"
    )(model, **kw)


def lrp_epsilon(model, epsilon=_EPSILON, bias=True, **kw):
    return _one_rule(lambda: rules.Epsilon(epsilon, bias="include" if bias else "ignore"), "lrp.epsilon")(
        model, **kw
    )


def _sequential_rules(alpha, beta, epsilon):
    """iNNvestigate's sequential presets: ε (with bias) on Dense, αβ (bias in both) on convolutions."""
    return {
        C.DENSE: rules.Epsilon(epsilon),
        C.CONVOLUTIONS: rules.AlphaBeta(alpha, beta, bias="both"),
        Kind.KERNEL: rules.Epsilon(epsilon),
    }


def _sequential_preset(alpha, beta, flat):
    def make(model, epsilon=0.1, **kw):
        return _lrp(
            model,
            _sequential_rules(alpha, beta, epsilon),
            {Kind.KERNEL: rules.Flat()} if flat else None,
            **kw,
        )

    return make


def sequential_preset_b_flat_until_idx(model, until_layer_idx=None, epsilon=0.1, **kw):
    """Preset B, and Flat on the kernel layers at ``model.layers`` indices 0..until_layer_idx
    (inclusive; the InputLayer of a functional model counts as index 0, as in iNNvestigate)."""
    if until_layer_idx is None:
        return _sequential_preset(2.0, 1.0, True)(model, epsilon=epsilon, **kw)
    flat = {layer.name: rules.Flat() for k, layer in _kernel_layers(model) if k <= until_layer_idx}
    return _lrp(model, _sequential_rules(2.0, 1.0, epsilon), None, flat, **kw)


def deep_taylor(model, **kw):
    """iNNvestigate's deep_taylor: z⁺ (α1β0 without bias) on every kernel layer, the gradient
    through pooling, starting from max(f, 0)."""
    composite = C.Composite(
        rules={Kind.KERNEL: rules.AlphaBeta(1.0, 0.0), **_base(route_pooling=True)}, name="deep_taylor"
    )
    return Analyzer(model, composite, **kw)


def deep_taylor_bounded(model, low=None, high=None, **kw):
    """deep_taylor with z^B(low, high) on the kernel layers that see the input."""
    if low is None or high is None:
        raise ValueError("deep_taylor.bounded needs low and high (the input bounds).")
    composite = C.Composite(
        rules={Kind.KERNEL: rules.AlphaBeta(1.0, 0.0), **_base(route_pooling=True)},
        first={Kind.KERNEL: rules.ZBox(low, high)},
        name="deep_taylor.bounded",
    )
    return Analyzer(model, composite, **kw)


def _backprop(rule, name):
    def make(model, **kw):
        composite = C.Composite(
            rules={
                Kind.KERNEL: rule,
                Kind.ELEMENTWISE: rule,
                Kind.POOL: rules.Route(),
                Kind.ADD: rules.Route(),
                Kind.BATCH_NORM: rules.Route(),
            },
            name=name,
        )
        return LRP(model, composite, **kw)

    return make


def attnlrp(model, epsilon=1e-6, **kw):
    """AttnLRP (:func:`keras_dtd.composites.AttnLRP`; not an iNNvestigate name: LXT's method)."""
    return LRP(model, C.AttnLRP(epsilon), **kw)


def cplrp(model, epsilon=1e-6, **kw):
    """CP-LRP (:func:`keras_dtd.composites.CPLRP`)."""
    return LRP(model, C.CPLRP(epsilon), **kw)


ANALYZERS = {
    "input": InputValues,
    "random": Random,
    "gradient": Gradient,
    "gradient.baseline": Gradient,
    "input_t_gradient": InputTimesGradient,
    "deconvnet": _backprop(rules.Deconvnet(), "deconvnet"),
    "guided_backprop": _backprop(rules.GuidedBackprop(), "guided_backprop"),
    "integrated_gradients": IntegratedGradients,
    "smoothgrad": SmoothGrad,
    "deep_taylor": deep_taylor,
    "deep_taylor.bounded": deep_taylor_bounded,
    "lrp": lrp,
    "lrp.z": _one_rule(RULE_NAMES["Z"], "lrp.z"),
    "lrp.epsilon": lrp_epsilon,
    "lrp.w_square": _one_rule(RULE_NAMES["WSquare"], "lrp.w_square"),
    "lrp.flat": _one_rule(RULE_NAMES["Flat"], "lrp.flat"),
    "lrp.alpha_beta": lrp_alpha_beta,
    "lrp.alpha_2_beta_1": _one_rule(RULE_NAMES["Alpha2Beta1"], "lrp.alpha_2_beta_1"),
    "lrp.alpha_2_beta_1_IB": _one_rule(RULE_NAMES["Alpha2Beta1IgnoreBias"], "lrp.alpha_2_beta_1_IB"),
    "lrp.alpha_1_beta_0": _one_rule(RULE_NAMES["Alpha1Beta0"], "lrp.alpha_1_beta_0"),
    "lrp.alpha_1_beta_0_IB": _one_rule(RULE_NAMES["Alpha1Beta0IgnoreBias"], "lrp.alpha_1_beta_0_IB"),
    "lrp.z_plus": _one_rule(RULE_NAMES["ZPlus"], "lrp.z_plus"),
    "lrp.z_plus_fast": _one_rule(RULE_NAMES["ZPlusFast"], "lrp.z_plus_fast"),
    "lrp.sequential_preset_a": _sequential_preset(1.0, 0.0, False),
    "lrp.sequential_preset_b": _sequential_preset(2.0, 1.0, False),
    "lrp.sequential_preset_a_flat": _sequential_preset(1.0, 0.0, True),
    "lrp.sequential_preset_b_flat": _sequential_preset(2.0, 1.0, True),
    "lrp.sequential_preset_b_flat_until_idx": sequential_preset_b_flat_until_idx,
    "attnlrp": attnlrp,  # the transformer methods, beside iNNvestigate's 28 names
    "cplrp": cplrp,
}


def _accepted(factory):
    """The keyword arguments a factory (or analyzer class) takes, besides the model."""
    parameters = inspect.signature(factory).parameters
    own = [p for p in list(parameters)[1:] if parameters[p].kind is not inspect.Parameter.VAR_KEYWORD]
    return own + list(_ANALYZER_KWARGS)


class CompatAnalyzer:
    """An analyzer whose neuron selection mode is fixed at creation, as in iNNvestigate."""

    def __init__(self, analyzer: Analyzer, neuron_selection_mode: str):
        self.analyzer = analyzer
        self.neuron_selection_mode = neuron_selection_mode

    def analyze(self, X, neuron_selection=None):
        mode = self.neuron_selection_mode
        if mode == "index":
            if neuron_selection is None:
                raise ValueError("neuron_selection_mode='index' needs analyze(X, neuron_selection=...).")
            return self.analyzer.analyze(X, neuron_selection=neuron_selection)
        if neuron_selection is not None:
            raise ValueError(
                f"neuron_selection is only used with neuron_selection_mode='index', not '{mode}'."
            )
        return self.analyzer.analyze(X, neuron_selection=mode)


def create_analyzer(
    name: str,
    model: keras.Model,
    neuron_selection_mode: Literal["max_activation", "index", "all"] = "max_activation",
    **kwargs: Any,
) -> CompatAnalyzer:
    """The analyzer iNNvestigate calls ``name``, with iNNvestigate's keyword arguments.

    Args:
      name: an iNNvestigate analyzer name (``ANALYZERS``), e.g. "lrp.epsilon", "deep_taylor".
      model: the Keras model.
      neuron_selection_mode: "max_activation", "index" (``analyze(x, neuron_selection=k)``)
        or "all".
      **kwargs: that analyzer's iNNvestigate keyword arguments (e.g. ``epsilon``).

    Returns:
      An object whose ``analyze(X, neuron_selection=None)`` behaves as iNNvestigate's.

    Raises:
      ValueError: an unknown name, mode or keyword, named with what is accepted.
    """
    if name not in ANALYZERS:
        raise ValueError(f"Unknown analyzer '{name}'. Available: {', '.join(sorted(ANALYZERS))}.")
    if neuron_selection_mode not in _MODES:
        raise ValueError(f"neuron_selection_mode must be one of {_MODES}, got '{neuron_selection_mode}'.")
    accepted = _accepted(ANALYZERS[name])
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"Analyzer '{name}' does not take {', '.join(unknown)}; it takes: {', '.join(accepted)}."
        )
    return CompatAnalyzer(ANALYZERS[name](model, **kwargs), neuron_selection_mode)
