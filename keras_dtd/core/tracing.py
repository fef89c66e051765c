"""Trace a Keras 3 functional or Sequential model into an ordered list of nodes.

This is the only module that touches Keras internals (``_nodes_by_depth``,
``_functional``, ``Node.arguments``, the classes of ``keras.ops`` operations and of
the layers ``keras.applications`` defines for itself). Nested models are expanded
in place, so the relevance pass sees one flat graph of layers and operations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import re
import threading
from typing import Any

import keras
from keras.src.applications.convnext import LayerScale, StochasticDepth
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
from keras.src.models.functional import Functional
from keras.src.ops.function import Function
from keras.src.ops.operation import Operation

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
    return snake_case(type(operation).__name__)


def attention_gate(layer):
    """The gate projection of a ``MultiHeadAttention(use_gate=True)`` (an EinsumDense with a
    sigmoid), or None: Keras keeps it in a private attribute."""
    return getattr(layer, "_gate_dense", None) if layer.get_config().get("use_gate") else None


def constant_arguments(node) -> list:
    """The non-tensor positional arguments of a traced call (e.g. the 3.0 of ``x + 3.0``)."""
    tensors = {id(t) for t in node.arguments.keras_tensors}
    return [a for a in node.arguments.args if id(a) not in tensors]


def snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def constant_tensors(arguments) -> list:
    """The constant tensors (not Python numbers) among a traced call's arguments
    (``Node.arguments``): a position table added to embeddings, a class token concatenated
    to patches, RoPE's sines."""
    if arguments is None:
        return []
    return [
        a
        for a in keras.tree.flatten((arguments.args, arguments.kwargs))
        if not isinstance(a, keras.KerasTensor) and hasattr(a, "shape") and hasattr(a, "dtype")
    ]


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
    input_names: tuple[str, ...] = ()
    traced_calls: bool = False


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


def trace(model: keras.Model, input_shapes=None, traced_call=None) -> Graph:
    """Flatten ``model`` (nested models included) into a :class:`Graph`.

    With ``input_shapes`` (one full shape per model input, batch included) and
    ``traced_call(layer, arguments) -> bool``, the layers it picks (custom layers) are traced
    inside: their ``call()`` runs on symbolic Keras tensors of the shapes they get, so the
    operations and layers it uses become nodes, named ``<layer path>/<operation>``. The
    values ``call()`` computes from weights alone (a slice of a position table, RoPE's
    sines) are constants of the graph: tensors of the ``tf.function`` being traced when
    this runs inside one (read from the variables at every call), eager values otherwise.
    """
    function = _function_of(model)
    if input_shapes is None:
        return _trace_function(model, function)
    tracer = _CallTracer(traced_call)
    inputs = [keras.KerasTensor(tuple(s), dtype=t.dtype) for s, t in zip(input_shapes, function.inputs)]
    with _TRACING, _restored_node_lists(model), _full_symbolic_shapes():
        outputs = tracer.walk(function, inputs, "", inside_call=False)
    input_ids = tuple(tracer.ids[id(t)] for t in inputs)
    if not all(isinstance(t, keras.KerasTensor) for t in outputs):
        raise ModelNotTraceableError(f"An output of model '{model.name}' does not depend on its inputs.")
    return Graph(
        model=model,
        inputs=input_ids,
        outputs=tuple(tracer.ids[id(t)] for t in outputs),
        nodes=tuple(tracer.nodes),
        input_shapes=tuple(tuple(t.shape) for t in function.inputs),  # as declared; the nodes see inputs'
        input_dtypes=tuple(str(t.dtype) for t in function.inputs),
        output_shapes=tuple(tuple(t.shape) for t in outputs),
        output_names=tuple(_producer_name(t) for t in function.outputs),
        input_names=tuple(t.name for t in function.inputs),
        traced_calls=True,
    )


def _trace_function(model, function) -> Graph:
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
        input_names=tuple(t.name for t in function.inputs),
    )


def _in_order(function):
    for depth in sorted(function._nodes_by_depth, reverse=True):
        for keras_node in function._nodes_by_depth[depth]:
            if not keras_node.is_input:
                yield keras_node


