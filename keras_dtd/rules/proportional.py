"""The proportional rules R_i = Σ_j q_ij / (Σ_i' q_i'j + b̃_j) · R_j, each a list of terms.

Notation: x layer input, w weights, z_j = Σ_i x_i w_ij, R_j relevance of output j.
Every rule works on any node with a linear map (Dense, Conv, depthwise, transposed,
LayerNormalization, average pooling, Add, BatchNormalization); for maps with fixed
non-negative weights (pooling, sums) W⁺ = W, W⁻ = 0 and W² ∝ W within each window.
"""

from __future__ import annotations

import tensorflow as tf

from keras_dtd.core.kinds import Kind
from keras_dtd.rules import engine, modifiers, signs
from keras_dtd.rules.base import Rule


class Proportional(Rule):
    """Base of the rules R_i = Σ_j q_ij / (Σ_i' q_i'j + b̃_j) · R_j, the extension point for
    rules of one's own: a subclass says what q is, the engine does the rest on every layer
    with a linear map (Dense, the convolutions, pooling, sums, normalizations).

    The contract:
      ``terms(call)`` returns q as a list of terms ``(inputs, modifier)``, meaning
      q_ij = Σ_t a_t,i · m_t(w_ij): ``inputs`` holds one tensor a_t per layer input, shaped
      like it (x, x⁺ = ``call.signed_inputs[0]``, x⁻, a bound; a tensor with batch size 1 is
      one row shared by all samples), ``modifier`` m_t is an elementwise function of the
      weights (:mod:`keras_dtd.rules.modifiers`, or any function of a tensor). On maps with
      fixed weights (pooling, sums) m_t acts as its factor m_t(1).
      ``bias_term(call)`` returns b̃_j (broadcastable against the outputs) or None: the
      bias's share of the denominator (``call.bias`` is b, None if the layer has none).
      ``stabilizer`` ε: the denominator d becomes d + ε·sign(d), sign(0) = +1 (zennit's
      convention); None: a zero denominator gives zero relevance.

    Example, (x w)⁺ with the bias ignored (z⁺)::

        class PositiveContributions(keras_dtd.rules.Proportional):
            def terms(self, call):
                positive, negative = call.signed_inputs
                return [(positive, modifiers.positive), (negative, modifiers.negative)]
    """

    uses_vjp = False
    bias = "ignore"
    stabilizer = None

    def terms(self, call):
        """The terms (inputs, weight modifier) of q for this call (see the class docstring)."""
        raise NotImplementedError

    def bias_term(self, call):
        """b̃_j, broadcastable against the outputs, or None."""
        return None

    def relevance(self, call, relevance):
        engine.require_linear(self, call.node)
        (r,) = relevance
        return engine.redistribute(call, [(self.terms(call), self.bias_term(call), None)], r, self.stabilizer)


class Z(Proportional):
    """LRP-0: q_ij = x_i w_ij; with ``bias="include"`` the denominator is z_j + b_j.

    Args:
      bias: "ignore" (denominator z_j) or "include" (z_j + b_j).
      stabilizer: None (a zero denominator gives zero relevance) or ε > 0: d + ε·sign(d).
    """

    def __init__(self, bias="ignore", stabilizer=None):
        engine.check_convention("Z", bias, stabilizer)
        self.bias = bias
        self.stabilizer = stabilizer

    def terms(self, call):
        return [(list(call.inputs), modifiers.identity)]

    def bias_term(self, call):
        return engine.bias_of(call, self)


class Epsilon(Z):
    """LRP-ε: q_ij = x_i w_ij, denominator d_j + ε·sign(d_j) with d_j = z_j + b_j
    (``bias="include"``, the default; z_j with "ignore") and sign(0) = +1.

    Args:
      epsilon: the stabilizer ε > 0.
      bias: "include" (d_j = z_j + b_j) or "ignore" (d_j = z_j).
    """

    def __init__(self, epsilon=1e-7, bias="include"):
        engine.check_convention("Epsilon", bias, epsilon)
        self.epsilon = epsilon
        self.bias = bias

    @property
    def stabilizer(self):
        return self.epsilon


