"""Relevance rules: how a layer hands the relevance of its outputs to its inputs.

Notation: x layer input, w weights, z_j = Σ_i x_i w_ij, R_j relevance of output j.
Proportional rules (:class:`Proportional`) redistribute R_i = Σ_j q_ij / Σ_i' q_i'j · R_j;
their engine (:mod:`keras_dtd.rules.engine`) computes them with the layer's linear map
and its transpose. A zero denominator gives zero relevance, never NaN.

Modules: :mod:`~keras_dtd.rules.base` (the :class:`Rule` interface and :class:`LayerCall`),
:mod:`~keras_dtd.rules.proportional` (z, ε, z⁺, w², flat, γ, z^B, αβ),
:mod:`~keras_dtd.rules.structural` (pass-through, routing, winner-take-all, gates,
embeddings), :mod:`~keras_dtd.rules.recurrent` (LSTM, GRU, SimpleRNN, Bidirectional),
:mod:`~keras_dtd.rules.gradient` (deconvnet, guided backpropagation),
:mod:`~keras_dtd.rules.modifiers` (the weight modifiers of proportional terms), and the
engine: :mod:`~keras_dtd.rules.engine`, :mod:`~keras_dtd.rules.signs`.
"""

from keras_dtd.core.domains import Domain
from keras_dtd.rules import modifiers
from keras_dtd.rules.attention import Attention
from keras_dtd.rules.base import LayerCall, Rule
from keras_dtd.rules.engine import BIAS_POLICIES
from keras_dtd.rules.gradient import Deconvnet, GuidedBackprop
from keras_dtd.rules.proportional import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Proportional,
    WSquare,
    Z,
    ZBox,
    ZPlus,
    ZPlusFast,
)
from keras_dtd.rules.recurrent import Recurrent
from keras_dtd.rules.structural import (
    EmbeddingSum,
    Gate,
    NoRelevance,
    PassThrough,
    Route,
    Softmax,
    UniformProduct,
    WinnerTakeAll,
)

__all__ = [
    "AlphaBeta",
    "Attention",
    "BIAS_POLICIES",
    "Deconvnet",
    "Domain",
    "EmbeddingSum",
    "Epsilon",
    "Flat",
    "Gamma",
    "Gate",
    "GuidedBackprop",
    "LayerCall",
    "NoRelevance",
    "PassThrough",
    "Proportional",
    "Recurrent",
    "Route",
    "Rule",
    "Softmax",
    "UniformProduct",
    "WSquare",
    "WinnerTakeAll",
    "Z",
    "ZBox",
    "ZPlus",
    "ZPlusFast",
    "modifiers",
]
