"""A conservation report: does a relevance map sum to what it explains, and if not, where
is relevance lost?

    report = keras_dtd.check(analyzer, x)
    print(report)                 # one line per sample
    report.error, report.first_loss
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_dtd import rules


@dataclasses.dataclass(frozen=True)
class ConservationReport:
    """Per sample: ``relevance_sum`` Σ R, ``target`` the explained output (Σ max(f, 0) or
    Σ f, see :class:`keras_dtd.Explanation`), ``error`` = relevance_sum − target,
    ``negative_share`` Σ|R⁻| / Σ|R|, and ``first_loss``: None if every layer passes on
    what it receives (within ``tolerance`` × |target|), else the first layer from the
    output that does not, as (layer path, relevance in − relevance passed on, cause)."""

    relevance_sum: np.ndarray
    target: np.ndarray
    error: np.ndarray
    negative_share: np.ndarray
    first_loss: list
    tolerance: float

    @property
    def conservative(self) -> np.ndarray:
        """Per sample: whether Σ R equals the target within the tolerance."""
        return np.abs(self.error) <= self.tolerance * np.maximum(np.abs(self.target), 1e-12)

    def __str__(self):
        lines = [f"{'sample':>6} {'sum R':>12} {'target':>12} {'error':>10} {'neg. share':>10}  first loss"]
        for k in range(len(self.target)):
            loss = self.first_loss[k]
            where = "—" if loss is None else f"{loss[0]}: {loss[1]:+.4g} ({loss[2]})"
            lines.append(
                f"{k:>6} {self.relevance_sum[k]:>12.6g} {self.target[k]:>12.6g} {self.error[k]:>+10.3g} "
                f"{self.negative_share[k]:>10.3g}  {where}"
            )
        return "\n".join(lines)


def _cause(rule) -> str:
    """Why a rule may not pass on all it receives."""
    if isinstance(rule, rules.Epsilon):
        return "ε absorbs relevance" + (", bias in the denominator" if rule.bias == "include" else "")
    if getattr(rule, "bias", "ignore") == "include":
        return "bias in the denominator"
    if getattr(rule, "stabilizer", None) is not None:
        return "stabilizer"
    if isinstance(rule, rules.AlphaBeta):
        return "αβ where an output lacks positive or negative contributions"
    return "a zero denominator (no contributions of the rule's kind) or a path without relevance"


def check(analyzer, x, neuron_selection="max_activation", tolerance=1e-4) -> ConservationReport:
    """Run ``analyzer`` on ``x`` and report, per sample, Σ R against the explained output,
    the share of negative relevance and, for rule-based analyzers, the first layer (from
    the output) where Σ relevance in and Σ relevance passed on differ by more than
    ``tolerance`` × |target|, with the likely cause.

    Args:
      analyzer: any :class:`keras_dtd.Analyzer`.
      x: the inputs, as for :meth:`~keras_dtd.Analyzer.analyze`.
      neuron_selection: as for :meth:`~keras_dtd.Analyzer.analyze`.
      tolerance: the share of |target| a layer may lose before it is reported.

    Returns:
      A :class:`ConservationReport`.
    """
    explanation = analyzer.explain(x, neuron_selection, return_layers=bool(analyzer.rules))
    maps = explanation.relevance if isinstance(explanation.relevance, list) else [explanation.relevance]
    n = len(explanation.target)
    flat = np.concatenate([np.asarray(m, np.float64).reshape(n, -1) for m in maps], axis=1)
    total = flat.sum(axis=1)
    magnitude = np.abs(flat).sum(axis=1)
    negative = np.divide(
        np.abs(np.minimum(flat, 0)).sum(axis=1), magnitude, out=np.zeros(n), where=magnitude > 0
    )
    target = explanation.target.astype(np.float64)
    first_loss = [None] * n
    if explanation.balance:
        rules_by_path = {node.path: rule for node, rule in zip(analyzer.graph.nodes, analyzer.rules)}
        for node in reversed(analyzer.graph.nodes):
            if node.path not in explanation.balance:
                continue
            received, passed = np.asarray(explanation.balance[node.path], np.float64).T
            lost = received - passed
            for k in np.flatnonzero(np.abs(lost) > tolerance * np.maximum(np.abs(target), 1e-12)):
                if first_loss[k] is None:
                    first_loss[k] = (node.path, float(lost[k]), _cause(rules_by_path[node.path]))
    return ConservationReport(total, target, total - target, negative, first_loss, tolerance)
