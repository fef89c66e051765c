"""Trace a Keras 3 functional or Sequential model into an ordered list of nodes.

This is the only module that touches Keras internals (``_nodes_by_depth``,
``_functional``, ``Node.arguments``, the classes of ``keras.ops`` operations and of
the layers ``keras.applications`` defines for itself). Nested models are expanded
in place, so the relevance pass sees one flat graph of layers and operations.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any

import keras
from keras.src.applications.convnext import LayerScale, StochasticDepth
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
from keras.src.models.functional import Functional

from keras_dtd.core.kinds import Kind

# Layers that keras.applications defines for itself (not exported by keras.layers).
APPLICATION_LAYERS = {
    "CustomScaleLayer": CustomScaleLayer,
    "LayerScale": LayerScale,
    "StochasticDepth": StochasticDepth,
}


def operation_name(operation) -> str | None:
    """snake_case name of a ``keras.ops`` operation used on symbolic tensors in a functional
    model ('add', 'multiply', 'mean', 'leaky_relu', ...), or None for a layer."""
    if isinstance(operation, keras.layers.Layer) or not type(operation).__module__.startswith(
        "keras.src.ops"
    ):
        return None
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", type(operation).__name__).lower()


def attention_gate(layer):
    """The gate projection of a ``MultiHeadAttention(use_gate=True)`` (an EinsumDense with a
    sigmoid), or None: Keras keeps it in a private attribute."""
    return getattr(layer, "_gate_dense", None) if layer.get_config().get("use_gate") else None


def constant_arguments(node) -> list:
    """The non-tensor positional arguments of a traced call (e.g. the 3.0 of ``x + 3.0``)."""
    tensors = {id(t) for t in node.arguments.keras_tensors}
    return [a for a in node.arguments.args if id(a) not in tensors]


class ModelNotTraceableError(TypeError):
    """The model's computation graph cannot be read (e.g. a subclassed model)."""


class UnsupportedLayerError(TypeError):
    """A layer for which no relevance rule is known, or whose weights cannot be read."""


@dataclasses.dataclass(frozen=True)
class Node:
    """One call of one layer: ``outputs = layer(inputs)``.

    ``inputs``/``outputs`` are ids of tensors in the traced graph; ``path`` names
    the layer, prefixed with the names of the models it is nested in. The fields
    after ``arguments`` are filled in by :mod:`keras_dtd.core.canonize`: ``kind`` and
    ``linear_map`` (see :mod:`keras_dtd.core.registry`), the ``activation`` applied after it,
    which inputs are non-negative by construction, for a gate which input is the
    ``signal``, and whether relevance can only reach outputs ≥ 0 (``rectified``), or does
    so depending on weights known only at run time (``maybe_rectified``).
    """

    layer: keras.layers.Layer
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    path: str
    input_shapes: tuple[tuple, ...] = ()
    arguments: Any = dataclasses.field(repr=False, default=None)
    kind: str | None = None
    linear_map: Any = None
    activation: str = "linear"
    nonnegative_inputs: tuple[bool, ...] = ()
    signal: int | None = None
    rectified: bool = False
    maybe_rectified: bool = False

    def forward(self, inputs, parameters=None):
        """Output tensors of this node for the given input tensors (inference mode). A node
        with a linear map may be given its (kernel, bias), as computed once per pass."""
        return self.forward_linear(inputs, parameters)[0]

    def forward_linear(self, inputs, parameters=None):
        """(outputs, Σ_i x_i w_ij): the outputs and, for a node with a linear map, the map's
        value before bias and activation (None for other nodes)."""
        if self.linear_map is not None:
            kernel, bias = self.linear_map.parameters(inputs) if parameters is None else parameters
            linear = self.linear_map.apply(inputs, kernel)
            z = linear if bias is None else linear + bias
            if self.activation == "linear":
                return [z], linear
            function = (
                getattr(self.layer, "activation", None) or self.layer.layer.activation
            )  # TimeDistributed
            return [function(z)], linear
        if self.kind == Kind.STRIPPED:
            return [inputs[0]], None
        tensor_dict = {id(t): x for t, x in zip(self.arguments.keras_tensors, inputs)}
        args, kwargs = self.arguments.fill_in(tensor_dict)
        if getattr(self.layer, "_call_has_training_arg", False):
            kwargs["training"] = False
        return list(keras.tree.flatten(self.layer(*args, **kwargs))), None