class ZPlus(Proportional):
    """DTD z⁺: q_ij = (x_i w_ij)⁺ = x_i⁺ w_ij⁺ + x_i⁻ w_ij⁻; for ReLU inputs x_i w_ij⁺. The
    bias is ignored (``bias="include"``: b_j⁺ joins the denominator, as in zennit).
    Sign-aware where relevance reaches an output y_j < 0 (a linear bottleneck, a
    normalization, a smooth activation): there q_ij = (x_i w_ij)⁻ (denominator + b_j⁻), the
    contributions that made y_j negative, so the map stays positive and conservative. On
    ReLU networks relevance only reaches y_j > 0, and this is the paper's z⁺. (Where a bias
    gives y_j the sign opposite to Σ_i x_i w_ij, matching contributions below √eps of
    Σ_i |x_i w_ij| count as none: see :func:`keras_dtd.rules.signs.sign_matched`.)

    Args:
      bias: "ignore" or "include" (b_j⁺, and b_j⁻ on the sign-aware part).
      stabilizer: None (a zero denominator gives zero relevance) or ε > 0: d + ε·sign(d).
    """

    def __init__(self, bias="ignore", stabilizer=None):
        engine.check_convention("ZPlus", bias, stabilizer)
        self.bias = bias
        self.stabilizer = stabilizer

    def terms(self, call):
        return engine.split_signs(call)

    def keeps_rectified(self, node):
        """Sums and average pooling (fixed weights ≥ 0): only x⁺ contributes to outputs ≥ 0;
        a BatchNormalization: where its scale is > 0, which the weights decide."""
        if node.kind in (Kind.ADD, Kind.POOL) and node.linear_map.fixed_weights:
            return "yes"
        return "maybe" if node.kind == Kind.BATCH_NORM else "no"

    def relevance(self, call, relevance):
        engine.require_linear(self, call.node)
        (r,) = relevance
        node = call.node

        def positive_only():
            positive = (engine.split_signs(call), engine.bias_of(call, self, modifiers.positive), None)
            return engine.redistribute(call, [positive], r, self.stabilizer)

        if node.rectified:  # relevance reaches no output below 0
            return positive_only()
        kernel_map = call.kernel is not None and not node.linear_map.diagonal
        nonnegative = all(node.nonnegative_inputs)
        if node.maybe_rectified and kernel_map and nonnegative:  # weights decide at run time
            return signs.negative_side_when_reached(call, r, self)

        if kernel_map and not nonnegative:

            def both_signs():  # x⁺ and x⁻ terms would double every map of both sides: |x|, |W| instead
                return signs.sign_matched(call, r, self)
        else:  # built here, not under tf.cond: x⁺ and x⁻ (cached on the call) serve both branches
            below = call.outputs[0] < 0
            negative = (
                engine.split_signs(call, opposing=True),
                engine.bias_of(call, self, modifiers.negative),
                below,
            )

            def both_signs():
                positive = (engine.split_signs(call), engine.bias_of(call, self, modifiers.positive), ~below)
                return engine.redistribute(call, [positive, negative], r, self.stabilizer)

        if not node.maybe_rectified:
            return both_signs()
        # whether relevance reaches outputs below 0 depends on weights: check at run time
        reached = tf.reduce_any(tf.logical_and(call.outputs[0] < 0, tf.not_equal(r, 0)))
        return tf.cond(
            reached,
            lambda: engine.zeros_for_none(call, both_signs()),
            lambda: engine.zeros_for_none(call, positive_only()),
        )