class _CallTracer:
    """Calls a graph's operations again on symbolic tensors of full shapes, tracing the
    ``call()`` of the layers ``traced_call`` picks, and records the calls as nodes."""

    def __init__(self, traced_call):
        self.traced_call = traced_call
        self.ids: dict[int, int] = {}  # id(KerasTensor) → tensor id in the graph
        self.nodes: list[Node] = []
        self.kept: list = []  # the symbolic tensors, alive while their ids are keys
        self.path_counts: dict[str, int] = {}

    def tensor_id(self, tensor) -> int:
        if id(tensor) not in self.ids:
            self.ids[id(tensor)] = len(self.ids)
            self.kept.append(tensor)
        return self.ids[id(tensor)]

    def walk(self, function, inputs, prefix, inside_call):
        """Nodes for ``function``'s operations on ``inputs``: in a functional model called
        again on them; in a traced call (``inside_call``) as recorded, unless an input
        changed (the output of a layer traced inside, or a constant)."""
        for t in inputs:
            self.tensor_id(t)
        values = {id(t): x for t, x in zip(function.inputs, inputs)}
        for keras_node in _in_order(function):
            operation = keras_node.operation
            args, kwargs = keras_node.arguments.fill_in(values)
            own_name = operation_name(operation) if inside_call else None
            name = prefix + (own_name or operation.name)
            if isinstance(operation, keras.Model):
                outputs = self.walk(_function_of(operation), _symbolic(args, kwargs), name + "/", False)
            elif isinstance(operation, keras.layers.Layer) and self.traced_call(
                operation, keras_node.arguments
            ):
                outputs = self.trace_call(operation, args, kwargs, name)
            elif inside_call and all(values.get(id(t)) is t for t in keras_node.input_tensors):
                outputs = self.record(operation, keras_node, name)
            else:
                outputs = self.call(operation, args, kwargs, name)
            for t, x in zip(keras_node.outputs, outputs):
                values[id(t)] = x
        return [values[id(t)] for t in function.outputs]

    def call(self, operation, args, kwargs, path):
        outputs = keras.tree.flatten(operation(*args, **kwargs))
        symbolic = [t for t in outputs if isinstance(t, keras.KerasTensor)]
        if not symbolic:  # computed from constants alone: a constant of the graph
            return outputs
        history = symbolic[0]._keras_history
        return self.record(operation, history.operation._inbound_nodes[history.node_index], path)

    def record(self, operation, keras_node, path):
        count = self.path_counts.get(path, 0)
        self.path_counts[path] = count + 1
        self.nodes.append(
            Node(
                layer=operation,
                inputs=tuple(self.tensor_id(t) for t in keras_node.input_tensors),
                outputs=tuple(self.tensor_id(t) for t in keras_node.outputs),
                path=path if count == 0 else f"{path}#{count}",
                input_shapes=tuple(tuple(t.shape) for t in keras_node.input_tensors),
                arguments=keras_node.arguments,
            )
        )
        return list(keras_node.outputs)

    def trace_call(self, layer, args, kwargs, path):
        if getattr(layer, "_call_has_training_arg", False):
            kwargs = {**kwargs, "training": False}
        inputs = _symbolic(args, kwargs)
        try:
            outputs = keras.tree.flatten(layer.call(*args, **kwargs))
            symbolic = [t for t in outputs if isinstance(t, keras.KerasTensor)]
            function = Function(inputs, symbolic) if symbolic else None
        except Exception as error:  # any failure of user code on symbolic tensors
            raise UnsupportedLayerError(
                f"Layer '{path}' ({type(layer).__name__}) has no registry entry, and its call() cannot be "
                f"traced on symbolic tensors: {type(error).__name__}: {error}. keras_dtd traces a custom "
                "layer by running call() on Keras symbolic tensors, which works when call() uses keras.ops "
                "and Keras layers (not tf.* functions or Python conditions on tensor values). Rewrite "
                "call() so, say what the layer is (keras_dtd.register_layer), or give it a rule (keras_dtd."
                f"register_rule({type(layer).__name__}, rule), or layer_rules={{'{layer.name}': rule}})."
            ) from error
        if function is None:  # the output does not depend on the inputs (a position table)
            return outputs
        traced = iter(self.walk(function, inputs, path + "/", inside_call=True))
        return [next(traced) if isinstance(t, keras.KerasTensor) else t for t in outputs]


def _symbolic(args, kwargs):
    return [t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]


@contextlib.contextmanager
def _restored_node_lists(model):
    """Calling layers and operations symbolically appends to their node lists: keep the
    model's as they were."""
    operations = [layer for layer in model._flatten_layers(include_self=True, recursive=True)]
    for function in _functions(model):
        operations.extend(n.operation for n in _in_order(function))
    saved = [(op, list(op._inbound_nodes), list(op._outbound_nodes)) for op in set(operations)]
    try:
        yield
    finally:
        for op, inbound, outbound in saved:
            op._inbound_nodes[:] = inbound
            op._outbound_nodes[:] = outbound


_TRACING = threading.RLock()  # one traced call at a time: the patch below is process-wide


@contextlib.contextmanager
def _full_symbolic_shapes():
    """While calls are traced, symbolic results of symbolic inputs of full shape have full
    shapes and are dense. Keras leaves an axis unknown where a layer declares it so
    (KerasHub's ``EinsumDense(output_shape=(None, ...))``), which would put None into the
    shapes that ``call()`` computes with; its result is then computed from ``call()``
    itself. And Keras marks e.g. ``multiply(x, constant)`` sparse when the constant is a
    backend tensor (no ``sparse`` attribute), on which a layer's call then fails."""
    originals = {cls: cls.symbolic_call for cls in (Operation, keras.layers.Layer)}

    def full(symbolic_call):
        def full_symbolic_call(self, *args, **kwargs):
            outputs = symbolic_call(self, *args, **kwargs)
            inputs = _symbolic(args, kwargs)
            results = [t for t in keras.tree.flatten(outputs) if isinstance(t, keras.KerasTensor)]
            if all(None not in t.shape for t in inputs) and any(None in t.shape for t in results):
                spec = keras.src.backend.compute_output_spec(self.call, *args, **kwargs)
                for t, full_spec in zip(results, keras.tree.flatten(spec)):
                    t._shape = tuple(full_spec.shape)
            if not any(t.sparse for t in inputs):
                for t in results:
                    t._sparse = False
            return outputs

        return full_symbolic_call

    for cls, symbolic_call in originals.items():
        cls.symbolic_call = full(symbolic_call)
    try:
        yield
    finally:
        for cls, symbolic_call in originals.items():
            cls.symbolic_call = symbolic_call


def _functions(model):
    function = _function_of(model)
    yield function
    for keras_node in _in_order(function):
        if isinstance(keras_node.operation, keras.Model):
            yield from _functions(keras_node.operation)


def _producer_name(tensor) -> str:
    history = getattr(tensor, "_keras_history", None)
    return history.operation.name if history is not None else ""