@dataclasses.dataclass(frozen=True)
class Graph:
    """A traced model: ``nodes`` in execution order between ``inputs`` and ``outputs``."""

    model: keras.Model
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    nodes: tuple[Node, ...]
    input_shapes: tuple[tuple, ...]
    input_dtypes: tuple[str, ...]
    output_shapes: tuple[tuple, ...]
    output_names: tuple[str, ...]


def _function_of(model):
    """The Keras ``Function`` holding ``model``'s graph, or a clear error."""
    if isinstance(model, keras.Sequential):
        if type(model).call is not keras.Sequential.call:
            raise ModelNotTraceableError(
                f"Model '{model.name}' subclasses keras.Sequential and overrides call(); "
                "its graph cannot be traced. Build it as a plain Sequential or functional model."
            )
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ModelNotTraceableError(
                f"Sequential model '{model.name}' is not built, so its graph is unknown. "
                "Start it with keras.Input(shape=...) or call model.build(input_shape) first."
            )
        return functional
    if isinstance(model, Functional) and type(model).call is Functional.call:
        return model
    raise ModelNotTraceableError(
        f"Model '{model.name}' ({type(model).__name__}) is a subclassed keras.Model whose "
        "computation graph cannot be traced. Wrap its layers in a functional model, e.g. "
        "inputs = keras.Input(shape); outputs = ...layers...(inputs); keras.Model(inputs, outputs)."
    )


def trace(model: keras.Model) -> Graph:
    """Flatten ``model`` (nested models included) into a :class:`Graph`."""
    function = _function_of(model)
    fresh_ids = itertools.count()
    nodes: list[Node] = []
    path_counts: dict[str, int] = {}

    def expand(function, input_ids, prefix):
        ids = {id(t): i for t, i in zip(function.inputs, input_ids)}
        for depth in sorted(function._nodes_by_depth, reverse=True):
            for keras_node in function._nodes_by_depth[depth]:
                if keras_node.is_input:
                    continue
                layer = keras_node.operation
                in_ids = tuple(ids[id(t)] for t in keras_node.input_tensors)
                name = prefix + layer.name
                if isinstance(layer, keras.Model):
                    out_ids = expand(_function_of(layer), in_ids, name + "/")
                else:
                    out_ids = tuple(next(fresh_ids) for _ in keras_node.outputs)
                    count = path_counts.get(name, 0)
                    path_counts[name] = count + 1
                    nodes.append(
                        Node(
                            layer=layer,
                            inputs=in_ids,
                            outputs=out_ids,
                            path=name if count == 0 else f"{name}#{count}",
                            input_shapes=tuple(tuple(t.shape) for t in keras_node.input_tensors),
                            arguments=keras_node.arguments,
                        )
                    )
                for t, i in zip(keras_node.outputs, out_ids):
                    ids[id(t)] = i
        return tuple(ids[id(t)] for t in function.outputs)

    input_ids = tuple(next(fresh_ids) for _ in function.inputs)
    output_ids = expand(function, input_ids, "")
    return Graph(
        model=model,
        inputs=input_ids,
        outputs=output_ids,
        nodes=tuple(nodes),
        input_shapes=tuple(tuple(t.shape) for t in function.inputs),
        input_dtypes=tuple(str(t.dtype) for t in function.inputs),
        output_shapes=tuple(tuple(t.shape) for t in function.outputs),
        output_names=tuple(_producer_name(t) for t in function.outputs),
    )


def _producer_name(tensor) -> str:
    history = getattr(tensor, "_keras_history", None)
    return history.operation.name if history is not None else ""