class WSquare(Proportional):
    """DTD w²: q_ij = w_ij² (first layer, unbounded input in ℝ^d); padding added by a
    layer such as ZeroPadding2D is not an input and gets nothing; hidden units mixed
    into the input (a Concatenate of input and features) get z⁺ terms x⁺w⁺ + x⁻w⁻.
    ``bias="include"``: b_j² joins the denominator (zennit).

    Args:
      bias: "ignore" or "include" (b_j²).
      stabilizer: None (a zero denominator gives zero relevance) or ε > 0: d + ε·sign(d).
    """

    def __init__(self, bias="ignore", stabilizer=None):
        engine.check_convention("WSquare", bias, stabilizer)
        self.bias = bias
        self.stabilizer = stabilizer

    def terms(self, call):
        return [(engine.support(call), modifiers.square)] + engine.hidden_zplus_terms(call)

    def bias_term(self, call):
        return engine.bias_of(call, self, modifiers.square)


class Flat(Proportional):
    """LRP-flat: q_ij = 1 for every connected input i (padding excluded, as for w²;
    hidden units mixed into the input get z⁺ terms); the bias is ignored.

    Args:
      stabilizer: None (a zero denominator gives zero relevance) or ε > 0: d + ε·sign(d).
    """

    def __init__(self, stabilizer=None):
        engine.check_convention("Flat", "ignore", stabilizer)
        self.stabilizer = stabilizer

    def terms(self, call):
        return [(engine.support(call), modifiers.ones)] + engine.hidden_zplus_terms(call)


class Gamma(Proportional):
    """LRP-γ. Textbook (``sign_aware=False``): q_ij = x_i (w_ij + γ w_ij⁺), denominator
    + b_j + γ b_j⁺ with ``bias="include"``. zennit's form (``sign_aware=True``): where the
    output z_j = Σ_i x_i w_ij + b_j > 0, q_ij = x_i⁺ w↑_ij + x_i⁻ w↓_ij (+ b_j + γ b_j⁺);
    where z_j < 0, q_ij = x_i⁺ w↓_ij + x_i⁻ w↑_ij (+ b_j + γ b_j⁻); none where z_j = 0;
    w↑ = w + γw⁺, w↓ = w + γw⁻: the contributions sharing z_j's sign are boosted.

    Args:
      gamma: γ ≥ 0, the boost of the contributions sharing the output's sign.
      bias: "ignore" or "include" (as in the formulas above).
      stabilizer: None (a zero denominator gives zero relevance) or ε > 0: d + ε·sign(d).
      sign_aware: zennit's form (True) or the textbook one (False).
    """

    def __init__(self, gamma=0.25, bias="ignore", stabilizer=None, sign_aware=False):
        engine.check_convention("Gamma", bias, stabilizer)
        self.gamma = gamma
        self.bias = bias
        self.stabilizer = stabilizer
        self.sign_aware = sign_aware

    def _up(self, w):
        return w + self.gamma * tf.nn.relu(w)

    def _down(self, w):
        return w + self.gamma * modifiers.negative(w)

    def terms(self, call):
        return [(list(call.inputs), self._up)]

    def bias_term(self, call):
        return engine.bias_of(call, self, self._up)

    def relevance(self, call, relevance):
        if not self.sign_aware:
            return super().relevance(call, relevance)
        engine.require_linear(self, call.node)
        (r,) = relevance
        z = call.outputs[0]
        if call.node.activation != "linear":  # the pre-activation, from the forward pass
            z = call.linear if call.bias is None else call.linear + call.bias
        groups = [
            (engine.signs(call, self._up, self._down), engine.bias_of(call, self, self._up), z > 0),
            (engine.signs(call, self._down, self._up), engine.bias_of(call, self, self._down), z < 0),
        ]
        return engine.redistribute(call, groups, r, self.stabilizer)


