"""The layer registry: what each Keras layer class, and each ``keras.ops`` operation used on
symbolic tensors, is to keras_dtd.

An entry (:class:`LayerType`) says what a layer is (its :class:`Kind`), how to build its
linear map (:mod:`keras_dtd.core.linear_maps`), whether it absorbs a BatchNormalization
that follows it, and which facts about values it keeps. A layer gets the entry of the most
specific registered class in its MRO, so subclasses inherit their parent's entry (a
``Dense`` subclass is a Dense, KerasHub's ``ReversibleEmbedding`` an Embedding); a
subclass whose ``call`` computes something else needs an entry of its own
(:func:`register_layer`). Layers without an entry are refused by name.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras

from keras_dtd.core import linear_maps as M
from keras_dtd.core.kinds import Kind
from keras_dtd.core.tracing import (
    APPLICATION_LAYERS,
    Node,
    UnsupportedLayerError,
    constant_tensors,
    operation_name,
)

KL = keras.layers


# Which model-input facts each kind keeps (see keeps_sign, passes_domain, keeps_support).
_KEEPS_SIGN = (Kind.POOL, Kind.MAX_POOL, Kind.STRUCTURAL, Kind.STRIPPED, Kind.GATE)
_PASSES_DOMAIN = (Kind.POOL, Kind.ADD, Kind.BATCH_NORM, Kind.MAX_POOL, Kind.STRUCTURAL, Kind.STRIPPED)
_KEEPS_SUPPORT = (Kind.ELEMENTWISE, Kind.STRIPPED, Kind.BATCH_NORM)


@dataclasses.dataclass(frozen=True)
class LayerType:
    """One registry entry.

    Attributes:
      kind: a :class:`Kind`.
      linear_map: for the linear kinds, ``linear_map(node, batch_norm)`` builds the node's
        :class:`~keras_dtd.core.linear_maps.LinearMap` (``node.layer`` is the layer;
        ``batch_norm`` the BatchNormalization folded into it, or None), or a pair of maps
        applied one after the other (a SeparableConv: its depthwise half, a node named
        ``<path>/depthwise``, then its pointwise half with the bias and activation).
      folds_batch_norm: whether a BatchNormalization right after the layer (with a linear
        activation) is folded into its map.
      keeps_sign: for ``ELEMENTWISE`` layers, whether outputs are ≥ 0 wherever inputs are
        (before the activation); other kinds decide by themselves.
      group: "dense" or "convolution" for the layer groups of
        :mod:`keras_dtd.composites` (``DENSE``, ``CONVOLUTIONS``), else None.
      check: ``check(layer)`` raises :class:`UnsupportedLayerError` for options keras_dtd
        cannot explain (run when an analyzer is built), or None.
      explains_call: ``explains_call(arguments)``: whether the entry explains a call with
        these arguments (``Node.arguments``); a call it does not explain is traced inside
        (an Embedding called with ``reverse=True`` as a language model's head). None: all.
    """

    kind: str
    linear_map: Callable | None = None
    folds_batch_norm: bool = False
    keeps_sign: bool = False
    group: str | None = None
    check: Callable | None = None
    explains_call: Callable | None = None


def _kernel(map_class):
    return lambda node, batch_norm: map_class(node.layer, "kernel", "bias", batch_norm)


def _separable(node, batch_norm):
    return M.separable_maps(node.layer, batch_norm)


def _fixed(node, batch_norm):
    return M.FixedLinearMap(node)


def _weighted_sum(weights):
    return lambda node, batch_norm: M.WeightedSumMap(weights, constant_tensors(node.arguments))


def _sum_with_constant(node, batch_norm):
    """``x + c``, ``c + x``, ``x - c`` or ``c - x`` with a constant tensor c: a sum with bias ±c."""
    (constant,) = constant_tensors(node.arguments)
    tensor_first = isinstance(node.arguments.args[0], keras.KerasTensor)
    if operation_name(node.layer) == "add":
        return M.WeightedSumMap(None, (constant,))
    return M.WeightedSumMap((1.0,), (-constant,)) if tensor_first else M.WeightedSumMap((-1.0,), (constant,))


def _entries(classes, layer_type):
    return {cls: layer_type for cls in classes}


_BUILT_IN = {
    **_entries(
        (KL.Dense,), LayerType(Kind.KERNEL, _kernel(M.DenseMap), folds_batch_norm=True, group="dense")
    ),
    KL.EinsumDense: LayerType(Kind.KERNEL, _kernel(M.EinsumMap), group="dense"),
    **_entries(
        (KL.Conv1D, KL.Conv2D, KL.Conv3D),
        LayerType(Kind.KERNEL, _kernel(M.ConvMap), folds_batch_norm=True, group="convolution"),
    ),
    **_entries(
        (KL.DepthwiseConv1D, KL.DepthwiseConv2D),
        LayerType(Kind.KERNEL, _kernel(M.DepthwiseMap), folds_batch_norm=True, group="convolution"),
    ),
    **_entries(
        (KL.Conv1DTranspose, KL.Conv2DTranspose, KL.Conv3DTranspose),
        LayerType(Kind.KERNEL, _kernel(M.TransposedConvMap), folds_batch_norm=True, group="convolution"),
    ),
    **_entries(
        (KL.SeparableConv1D, KL.SeparableConv2D),
        LayerType(Kind.KERNEL, _separable, folds_batch_norm=True, group="convolution"),
    ),
    KL.LayerNormalization: LayerType(Kind.KERNEL, lambda node, batch_norm: M.LayerNormMap(node.layer)),
    **_entries(
        (
            KL.AveragePooling1D,
            KL.AveragePooling2D,
            KL.AveragePooling3D,
            KL.GlobalAveragePooling1D,
            KL.GlobalAveragePooling2D,
            KL.GlobalAveragePooling3D,
        ),
        LayerType(Kind.POOL, _fixed),
    ),
    KL.Add: LayerType(Kind.ADD, _weighted_sum(None)),
    KL.Average: LayerType(Kind.ADD, _fixed),
    KL.Subtract: LayerType(Kind.ADD, _weighted_sum((1.0, -1.0))),
    APPLICATION_LAYERS["CustomScaleLayer"]: LayerType(
        Kind.ADD, lambda node, batch_norm: M.WeightedSumMap((1.0, float(node.layer.scale)))
    ),
    KL.BatchNormalization: LayerType(Kind.BATCH_NORM, lambda node, batch_norm: M.BatchNormMap(node.layer)),
    **_entries(
        (
            KL.MaxPooling1D,
            KL.MaxPooling2D,
            KL.MaxPooling3D,
            KL.GlobalMaxPooling1D,
            KL.GlobalMaxPooling2D,
            KL.GlobalMaxPooling3D,
            KL.Maximum,
            KL.Minimum,
        ),
        LayerType(Kind.MAX_POOL),
    ),
    **_entries(
        (KL.RNN, KL.LSTM, KL.GRU, KL.SimpleRNN, KL.Bidirectional),
        LayerType(Kind.RECURRENT, check=lambda layer: _check_recurrent(layer)),
    ),
    KL.MultiHeadAttention: LayerType(Kind.ATTENTION, check=lambda layer: _check_attention(layer)),
    KL.Multiply: LayerType(Kind.GATE),
    KL.Embedding: LayerType(
        Kind.EMBEDDING, explains_call=lambda arguments: not arguments.kwargs.get("reverse")
    ),
    **_entries(
        (
            KL.Flatten,
            KL.Reshape,
            KL.Permute,
            KL.Concatenate,
            KL.RepeatVector,
            KL.ZeroPadding1D,
            KL.ZeroPadding2D,
            KL.ZeroPadding3D,
            KL.Cropping1D,
            KL.Cropping2D,
            KL.Cropping3D,
            KL.UpSampling1D,
            KL.UpSampling2D,
            KL.UpSampling3D,
        ),
        LayerType(Kind.STRUCTURAL),
    ),
    **_entries(  # elementwise, and values keep their sign (given a linear activation)
        (
            KL.InputLayer,
            KL.Dropout,
            KL.SpatialDropout1D,
            KL.SpatialDropout2D,
            KL.SpatialDropout3D,
            KL.GaussianDropout,
            KL.Identity,
            KL.Activation,
            APPLICATION_LAYERS["StochasticDepth"],
            KL.Masking,
        ),
        LayerType(Kind.ELEMENTWISE, keeps_sign=True),
    ),
    **_entries(
        (
            KL.AlphaDropout,
            KL.GaussianNoise,
            KL.Rescaling,
            KL.Normalization,
            KL.ReLU,
            KL.LeakyReLU,
            KL.PReLU,
            KL.ELU,
            KL.Softmax,
            APPLICATION_LAYERS["LayerScale"],
        ),
        LayerType(Kind.ELEMENTWISE),
    ),
}
_REGISTRY: dict[type, LayerType] = dict(_BUILT_IN)

# keras.ops operations on symbolic tensors, by name: (entry with one tensor argument, the
# others constant; entry with several), None where keras_dtd has no rule.
_ELEMENTWISE = LayerType(Kind.ELEMENTWISE)
_STRUCTURAL = LayerType(Kind.STRUCTURAL)
_SUM_WITH_CONSTANT = LayerType(Kind.ADD, _sum_with_constant)
_OPERATIONS = {
    "add": (_ELEMENTWISE, LayerType(Kind.ADD, _weighted_sum(None))),
    "subtract": (_ELEMENTWISE, LayerType(Kind.ADD, _weighted_sum((1.0, -1.0)))),
    "multiply": (_ELEMENTWISE, LayerType(Kind.GATE)),
    "einsum": (None, LayerType(Kind.PRODUCT)),
    "divide": (_ELEMENTWISE, None),
    "true_divide": (_ELEMENTWISE, None),
    "negative": (_ELEMENTWISE, None),
    "mean": (LayerType(Kind.POOL, _fixed), None),
    "sum": (LayerType(Kind.POOL, _fixed), None),
    "matmul": (LayerType(Kind.KERNEL, lambda node, batch_norm: M.MatmulMap(node)), LayerType(Kind.PRODUCT)),
    "maximum": (_ELEMENTWISE, LayerType(Kind.MAX_POOL)),
    "minimum": (_ELEMENTWISE, LayerType(Kind.MAX_POOL)),
    "max": (LayerType(Kind.MAX_POOL), None),
    "concatenate": (_STRUCTURAL, _STRUCTURAL),  # constant parts (a class token) absorb their share
    "where": (_STRUCTURAL, _STRUCTURAL),  # the condition is a mask: it gets none
    **{  # comparisons and logic: the masks Keras computes (mask_zero=True, Masking)
        name: (LayerType(Kind.MASK), LayerType(Kind.MASK))
        for name in (
            "not_equal",
            "equal",
            "greater",
            "greater_equal",
            "less",
            "less_equal",
            "logical_and",
            "logical_or",
            "logical_not",
            "any",
            "all",
            "zeros_like",  # values that do not depend on the input's values
            "ones_like",
            "full_like",
        )
    },  # fmt: skip
    "stack": (_STRUCTURAL, _STRUCTURAL),
    **{
        name: (_STRUCTURAL, None)
        for name in (
            "reshape",
            "transpose",
            "expand_dims",
            "squeeze",
            "flatten",
            "split",
            "slice",
            "get_item",
            "moveaxis",
            "swapaxes",
            "repeat",
            "tile",
            "broadcast_to",
            "pad",
            "cast",
        )
    },
}

# Elementwise activations: relevance passes through them (exact DTD only for relu/linear).
ELEMENTWISE_ACTIVATIONS = frozenset(
    {
        "linear",
        "relu",
        "relu6",
        "bounded_relu",
        "leaky_relu",
        "thresholded_relu",
        "prelu",
        "elu",
        "selu",
        "celu",
        "gelu",
        "gelu_approximate",  # KerasHub's BERT
        "silu",
        "swish",
        "hard_silu",
        "hard_swish",
        "hard_sigmoid",
        "sigmoid",
        "tanh",
        "softplus",
        "softsign",
        "mish",
        "log_sigmoid",
        "exponential",
        "exp",
        "hard_tanh",
        "squareplus",
        "sparse_plus",
        "sparse_sigmoid",
        "tanh_shrink",
        "soft_shrink",
        "hard_shrink",
        "threshold",
    }
)
# The activations of ReLU networks, for which the DTD rules are derived.
RELU_ACTIVATIONS = ("relu", "linear")
# Activations stripped when they end the model: DTD explains the pre-activation score.
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")
# Activations whose output is >= 0 (z⁺ can then skip its x⁻ term).
NONNEGATIVE_ACTIVATIONS = frozenset(
    {
        "relu",
        "relu6",
        "bounded_relu",
        "sigmoid",
        "hard_sigmoid",
        "softplus",
        "exponential",
        "exp",
        "sparse_sigmoid",
        "squareplus",
    }
)
# Activations that zero every negative input.
RECTIFIERS = frozenset({"relu", "relu6", "bounded_relu"})
# Activations that make a Multiply input a gate (values in [0, c]).
GATE_ACTIVATIONS = frozenset({"sigmoid", "hard_sigmoid", "relu6", "bounded_relu", "sparse_sigmoid"})
# Activations that are not monotone: input bounds do not map through them.
_NON_MONOTONE = frozenset(
    {"gelu", "gelu_approximate", "silu", "swish", "hard_silu", "hard_swish", "mish", "threshold"}
)


_CELLS = ("LSTMCell", "GRUCell", "SimpleRNNCell")


def _check_recurrent(layer):
    """Refuse recurrent options that :class:`keras_dtd.rules.Recurrent` does not explain."""
    name = f"Layer '{layer.name}' ({type(layer).__name__})"
    layers = [layer]
    if isinstance(layer, KL.Bidirectional):
        if layer.merge_mode not in ("concat", "sum", "ave"):
            raise UnsupportedLayerError(
                f"{name} merges its two directions with merge_mode={layer.merge_mode!r}; keras_dtd explains "
                "'concat', 'sum' and 'ave'. Use one of those, or give the layer a rule of your own with "
                f"layer_rules={{'{layer.name}': rule}}."
            )
        layers = [layer.forward_layer, layer.backward_layer]
    for inner in layers:
        cells = getattr(inner.cell, "cells", [inner.cell])  # a StackedRNNCells: each of its cells
        unknown = [
            c for c in cells if type(c).__name__ not in _CELLS or type(c).__module__.split(".")[0] != "keras"
        ]
        if unknown or type(inner.cell).__module__.split(".")[0] != "keras":
            raise UnsupportedLayerError(
                f"{name} runs the cell {type((unknown or [inner.cell])[0]).__name__}; keras_dtd explains "
                "Keras' LSTMCell, GRUCell and SimpleRNNCell (also in a StackedRNNCells). Register what your "
                "cell computes as a layer of its own (keras_dtd.register_layer) or give the layer a rule "
                "with layer_rules=."
            )
        for option in ("stateful", "return_state"):
            if getattr(inner, option, False):
                raise UnsupportedLayerError(
                    f"{name} has {option}=True, which keras_dtd does not explain: a map explains one "
                    f"output of one call. Build the model with {option}=False for the analyzer."
                )


def _check_attention(layer):
    """Refuse MultiHeadAttention options that :class:`keras_dtd.rules.Attention` does not explain."""
    name = f"Layer '{layer.name}' (MultiHeadAttention)"
    problems = []
    if layer.get_config().get("sliding_window") is not None:
        problems.append("a sliding window")
    if layer.attention_axes is not None and tuple(layer.attention_axes) not in ((1,), (-2,)):
        problems.append(f"attention_axes={layer.attention_axes}")
    if problems:
        raise UnsupportedLayerError(
            f"{name} uses {', '.join(problems)}, which keras_dtd does not explain yet. Give the layer a rule "
            f"of your own with layer_rules={{'{layer.name}': rule}}, or build it without these options."
        )


def register_layer(
    layer_class: type[keras.layers.Layer],
    kind: str,
    linear_map: Callable[
        [Node, keras.layers.BatchNormalization | None], M.LinearMap | tuple[M.LinearMap, M.LinearMap]
    ]
    | None = None,
    *,
    folds_batch_norm: bool = False,
    keeps_sign: bool = False,
    group: str | None = None,
) -> None:
    """Tell keras_dtd what a layer class is; its subclasses inherit the entry.

    Example, a layer computing ``x @ self.w`` explained like a Dense without bias::

        from keras_dtd.core import linear_maps

        def projection_map(node, batch_norm):
            return linear_maps.DenseMap(node.layer, "w", None, batch_norm)

        keras_dtd.register_layer(Projection, "kernel", projection_map)

    Args:
      layer_class: a ``keras.layers.Layer`` subclass. A later registration for the same
        class replaces the earlier one (a built-in entry included).
      kind: one of :class:`Kind` (except ``STRIPPED``), e.g. "kernel" or "elementwise".
      linear_map: ``linear_map(node, batch_norm)`` returning a
        :class:`~keras_dtd.core.linear_maps.LinearMap`; required for "kernel" and
        "batch_norm"; for "pool" and "add" the default is the layer itself as a map with
        fixed non-negative weights; not allowed for the other kinds.
      folds_batch_norm: fold a following BatchNormalization into the map (which must then
        take ``batch_norm`` into account).
      keeps_sign: for "elementwise" layers: outputs are ≥ 0 wherever inputs are.
      group: "dense" or "convolution" to count the class as such in composites' groups.

    Raises:
      TypeError: ``layer_class`` is not a Keras layer class or ``linear_map`` not callable.
      ValueError: an unknown kind, or a linear map missing or given where it does not belong.
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(f"register_layer needs a keras.layers.Layer subclass; received: {layer_class!r}.")
    if kind not in Kind.ALL or kind == Kind.STRIPPED:
        kinds = ", ".join(k for k in Kind.ALL if k != Kind.STRIPPED)
        raise ValueError(f"register_layer: unknown kind {kind!r}; kinds are {kinds}.")
    if linear_map is not None and not callable(linear_map):
        raise TypeError(
            f"register_layer: linear_map must be callable(node, batch_norm); received: {linear_map!r}."
        )
    if linear_map is None and kind in (Kind.POOL, Kind.ADD):
        linear_map = _fixed
    if (linear_map is None) != (kind not in Kind.LINEAR):
        raise ValueError(
            f"register_layer({layer_class.__name__}, {kind!r}): "
            + (
                "a layer of this kind needs linear_map=."
                if linear_map is None
                else f"only the kinds {', '.join(Kind.LINEAR)} have a linear map."
            )
        )
    if group not in (None, "dense", "convolution"):
        raise ValueError(
            f"register_layer: group must be None, 'dense' or 'convolution'; received: {group!r}."
        )
    _REGISTRY[layer_class] = LayerType(kind, linear_map, folds_batch_norm, keeps_sign, group)


def unregister_layer(layer_class: type[keras.layers.Layer]) -> None:
    """Forget a registration made with :func:`register_layer` (a built-in entry returns)."""
    _REGISTRY.pop(layer_class, None)
    if layer_class in _BUILT_IN:
        _REGISTRY[layer_class] = _BUILT_IN[layer_class]


def layer_classes(group: str) -> tuple[type, ...]:
    """The built-in layer classes of a group ("dense" or "convolution")."""
    return tuple(cls for cls, entry in _BUILT_IN.items() if entry.group == group)


def in_group(layer, group: str) -> bool:
    """Whether a layer is in ``group``: an instance of the group's built-in classes, or of a class
    registered with ``register_layer(..., group=group)`` (the most specific registration)."""
    if isinstance(layer, layer_classes(group)):
        return True
    registered = next((c for c in type(layer).__mro__ if c in _REGISTRY and c not in _BUILT_IN), None)
    return registered is not None and _REGISTRY[registered].group == group


def lookup(layer, n_tensor_inputs=1, arguments=None) -> LayerType | None:
    """The entry of a layer (the most specific registered class in its MRO) or of a
    ``keras.ops`` operation (by name and number of tensor arguments; ``arguments``, a
    node's, tell ``x + c`` with a constant tensor c, a sum with bias, from ``x + 3.0``,
    elementwise), or None. A TimeDistributed layer has its inner layer's entry, its map
    applied at every step."""
    name = operation_name(layer)
    if isinstance(layer, KL.TimeDistributed):
        return _time_distributed(lookup(layer.layer))
    if name is None:
        return next((_REGISTRY[c] for c in type(layer).__mro__ if c in _REGISTRY), None)
    if name in ("add", "subtract") and n_tensor_inputs == 1 and arguments is not None:
        if len(constant_tensors(arguments)) == 1:
            return _SUM_WITH_CONSTANT
    if name in _OPERATIONS:
        return _OPERATIONS[name][0 if n_tensor_inputs == 1 else 1]
    return _ELEMENTWISE if name in ELEMENTWISE_ACTIVATIONS or name == "softmax" else None


def _time_distributed(inner):
    """The entry of a TimeDistributed layer from its inner layer's (None where steps interact)."""
    if inner is None or inner.kind in (Kind.RECURRENT, Kind.EMBEDDING, Kind.GATE):
        return None

    def linear_map(node, batch_norm):
        maps = inner.linear_map(dataclasses.replace(node, layer=node.layer.layer, arguments=None), batch_norm)
        return (
            tuple(map(M.TimeDistributedMap, maps)) if isinstance(maps, tuple) else M.TimeDistributedMap(maps)
        )

    def check(layer):
        if inner.check is not None:
            inner.check(layer.layer)

    built = inner.linear_map is not None
    return LayerType(inner.kind, linear_map if built else None, False, inner.keeps_sign, inner.group, check)


def traces_call(layer, arguments) -> bool:
    """Whether a layer's call is traced inside (its operations and layers become nodes): a
    layer without an entry (a custom layer), or one whose entry does not explain this call."""
    entry = lookup(layer)
    if entry is None:
        return not isinstance(layer, keras.Model)
    return entry.explains_call is not None and not entry.explains_call(arguments)


def kind_of(layer, n_tensor_inputs=1, arguments=None) -> str | None:
    """The :class:`Kind` of a layer or operation, or None if it has no entry."""
    entry = lookup(layer, n_tensor_inputs, arguments)
    return None if entry is None else entry.kind


def linear_map(node, batch_norm=None):
    """The linear map(s) of a node of a linear kind (see :class:`LayerType`), else None."""
    entry = lookup(node.layer, len(node.inputs), node.arguments)
    return None if entry is None or entry.linear_map is None else entry.linear_map(node, batch_norm)


def folds_batch_norm(layer) -> bool:
    """Whether a BatchNormalization after ``layer`` can be folded into its map."""
    entry = lookup(layer)
    return entry is not None and entry.folds_batch_norm and activation_name(layer) == "linear"


def activation_name(layer) -> str:
    """Name of the elementwise function a layer or operation applies: 'relu', 'silu', ...
    ('linear' if none)."""
    name = operation_name(layer)
    if name is not None:
        return name if name in ELEMENTWISE_ACTIVATIONS or name == "softmax" else "linear"
    if isinstance(layer, KL.Softmax):
        return "softmax"
    if isinstance(layer, KL.Bidirectional):
        return activation_name(layer.forward_layer)
    if isinstance(layer, KL.TimeDistributed):
        return activation_name(layer.layer)
    if isinstance(layer, KL.ReLU):
        if layer.negative_slope:
            return "leaky_relu"
        if layer.threshold:
            return "thresholded_relu"
        if layer.max_value is not None:
            return "relu6" if float(layer.max_value) == 6.0 else "bounded_relu"
        return "relu"
    for cls, name in ((KL.LeakyReLU, "leaky_relu"), (KL.PReLU, "prelu"), (KL.ELU, "elu")):
        if isinstance(layer, cls):
            return name
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    return getattr(activation, "__name__", type(activation).__name__)


def keeps_sign(node) -> bool:
    """Whether a node's outputs are >= 0 whenever its inputs are (before its activation)."""
    if constant_tensors(node.arguments) and node.kind not in (Kind.GATE, Kind.ELEMENTWISE):
        return False  # a constant joins the values (a class token, a position table)
    if node.kind in _KEEPS_SIGN:
        return True  # for a gate: gates are >= 0, the sign is the signal's
    if node.kind == Kind.ADD:
        return node.linear_map.fixed_weights
    if node.kind == Kind.ELEMENTWISE:
        entry = lookup(node.layer, len(node.inputs), node.arguments)
        return entry is not None and entry.keeps_sign
    return False


def passes_domain(node) -> bool:
    """Whether what is known about a model input's entries (support, bounds) carries through
    this node to the next layer: true for layers that move, pool, sum or monotonically
    rescale values; false for kernel layers (their outputs are hidden units), gates,
    embeddings and non-monotone activations."""
    if node.kind in _PASSES_DOMAIN:
        return not constant_tensors(node.arguments)
    return node.kind == Kind.ELEMENTWISE and node.activation not in _NON_MONOTONE


def keeps_support(node) -> bool:
    """Whether a node keeps every entry in place, so a real input stays a real input."""
    return node.kind in _KEEPS_SUPPORT
