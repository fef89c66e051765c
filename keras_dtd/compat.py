"""iNNvestigate-style entry point: ``create_analyzer(name, model, **kwargs)``.

    analyzer = create_analyzer("deep_taylor.bounded", model, low=0.0, high=1.0)
    R = analyzer.analyze(x)                      # neuron_selection_mode="max_activation"
    analyzer = create_analyzer("lrp.epsilon", model, neuron_selection_mode="index", epsilon=0.01)
    R = analyzer.analyze(x, neuron_selection=3)
"""

from __future__ import annotations

from keras_dtd import rules as R
from keras_dtd.analyzer import DTD, LRP, Analyzer, Gradient

_MODES = ("max_activation", "index", "all")


def _deep_taylor(model, **kw):
    return DTD(model, **kw)


def _deep_taylor_bounded(model, low, high, **kw):
    return DTD(model, input_range=(low, high), **kw)


def _lrp(rule_factory):
    def make(model, **kw):
        rule_kw = {k: kw.pop(k) for k in ("epsilon", "alpha", "beta", "gamma") if k in kw}
        return LRP(model, rule_factory(**rule_kw), **kw)

    return make


ANALYZERS = {
    "deep_taylor": _deep_taylor,
    "deep_taylor.bounded": _deep_taylor_bounded,
    "gradient": lambda model, **kw: Gradient(model, **kw),
    "lrp.z": _lrp(R.Z),
    "lrp.z_plus": _lrp(R.ZPlus),
    "lrp.w_square": _lrp(R.WSquare),
    "lrp.flat": _lrp(R.Flat),
    "lrp.epsilon": _lrp(R.Epsilon),
    "lrp.gamma": _lrp(R.Gamma),
    "lrp.alpha_beta": _lrp(R.AlphaBeta),
    "lrp.alpha_1_beta_0": _lrp(lambda: R.AlphaBeta(1.0, 0.0)),
    "lrp.alpha_2_beta_1": _lrp(lambda: R.AlphaBeta(2.0, 1.0)),
}


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
            raise ValueError(f"neuron_selection is only used with neuron_selection_mode='index', not '{mode}'.")
        return self.analyzer.analyze(X, neuron_selection=mode)


def create_analyzer(name: str, model, neuron_selection_mode: str = "max_activation", **kwargs):
    """Build the analyzer iNNvestigate calls ``name`` (see ``ANALYZERS``) for ``model``."""
    if name not in ANALYZERS:
        raise ValueError(f"Unknown analyzer '{name}'. Available: {', '.join(sorted(ANALYZERS))}.")
    if neuron_selection_mode not in _MODES:
        raise ValueError(f"neuron_selection_mode must be one of {_MODES}, got '{neuron_selection_mode}'.")
    return CompatAnalyzer(ANALYZERS[name](model, **kwargs), neuron_selection_mode)
