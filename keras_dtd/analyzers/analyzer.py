"""The analyzer: one compiled relevance function per model, and ``analyze()`` around it."""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_dtd import rules
from keras_dtd.analyzers import assignment, checks
from keras_dtd.analyzers import composites as C
from keras_dtd.analyzers.streaming import analyze_stream, is_stream
from keras_dtd.core import registry
from keras_dtd.core.canonize import canonize
from keras_dtd.core.domains import input_domains
from keras_dtd.core.kinds import Kind
from keras_dtd.core.tracing import Graph, trace

# Inputs whose embeddings act as biases (as LXT's token-type embeddings): relevance reaching
# them is absorbed, and they get no map (KerasHub's segment ids).
BIAS_INPUTS = ("segment_ids",)
# A model input that marks padded positions (KerasHub's): a sequence's last position is its last unpadded one.
PADDING_MASK = "padding_mask"
# The size given to unknown axes when a model whose custom layers are traced is checked at construction.
_PROBE_SIZE = 2


class ZeroRelevanceWarning(UserWarning):
    """Some selected outputs are ≤ 0, so their relevance maps are zero by definition."""


class Explanation(NamedTuple):
    """What :meth:`Analyzer.explain` returns, one row per sample.

    relevance: map(s) with the shape of the input(s);
    score: the selected output f (for "all": the largest output);
    target: what a conservative map sums to: the selected outputs' Σ max(f, 0) (DTD,
      ``positive_output=True``) or Σ f (LRP, :class:`Gradient`);
    layers: ``{layer path: relevance at its output}`` when asked for, else None;
    balance: with the layers, ``{layer path: (n, 2) array}`` of each sample's relevance
      at the layer's outputs and relevance its rule passed to its inputs, in backward
      order (see :func:`keras_dtd.check`).
    """

    relevance: Any
    score: np.ndarray
    target: np.ndarray
    layers: dict | None
    balance: dict | None = None


class RelevancePass(NamedTuple):
    """What one compiled backward pass returns (tensors, a batch of samples).

    relevance: a list with the relevance at each model input, shaped like it;
    score: the selected output f per sample (for "all": the largest output);
    target: what a conservative map sums to, per sample (see :class:`Explanation`);
    layers: ``{layer path: relevance at its output}`` when ``keep_layers``, else empty;
    balance: with the layers, ``{layer path: (n, 2)}`` relevance received and passed on.
    """

    relevance: list
    score: tf.Tensor
    target: tf.Tensor
    layers: dict
    balance: dict


class _Plan(NamedTuple):
    """The canonized graph, one rule per node, the explained output's tensor id and the
    tensors relevance reaches."""

    graph: Graph
    rules: tuple
    output_id: int
    reached: frozenset


class ForwardPass(NamedTuple):
    """What :meth:`Analyzer.forward` returns (tensors).

    output: the explained model output f (a final softmax or sigmoid stripped);
    layers: ``{layer path: the layer's (first) output}``.
    """

    output: tf.Tensor
    layers: dict