class ZBox(Proportional):
    """DTD z^B: q_ij = x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻ for inputs bounded by l ≤ x ≤ h
    (the bias cancels).

    ``low``/``high`` (scalars or arrays broadcastable to one sample of the layer's
    input) may be given here; by default they come from the analyzer's ``input_range``.
    Hidden units mixed into the input get (l, h) = (min(x, 0), max(x, 0)), which makes
    q_ij = x_i⁺ w_ij⁺ + x_i⁻ w_ij⁻ there: exactly z⁺.

    Args:
      low, high: the input bounds, or None for the analyzer's ``input_range``.
      stabilizer: None (a zero denominator gives zero relevance) or ε > 0: d + ε·sign(d).
    """

    def __init__(self, low=None, high=None, stabilizer=None):
        if (low is None) != (high is None):
            raise ValueError("ZBox needs both low and high, or neither.")
        engine.check_convention("ZBox", "ignore", stabilizer)
        self.low = low
        self.high = high
        self.stabilizer = stabilizer

    def terms(self, call):
        (x,) = call.inputs
        domain = call.domains[0]
        if self.low is not None:
            low, high = tf.cast(self.low, x.dtype), tf.cast(self.high, x.dtype)
        elif domain is not None and domain.low is not None:
            low, high = domain.low, domain.high
        else:
            raise ValueError(
                f"The z^B rule on layer '{call.node.path}' needs input bounds: pass "
                "input_range=(low, high) to the analyzer or use ZBox(low, high)."
            )
        hidden = engine.hidden_parts(call)
        if hidden is not None:
            low = low + modifiers.negative(hidden[0])
            high = high + tf.nn.relu(hidden[0])
        terms = [([x], modifiers.identity)]
        for bound, weights in ((low, modifiers.positive), (high, modifiers.negative)):
            if not engine.is_zero(bound):  # a zero bound adds nothing to q (e.g. low = 0 for pixels)
                per_sample = bound.shape.rank and bound.shape[0] != 1  # hidden units' bounds: per sample
                terms.append(
                    (
                        [
                            -(
                                tf.broadcast_to(bound, tf.shape(x))
                                if per_sample
                                else engine.one_row_of(bound, x)
                            )
                        ],
                        weights,
                    )
                )
        return terms


class AlphaBeta(Rule):
    """LRP-αβ: R_i = Σ_j (α q⁺_ij / Σ_i' q⁺_i'j − β q⁻_ij / Σ_i' q⁻_i'j) R_j with
    q⁺ = x⁺w⁺ + x⁻w⁻ and q⁻ = x⁺w⁻ + x⁻w⁺ (α − β = 1 keeps it conservative).
    ``bias``: "ignore"; "include": b_j⁺ joins the positive, b_j⁻ the negative denominator
    (zennit); "both": the whole b_j joins both (iNNvestigate 2.1.2).

    Args:
      alpha, beta: the shares α, β with α − β = 1.
      bias: "ignore", "include" or "both" (above).
      stabilizer: None (a zero denominator gives zero relevance) or ε > 0: d + ε·sign(d).
    """

    uses_vjp = False

    def __init__(self, alpha=1.0, beta=0.0, bias="ignore", stabilizer=None):
        if abs(alpha - beta - 1.0) > 1e-12:
            raise ValueError(f"AlphaBeta needs alpha - beta = 1, got alpha={alpha}, beta={beta}.")
        engine.check_convention("AlphaBeta", "ignore" if bias == "both" else bias, stabilizer)
        self.alpha = alpha
        self.beta = beta
        self.bias = bias
        self.stabilizer = stabilizer

    def _bias_parts(self, call):
        if self.bias == "ignore" or call.bias is None:
            return None, None
        if self.bias == "both":
            return call.bias, call.bias
        return modifiers.positive(call.bias), modifiers.negative(call.bias)

    def relevance(self, call, relevance):
        engine.require_linear(self, call.node)
        (r,) = relevance
        positive_bias, negative_bias = self._bias_parts(call)
        groups = [(engine.split_signs(call), positive_bias, self.alpha)]
        if self.beta:
            groups.append((engine.split_signs(call, opposing=True), negative_bias, -self.beta))
        return engine.redistribute(call, groups, r, self.stabilizer)


class ZPlusFast(Proportional):
    """iNNvestigate's z_plus_fast: q_ij = x_i w_ij⁺ whatever the sign of x_i (z⁺ for inputs
    known to be ≥ 0), bias ignored."""

    def terms(self, call):
        return [(list(call.inputs), modifiers.positive)]