class Analyzer:
    """Relevance of a Keras model's inputs for a chosen output, rule by rule.

    Args:
      model: a built functional or Sequential Keras 3 model (nested models allowed).
        It is never modified; its live weights are read at every call.
      composite: which rule goes to which layer (:mod:`keras_dtd.composites`).
      positive_output: explain max(f, 0) of the selected output f (DTD: the paper's f
        maps to ℝ⁺; a sample with f ≤ 0 gets a zero map and a warning), or, if False,
        the signed f (LRP, as iNNvestigate and zennit: "why not this class?").
      input_range: ``(low, high)`` bounds of the input (scalars or arrays
        broadcastable to one sample), used by the z^B rule; a list of pairs for
        multi-input models.
      output: which output of a multi-output model to explain (index or name).
      layer_rules: ``{layer name: rule}`` overriding the composite.
      gates: ``{Multiply layer name: name of the layer producing its gate}`` where the
        gate of a multiplication is not found automatically (see :class:`rules.Gate`).
      batch_size: samples per compiled call; larger inputs are split and the
        last part is padded, so the function is traced once.
      jit_compile: True, False or "auto" (XLA on GPU, plain graph mode on CPU,
        which was faster for these passes on CPU).

    The interface that integrations (export, streaming, metrics, the conservation report,
    relevance models) and subclasses (the baselines, Taylor) build on: :attr:`graph`,
    :attr:`rules`, :attr:`input_specs`, :attr:`output_size`, :attr:`input_range`,
    :meth:`validate_inputs`, :meth:`validate_selection`, :meth:`forward`, :meth:`select`,
    :meth:`compiled` and :meth:`relevance_pass`, the compiled pass's body, which subclasses override.
    ``trace_count`` counts the traces of :meth:`explain`'s compiled functions.

    Raises:
      ModelNotTraceableError: the model's graph cannot be read.
      UnsupportedLayerError: a layer has no rule (register one, or pass ``layer_rules``).
      ValueError: an invalid ``output``, ``input_range``, ``batch_size`` or layer name.
    """

    def __init__(
        self,
        model: keras.Model,
        composite: C.Composite | None,
        *,
        positive_output: bool = True,
        input_range: tuple[Any, Any] | Sequence[tuple[Any, Any]] | None = None,
        output: int | str | None = None,
        layer_rules: dict[str, rules.Rule] | None = None,
        gates: dict[str, str] | None = None,
        batch_size: int = 32,
        jit_compile: bool | Literal["auto"] = "auto",
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        self.model = model
        self.composite = composite
        self.positive_output = positive_output
        self.batch_size = batch_size
        self._gate_names = gates
        self._layer_rules = layer_rules
        graph = trace(model)
        self._output_index, self._output_size, self._sequence_output = checks.choose_output(
            graph, model, output
        )
        self._input_range = checks.check_input_range(graph, input_range)
        self._traced_calls = any(self._traces_call(node.layer, node.arguments) for node in graph.nodes)
        if self._traced_calls:  # custom layers: checked on inputs of a probe shape
            probe = [tuple(_PROBE_SIZE if d is None else d for d in shape) for shape in graph.input_shapes]
            graph = trace(model, probe, self._traces_call)
        self._plan = self._make_plan(graph, warn=True)
        if jit_compile == "auto":
            jit_compile = bool(tf.config.list_physical_devices("GPU"))
        self.jit_compile = bool(jit_compile)
        self.trace_count = 0
        self._functions = {}
        self._traced_variables = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- public
    def analyze(
        self,
        x: np.ndarray | list | dict | Iterable,
        neuron_selection: str | int | Sequence[int] | tuple[int, int] | np.ndarray = "max_activation",
        return_layers: bool = False,
        verbose: Literal["auto", 0, 1] = "auto",
        out: str | os.PathLike | None = None,
    ) -> np.ndarray | list[np.ndarray] | dict[str, np.ndarray] | tf.data.Dataset | tuple[Any, dict]:
        """Relevance map(s) with the shape of ``x``.

        Args:
          x: an array (a list of arrays for a multi-input model, or a dict keyed by the
            model's input names: the maps are then a dict for the inputs relevance reaches,
            e.g. ``token_ids`` but not ``padding_mask`` or ``segment_ids``) of shape (batch, ...), or
            a ``tf.data.Dataset`` or any iterable of batches (x, or (x, y) pairs), streamed
            with memory bounded by the batch (:mod:`keras_dtd.analyzers.streaming`).
          neuron_selection: "max_activation" (each sample's top output), an int, one int
            per sample, or "all" (every output). A conservative map sums to the selected
            output f (to max(f, 0) with ``positive_output``). For a sequence output (a
            language model's (batch, length, vocabulary)): "max_activation" is the top token
            at each sample's last position (its last unpadded one, given a ``padding_mask``
            input); an int is a token there; a ``(position, token)`` pair (or one per sample,
            shape (n, 2)) names both, positions counting from the end when negative.
          return_layers: also return ``{layer path: relevance of the layer's output}``.
          verbose: for streams: "auto", 0 or 1 (a progress bar).
          out: for streams: "maps.npy" writes the maps batch by batch and returns a
            memory map of the file; "maps.tfrecord" writes one ``tf.train.Example`` per
            map and returns a ``tf.data.Dataset`` of them.

        Returns:
          The map(s); with ``return_layers``, ``(maps, layers)``.

        Raises:
          ValueError, TypeError: bad inputs (shape, dtype, NaN, empty batch, values outside
            ``input_range``) or neuron selection, each named with the fix.
        """
        if is_stream(x):
            if return_layers:
                raise ValueError(
                    "return_layers is not available for streams; analyze arrays batch by batch instead."
                )
            return analyze_stream(self, x, neuron_selection, verbose, out)
        if out is not None:
            raise ValueError(
                "out= is for streams (a tf.data.Dataset or an iterable of batches); arrays are returned."
            )
        explanation = self.explain(x, neuron_selection, return_layers)
        if return_layers:
            return explanation.relevance, explanation.layers
        return explanation.relevance

    def explain(
        self,
        x: np.ndarray | list | dict,
        neuron_selection: str | int | Sequence[int] | tuple[int, int] | np.ndarray = "max_activation",
        return_layers: bool = False,
    ) -> Explanation:
        """Like :meth:`analyze` on arrays, but returns an :class:`Explanation` (the maps,
        the explained outputs and what the maps sum to)."""
        batches = self.validate_inputs(x)
        n = batches[0].shape[0]
        indices, all_outputs = self.validate_selection(neuron_selection, n, batches)
        function = self._function(all_outputs, return_layers)
        size = self.batch_size
        parts = []
        for start in range(0, n, size):
            stop = min(start + size, n)
            pad = size - (stop - start) if n > size else 0
            batch = [tf.constant(checks.padded(a[start:stop], pad, 0)) for a in batches]
            result = function(batch, tf.constant(checks.padded(indices[start:stop], pad, -1)))
            parts.append(tf.nest.map_structure(lambda t, m=stop - start: t.numpy()[:m], result))
        relevance, score, target, layers, balance = tf.nest.map_structure(
            lambda *ts: np.concatenate(ts), *parts
        )  # a RelevancePass of numpy arrays
        if self.positive_output:
            self._warn_non_positive(score)
        if isinstance(x, dict):  # keyed like the inputs, for those relevance reaches
            names = self._plan.graph.input_names
            relevance = {
                name: r for name, r, reached in zip(names, relevance, self.explained_inputs) if reached
            }
        else:
            relevance = relevance[0] if len(relevance) == 1 else list(relevance)
        if not return_layers:
            return Explanation(relevance, score, target, None)
        return Explanation(relevance, score, target, layers, dict(balance))

    def export(self, export_dir, version: int = 1, overwrite: bool = False) -> str:
        """Deprecated: use ``keras_dtd.export(analyzer, export_dir, ...)``, which this calls."""
        warnings.warn(
            "Analyzer.export is deprecated; use keras_dtd.export(analyzer, export_dir, ...).",
            DeprecationWarning,
            stacklevel=2,
        )
        import keras_dtd  # the integration, from the public package (analyzers do not import integrations)

        return keras_dtd.export(self, export_dir, version=version, overwrite=overwrite)

    def __repr__(self):
        composite = self.composite.name if self.composite is not None else None
        return f"{type(self).__name__}(model='{self.model.name}', composite={composite!r})"

    # ------------------------------------------- interface for integrations and subclasses
    @property
    def graph(self):
        """The canonized traced model (:class:`keras_dtd.core.tracing.Graph`): its nodes
        in execution order, each with its layer path, kind and linear map; ``rules[k]``
        is the rule of ``graph.nodes[k]``. A model with custom layers, traced inside
        (``graph.traced_calls``), has a graph per input shape: this one is for inputs with
        unknown axes of size 2; the compiled pass traces its own."""
        return self._plan.graph

    @property
    def rules(self) -> tuple:
        """One rule per node of :attr:`graph` (empty for the gradient baselines)."""
        return self._plan.rules

    @property
    def explained_inputs(self) -> list:
        """Per model input, whether relevance reaches it (a padding mask or segment ids: no)."""
        return [i in self._plan.reached for i in self._plan.graph.inputs]

    @property
    def input_specs(self) -> list:
        """One ``tf.TensorSpec`` per model input, with a free batch axis."""
        graph = self._plan.graph
        shapes = [
            (None,) + (tuple(None for _ in s[1:]) if graph.traced_calls else s[1:])
            for s in graph.input_shapes
        ]
        return [tf.TensorSpec(shape, d) for shape, d in zip(shapes, graph.input_dtypes)]

    @property
    def output_size(self) -> int:
        """The number of neurons of the explained output."""
        return self._output_size

    @property
    def input_range(self):
        """The checked ``input_range``: one (low, high) pair of arrays shaped (1, ...) like
        one sample per model input, or None."""
        return self._input_range

    def validate_inputs(self, x) -> list:
        """``x`` as a list of numpy arrays, one per model input, in the model's dtypes.

        Raises:
          TypeError, ValueError: wrong count, dtype or shape, an empty batch, NaN or
            infinite values, or values outside ``input_range``.
        """
        return checks.check_inputs(self._plan.graph, self.model.name, x, self._input_range)

    def validate_selection(self, neuron_selection, n, inputs=None):
        """(int32 (n,) indices with -1 for each sample's top output, whether "all" outputs
        are explained) for a ``neuron_selection`` of :meth:`analyze`. For a sequence output
        (a language model's (batch, length, vocabulary)), ``inputs`` (as
        :meth:`validate_inputs` returns them) give the length and each sample's last
        position (its last unpadded one, with a ``padding_mask`` input); see
        :func:`keras_dtd.analyzers.checks.check_sequence_selection`.

        Raises:
          ValueError: an unknown mode, a wrong number of indices or an index out of range.
        """
        if not self._sequence_output:
            return checks.check_selection(neuron_selection, n, self._output_size)
        if inputs is None:
            raise ValueError("validate_selection needs the inputs for a sequence output.")
        graph = self._plan.graph
        sequences = [x for x, s in zip(inputs, graph.input_shapes) if len(s) > 1 and x.ndim > 1]
        length = sequences[0].shape[1]
        last = np.full(n, length - 1)
        if PADDING_MASK in graph.input_names:
            mask = np.asarray(inputs[graph.input_names.index(PADDING_MASK)]).astype(bool)
            last = np.where(mask.any(axis=1), length - 1 - np.argmax(mask[:, ::-1], axis=1), length - 1)
        return checks.check_sequence_selection(neuron_selection, n, self._output_size, length, last)

    def forward(self, inputs, watch=None) -> ForwardPass:
        """The model on tensors, as keras_dtd computes it (inference mode, a final
        softmax or sigmoid stripped): a :class:`ForwardPass`. ``watch``: a GradientTape on
        which the outputs of layers reading integer model inputs (embeddings of token ids)
        are watched, so that gradients can be taken there."""
        plan = self._plan_for(inputs)
        values, _ = self._forward(plan, inputs, tapes=False, watch=watch)
        layers = {node.path: values[node.outputs[0]] for node in plan.graph.nodes}
        return ForwardPass(values[plan.output_id], layers)

    def select(self, f, indices, all_outputs=False):
        """(mask of the explained outputs, shaped like f; the selected score per sample)
        for ``indices`` as :meth:`validate_selection` returns them (-1: the top output)."""
        scores = tf.reshape(f, (tf.shape(f)[0], -1))
        if all_outputs:
            return tf.ones_like(f), tf.reduce_max(scores, axis=-1)
        if self._sequence_output:  # t·n + v, or −(t + 1) for the top token at position t
            n = self._output_size
            position = tf.where(indices < 0, -indices - 1, indices // n)
            best = tf.argmax(tf.gather(f, position, axis=1, batch_dims=1), axis=-1, output_type=tf.int32)
            indices = tf.where(indices < 0, position * n + best, indices)
        else:
            best = tf.argmax(scores, axis=-1, output_type=tf.int32)
            indices = tf.where(indices < 0, best, indices)
        mask = tf.one_hot(indices, tf.shape(scores)[-1], dtype=scores.dtype)
        return tf.reshape(mask, tf.shape(f)), tf.reduce_sum(mask * scores, axis=-1)

    def relevance_pass(self, inputs, indices, all_outputs=False, keep_layers=False) -> RelevancePass:
        """The backward pass on tensors, to call inside a ``tf.function`` (as :meth:`explain`
        and :func:`keras_dtd.export` do): a forward pass keeping what the rules need, then
        the rules in reverse order.

        Args:
          inputs: a list of batches, one per model input, in the model's dtypes.
          indices: int32 (n,): the output to explain per sample; -1 for its top output.
          all_outputs: explain every output at once (``indices`` is then ignored).
          keep_layers: also return the relevance at every layer and its balance.

        Returns:
          A :class:`RelevancePass`.
        """
        plan = self._plan_for(inputs)
        graph = plan.graph
        values, calls = self._forward(plan, inputs, tapes=True)
        domains = input_domains(graph, inputs, values, self._input_range)
        f = values[plan.output_id]
        mask, score = self.select(f, indices, all_outputs)
        top = self.start_relevance(inputs, f, mask)
        relevance = {plan.output_id: top}
        balance = {}
        for k in reversed(range(len(graph.nodes))):
            node, rule = graph.nodes[k], plan.rules[k]
            if not any(o in relevance for o in node.outputs):
                continue
            r_out = [
                _as(relevance[o], values[o]) if o in relevance else tf.zeros_like(values[o])
                for o in node.outputs
            ]
            outputs = [values[o] for o in node.outputs]
            copies, (kernel, bias), linear, tape, saved = calls[k]
            call = rules.LayerCall(
                node=node,
                inputs=copies,
                outputs=outputs,
                kernel=kernel,
                bias=bias,
                linear=linear,
                domains=[domains.get(i) for i in node.inputs],
                vjp=_vjp(tape, copies, outputs),
                saved=saved,
            )
            r_in = rule.relevance(call, r_out)
            if keep_layers:
                passed = [per_sample_sum(tf.cast(r, top.dtype)) for r in r_in if r is not None]
                balance[node.path] = tf.stack(
                    [
                        tf.add_n([per_sample_sum(tf.cast(r, top.dtype)) for r in r_out]),
                        tf.add_n(passed) if passed else tf.zeros_like(score),
                    ],
                    axis=-1,
                )
            for i, r in zip(node.inputs, r_in):
                if r is not None:
                    relevance[i] = relevance[i] + r if i in relevance else r

        result = [
            relevance[i] if i in relevance else tf.zeros(tf.shape(x), top.dtype)
            for i, x in zip(graph.inputs, inputs)
        ]
        layers = {}
        if keep_layers:
            for node in graph.nodes:
                o = node.outputs[0]
                layers[node.path] = relevance[o] if o in relevance else tf.zeros_like(values[o])
        return RelevancePass(result, score, per_sample_sum(top), layers, balance)

    def start_relevance(self, inputs, f, mask):
        """The relevance the backward pass starts from at the explained output f:
        mask · max(f, 0), or mask · f without ``positive_output``. Subclasses may start
        from another relevance of f's shape."""
        return mask * (tf.nn.relu(f) if self.positive_output else f)

    # --------------------------------------------------------- compiled pass
    def compiled(self, key, build):
        """The compiled function cached under ``key``, made by ``build()`` the first time and
        again after ``enable_lora`` or ``quantize`` replaced the model's variables (a function
        traced before would not see them). For subclasses with compiled functions of their own."""
        with self._lock:
            variables = self._variables_in_use()
            if variables != self._traced_variables:
                self._functions.clear()
                self._traced_variables = variables
            if key not in self._functions:
                self._functions[key] = build()
            return self._functions[key]

    def _function(self, all_outputs, keep_layers):
        key = (bool(all_outputs), bool(keep_layers))

        def relevance(inputs, indices):
            self.trace_count += 1
            return self.relevance_pass(inputs, indices, *key)

        # a model with traced custom layers: one trace per input shape (its graph depends on it)
        signature = None if self._traced_calls else (self.input_specs, tf.TensorSpec((None,), tf.int32))
        return self.compiled(  # plain Python control flow: no AutoGraph needed
            key,
            lambda: tf.function(
                relevance, input_signature=signature, jit_compile=self.jit_compile, autograph=False
            ),
        )

    def _variables_in_use(self):
        """What a compiled pass captured: the model's variables (by identity) and each layer's
        quantization mode and LoRA state, which ``enable_lora`` and ``quantize`` change in place."""
        layers = [node.layer for node in self._plan.graph.nodes]
        states = tuple(
            (getattr(x, "quantization_mode", None), getattr(x, "lora_enabled", False)) for x in layers
        )
        return tuple(id(v) for v in self.model.variables), states

    def _make_plan(self, graph, warn=False):
        """Canonize ``graph`` and assign its rules (warning about non-ReLU activations if ``warn``)."""
        graph = canonize(graph, self._gate_names)
        output_id = graph.outputs[self._output_index]
        if self.composite is None:
            return _Plan(graph, (), output_id, frozenset())
        biases = {  # embeddings of inputs that act as biases: their relevance is absorbed
            node.path: rules.NoRelevance()
            for node in graph.nodes
            if node.kind == Kind.EMBEDDING
            and any(
                graph.input_names[graph.inputs.index(i)] in BIAS_INPUTS
                for i in node.inputs
                if i in graph.inputs
            )
        }
        chosen, non_relu, reached = assignment.assign(
            graph, self.composite, {**biases, **(self._layer_rules or {})}
        )
        graph = assignment.mark_rectified(graph, chosen)
        if warn and non_relu and self.composite.non_relu == "warn":
            warnings.warn(
                assignment.non_relu_warning(non_relu),
                assignment.NonReLUWarning,
                stacklevel=checks.caller_stacklevel(),
            )
        return _Plan(graph, chosen, output_id, reached)

    def _plan_for(self, inputs):
        """The plan for a pass on ``inputs``: the one built at construction, or for a model whose
        custom layers are traced inside, one traced for these inputs' shapes (inside a
        ``tf.function``: its constants are read from the variables at every call)."""
        if not self._traced_calls:
            return self._plan
        shapes = [tuple(x.shape) for x in inputs]
        if any(d is None for shape in shapes for d in shape):
            raise ValueError(
                f"Model '{self.model.name}' has custom layers that keras_dtd traces inside, for inputs of "
                f"known shapes; received inputs of shapes {shapes}. Call the analyzer on arrays, or trace "
                "your tf.function with full shapes (no input_signature with None)."
            )
        return self._make_plan(trace(self.model, shapes, self._traces_call))

    def _traces_call(self, layer, arguments):
        """Whether a layer's call is traced inside: no registry entry explains it, and no rule was
        given for it (by class with ``register_rule``, or by name in ``layer_rules``)."""
        if assignment.registered_rule(layer) is not None or layer.name in (self._layer_rules or {}):
            return False
        return registry.traces_call(layer, arguments)

    def _forward(self, plan, inputs, tapes, watch=None):
        """Run the plan's graph on ``inputs``. With ``tapes``, a call whose rule takes a VJP
        through it is recorded on a tape of its own, on identity copies of its inputs, so
        the VJP walks only that layer (one tape for the whole pass would make every VJP
        walk back to the input: quadratic in depth). Returns (tensor values by id, per
        node: (inputs, (kernel, bias), Σ_i x_i w_ij or None, tape or None))."""
        graph, node_rules = plan.graph, plan.rules
        values = dict(zip(graph.inputs, inputs))
        integer_inputs = {i for i, x in zip(graph.inputs, inputs) if not x.dtype.is_floating}
        calls = []
        for k, node in enumerate(graph.nodes):
            args = _in_compute_dtype(node.layer, [values[i] for i in node.inputs])
            parameters = None if node.linear_map is None else node.linear_map.parameters(args)
            tape = None
            if tapes and node_rules and node_rules[k].needs_vjp(node):
                args = [tf.identity(a) for a in args]
                tape = tf.GradientTape(persistent=True, watch_accessed_variables=False)
            with tape or contextlib.nullcontext():
                if tape is not None:
                    tape.watch([a for a in args if a.dtype.is_floating])
                own = node_rules[k].forward(node, args) if node_rules else None
                if own is None:
                    (outputs, linear), saved = node.forward_linear(args, parameters), None
                else:
                    (outputs, saved), linear = own, None
                if watch is not None and integer_inputs & set(node.inputs):
                    watch.watch([o for o in outputs if o.dtype.is_floating])
                values.update(zip(node.outputs, outputs))
            calls.append((args, parameters or (None, None), linear, tape, saved))
        return values, calls

    def _warn_non_positive(self, selected):
        bad = np.flatnonzero(selected <= 0)
        if bad.size:
            shown = ", ".join(map(str, bad[:10])) + (", ..." if bad.size > 10 else "")
            warnings.warn(
                f"{bad.size} of {selected.size} samples have a selected output <= 0 (samples {shown}); "
                "relevance explains max(f, 0), so their relevance maps are zero.",
                ZeroRelevanceWarning,
                stacklevel=checks.caller_stacklevel(),
            )


def _vjp(tape, inputs, outputs):
    def vjp(cotangents):
        if tape is None:
            raise RuntimeError(
                "A rule with uses_vjp = False called call.vjp; set uses_vjp = True on its class."
            )
        return tape.gradient(outputs, inputs, output_gradients=cotangents)

    return vjp


def _in_compute_dtype(layer, args):
    """Float inputs in the layer's compute dtype, as Keras casts them when the layer is called (a
    float32 Input feeding float64 layers, a float32 softmax in a float64 model), so its map and
    rules compute in one dtype."""
    dtype = getattr(layer, "compute_dtype", None)
    if dtype is None:
        return args
    return [tf.cast(a, dtype) if a.dtype.is_floating and a.dtype != dtype else a for a in args]


def _as(r, value):
    """Relevance in the dtype of the value it belongs to (a layer that computes in float32 inside a
    float64 model, as KerasHub's RMSNormalization does)."""
    return tf.cast(r, value.dtype) if value.dtype.is_floating and r.dtype != value.dtype else r


def per_sample_sum(t):
    """Σ over every axis but the batch axis: one value per sample."""
    return tf.reduce_sum(tf.reshape(t, (tf.shape(t)[0], -1)), axis=-1)


class DTD(Analyzer):
    """Deep Taylor Decomposition (Montavon et al. 2017).

    ``DTD(model)``: inputs in ℝ^d, w² rule at the first layer, z⁺ above.
    ``DTD(model, input_range=(0, 1))``: bounded inputs, z^B at the first layer.
    Maps are conservative (they sum to max(f, 0)) and positive. Relevance passes through
    activations other than ReLU with a :class:`NonReLUWarning`; ``strict=True`` refuses them.

    Args:
      model: a functional or Sequential Keras 3 model.
      input_range: None, or the ``(low, high)`` bounds of the input (see :class:`Analyzer`).
      strict: refuse hidden activations other than ReLU.
      **kwargs: the other arguments of :class:`Analyzer` (``output``, ``layer_rules``,
        ``gates``, ``batch_size``, ``jit_compile``).
    """

    def __init__(
        self,
        model: keras.Model,
        input_range: tuple[Any, Any] | Sequence[tuple[Any, Any]] | None = None,
        strict: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, C.DeepTaylor(input_range, strict), input_range=input_range, **kwargs)


class LRP(Analyzer):
    """Layer-wise Relevance Propagation: one ``rule`` on every linear layer (``first_rule``
    on the first kernel layers), e.g. ``LRP(model, rules.Epsilon(0.01))``, or a composite,
    e.g. ``LRP(model, composites.EpsilonGammaBox(low=0.0, high=1.0))``.

    Args:
      model: a functional or Sequential Keras 3 model.
      rule: a :class:`keras_dtd.rules.Rule` or a :class:`keras_dtd.composites.Composite`.
      first_rule: with a rule: the rule of the first kernel layers, or None.
      positive_output: explain max(f, 0) as DTD does instead of the signed selected f.
      **kwargs: the other arguments of :class:`Analyzer`.

    Raises:
      TypeError: ``rule`` is neither a Rule nor a Composite.
      ValueError: a composite and ``first_rule`` together.
    """

    def __init__(
        self,
        model: keras.Model,
        rule: rules.Rule | C.Composite = rules.Epsilon(),
        first_rule: rules.Rule | None = None,
        positive_output: bool = False,
        **kwargs: Any,
    ) -> None:
        if isinstance(rule, C.Composite):
            if first_rule is not None:
                raise ValueError("LRP: give either a composite or rule/first_rule, not both.")
            composite = rule
        elif isinstance(rule, rules.Rule):
            composite = C.Uniform(rule, first_rule)
        else:
            raise TypeError(f"LRP needs a keras_dtd.rules.Rule or a composites.Composite, got {rule!r}.")
        super().__init__(model, composite, positive_output=positive_output, **kwargs)
