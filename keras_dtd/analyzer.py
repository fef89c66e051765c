"""The analyzer: one compiled relevance function per model, and ``analyze()`` around it."""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import warnings
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from keras_dtd import composites as C
from keras_dtd import layers as L
from keras_dtd import presets
from keras_dtd import rules as R
from keras_dtd.canonize import canonize
from keras_dtd.export import export as export_saved_model
from keras_dtd.graph import trace
from keras_dtd.streaming import analyze_stream, is_stream


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
    """

    def __init__(
        self,
        model,
        composite: C.Composite,
        *,
        positive_output: bool = True,
        input_range=None,
        output=None,
        layer_rules=None,
        gates=None,
        batch_size: int = 32,
        jit_compile="auto",
    ):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        self.model = model
        self.composite = composite
        self.positive_output = positive_output
        self.batch_size = batch_size
        self._graph = canonize(trace(model), gates)
        self.rules, non_relu = (
            presets.assign(self._graph, composite, layer_rules) if composite is not None else ((), ())
        )
        if self.rules:
            self._graph = presets.mark_rectified(self._graph, self.rules)
        if non_relu and composite.non_relu == "warn":
            warnings.warn(
                presets.non_relu_warning(non_relu), presets.NonReLUWarning, stacklevel=_outside_keras_dtd()
            )
        self._output_id, self._n_outputs = self._choose_output(output)
        self._input_range = self._check_input_range(input_range)
        if jit_compile == "auto":
            jit_compile = bool(tf.config.list_physical_devices("GPU"))
        self.jit_compile = bool(jit_compile)
        self.trace_count = 0
        self._functions = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- public
    def analyze(self, x, neuron_selection="max_activation", return_layers=False, verbose="auto", out=None):
        """Relevance map(s) with the shape of ``x``.

        ``neuron_selection``: "max_activation" (each sample's top output), an int,
        one int per sample, or "all" (every output). A conservative map sums to the
        selected output f (to max(f, 0) with ``positive_output``). With ``return_layers=True``
        also returns ``{layer path: relevance of the layer's output}``.

        ``x`` may also be a ``tf.data.Dataset`` or any iterable of batches (x, or (x, y)
        pairs), streamed with memory bounded by the batch (:mod:`keras_dtd.streaming`):
        ``verbose`` ("auto", 0, 1) shows a progress bar, ``out="maps.npy"`` writes the maps
        batch by batch and returns a memory map of the file; ``out="maps.tfrecord"``
        writes one ``tf.train.Example`` per map and returns a ``tf.data.Dataset`` of them.
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

    def explain(self, x, neuron_selection="max_activation", return_layers=False) -> Explanation:
        """Like :meth:`analyze`, but also returns the explained outputs (see :class:`Explanation`)."""
        inputs = self._check_inputs(x)
        n = inputs[0].shape[0]
        indices, all_outputs = self._check_selection(neuron_selection, n)
        function = self._function(all_outputs, return_layers)
        size = self.batch_size
        parts = []
        for start in range(0, n, size):
            stop = min(start + size, n)
            pad = size - (stop - start) if n > size else 0
            batch = [_pad(a[start:stop], pad, 0) for a in inputs]
            result = function(batch, _pad(indices[start:stop], pad, -1))
            parts.append(tf.nest.map_structure(lambda t, m=stop - start: t.numpy()[:m], result))
        relevance, score, target, layers, balance = tf.nest.map_structure(
            lambda *ts: np.concatenate(ts), *parts
        )  # a RelevancePass of numpy arrays
        if self.positive_output:
            self._warn_non_positive(score)
        relevance = relevance[0] if len(relevance) == 1 else list(relevance)
        if not return_layers:
            return Explanation(relevance, score, target, None)
        return Explanation(relevance, score, target, layers, dict(balance))

    def export(self, export_dir, version: int = 1, overwrite: bool = False) -> str:
        """Write a TensorFlow Serving SavedModel (see :func:`keras_dtd.export.export`)."""
        return export_saved_model(self, export_dir, version=version, overwrite=overwrite)

    def __repr__(self):
        composite = self.composite.name if self.composite is not None else None
        return f"{type(self).__name__}(model='{self.model.name}', composite={composite!r})"

    # --------------------------------------------------------- compiled pass
    def _function(self, all_outputs, keep_layers):
        key = (bool(all_outputs), bool(keep_layers))
        with self._lock:
            return self._functions.get(key) or self._new_function(key)

    def _new_function(self, key):
        graph = self._graph
        signature = (
            [tf.TensorSpec((None,) + s[1:], d) for s, d in zip(graph.input_shapes, graph.input_dtypes)],
            tf.TensorSpec((None,), tf.int32),
        )

        def relevance(inputs, indices):
            return self.relevance_pass(inputs, indices, *key)

        self._functions[key] = tf.function(  # plain Python control flow: no AutoGraph needed
            relevance, input_signature=signature, jit_compile=self.jit_compile, autograph=False
        )
        return self._functions[key]

    def _forward(self, inputs):
        """Run the traced graph on ``inputs``. A call whose rule takes a VJP through it is
        recorded on a tape of its own, on identity copies of its inputs, so the VJP walks
        only that layer (one tape for the whole pass would make every VJP walk back to the
        input: quadratic in depth). Returns (tensor values by id, per node: (inputs,
        (kernel, bias), Σ_i x_i w_ij or None, tape or None))."""
        graph = self._graph
        values = dict(zip(graph.inputs, inputs))
        calls = []
        for k, node in enumerate(graph.nodes):
            args = [values[i] for i in node.inputs]
            parameters = None if node.op is None else node.op.parameters(args)
            tape = None
            if self.rules and self.rules[k].needs_vjp(node):
                args = [tf.identity(a) for a in args]
                tape = tf.GradientTape(persistent=True, watch_accessed_variables=False)
            with tape or contextlib.nullcontext():
                if tape is not None:
                    tape.watch([a for a in args if a.dtype.is_floating])
                outputs, linear = node.forward_linear(args, parameters)
                values.update(zip(node.outputs, outputs))
            calls.append((args, parameters or (None, None), linear, tape))
        return values, calls

    def _domains(self, inputs, values):
        """Support, bounds and hidden units of every tensor that holds model input values:
        reached from the inputs through layers that pass domains on (not kernel layers).
        A tensor mixing them with hidden units (a Concatenate of input and features)
        marks those as hidden."""
        graph = self._graph
        domains = {}
        for k, (i, x) in enumerate(zip(graph.inputs, inputs)):
            low, high = self._input_range[k] if self._input_range is not None else (None, None)
            domains[i] = R.Domain(tf.ones_like(x[:1]), _constant(low), _constant(high))
        for node in graph.nodes:
            if not L.passes_domain(node) or not any(i in domains for i in node.inputs):
                continue
            known = [
                domains.get(i) or _hidden_domain(values[i], self._input_range is not None)
                for i in node.inputs
            ]
            domains.update(zip(node.outputs, _propagate(known, node)))
        return domains

    def relevance_pass(self, inputs, indices, all_outputs=False, keep_layers=False) -> RelevancePass:
        """The backward pass on tensors, to call inside a ``tf.function`` (as :meth:`explain`
        and :func:`keras_dtd.export` do).

        Args:
            inputs: a list of batches, one per model input, in the model's dtypes.
            indices: int32 (n,): the output to explain per sample; -1 for its top output.
            all_outputs: explain every output at once (``indices`` is then ignored).
            keep_layers: also return the relevance at every layer and its balance.

        Returns:
            A :class:`RelevancePass`.
        """
        return self._relevance(inputs, indices, all_outputs, keep_layers)

    def _relevance(self, inputs, indices, all_outputs, keep_layers):
        """Forward pass keeping activations, then the rules in reverse order."""
        self.trace_count += 1
        graph = self._graph
        values, calls = self._forward(inputs)
        domains = self._domains(inputs, values)
        f = values[self._output_id]
        mask, score = self._select(f, indices, all_outputs)
        top = self._start(inputs, f, mask)
        relevance = {self._output_id: top}
        balance = {}
        for k in reversed(range(len(graph.nodes))):
            node, rule = graph.nodes[k], self.rules[k]
            if not any(o in relevance for o in node.outputs):
                continue
            r_out = [relevance[o] if o in relevance else tf.zeros_like(values[o]) for o in node.outputs]
            outputs = [values[o] for o in node.outputs]
            copies, (kernel, bias), linear, tape = calls[k]
            call = R.LayerCall(
                node=node,
                inputs=copies,
                outputs=outputs,
                kernel=kernel,
                bias=bias,
                linear=linear,
                domains=[domains.get(i) for i in node.inputs],
                vjp=_vjp(tape, copies, outputs),
            )
            r_in = rule.relevance(call, r_out)
            if keep_layers:
                passed = [_per_sample_sum(tf.cast(r, top.dtype)) for r in r_in if r is not None]
                balance[node.path] = tf.stack(
                    [
                        tf.add_n([_per_sample_sum(r) for r in r_out]),
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
        return RelevancePass(result, score, _per_sample_sum(top), layers, balance)

    def _start(self, inputs, f, mask):
        """The relevance at the explained output: the selected f (or max(f, 0))."""
        return mask * (tf.nn.relu(f) if self.positive_output else f)

    def _select(self, f, indices, all_outputs):
        """(mask of the explained outputs, shaped like f; the selected score per sample)."""
        scores = tf.reshape(f, (tf.shape(f)[0], -1))
        if all_outputs:
            return tf.ones_like(f), tf.reduce_max(scores, axis=-1)
        best = tf.argmax(scores, axis=-1, output_type=tf.int32)
        mask = tf.one_hot(tf.where(indices < 0, best, indices), self._n_outputs, dtype=scores.dtype)
        return tf.reshape(mask, tf.shape(f)), tf.reduce_sum(mask * scores, axis=-1)

    # ---------------------------------------------------------------- checks
    def _choose_output(self, output):
        graph = self._graph
        names = list(getattr(self.model, "output_names", None) or graph.output_names)
        if output is None:
            if len(graph.outputs) > 1:
                raise ValueError(
                    f"Model '{self.model.name}' has {len(graph.outputs)} outputs {names}; "
                    "choose one with output=<index or name>."
                )
            k = 0
        elif isinstance(output, str):
            if output not in names:
                raise ValueError(f"output '{output}' is not one of the model's outputs {names}.")
            k = names.index(output)
        elif isinstance(output, int) and 0 <= output < len(graph.outputs):
            k = output
        else:
            raise ValueError(
                f"output must be an index below {len(graph.outputs)} or one of {names}, got {output!r}."
            )
        shape = graph.output_shapes[k][1:]
        if any(d is None for d in shape):
            raise ValueError(
                f"Output {names[k]} has unknown dimensions {shape}; neuron selection needs a fixed size."
            )
        return graph.outputs[k], math.prod(shape)

    def _check_input_range(self, input_range):
        if input_range is None:
            return None
        graph = self._graph
        pairs = input_range if len(graph.inputs) > 1 else [input_range]
        if len(pairs) != len(graph.inputs):
            raise ValueError(f"input_range needs one (low, high) pair per model input ({len(graph.inputs)}).")
        checked = []
        for pair, shape, dtype in zip(pairs, graph.input_shapes, graph.input_dtypes):
            try:
                low, high = pair
            except (TypeError, ValueError):
                raise ValueError(f"input_range must be a (low, high) pair, got {pair!r}.") from None
            low, high = np.asarray(low, dtype=dtype), np.asarray(high, dtype=dtype)
            sample = tuple(1 if d is None else d for d in shape[1:])
            try:
                low, high = (np.broadcast_to(b, sample)[None] for b in (low, high))
            except ValueError:
                raise ValueError(
                    f"input_range bounds of shapes {np.shape(pair[0])}, {np.shape(pair[1])} do not "
                    f"broadcast to one input sample of shape {shape[1:]}."
                ) from None
            if np.any(low > high):
                raise ValueError("input_range needs low <= high everywhere.")
            checked.append((low, high))
        return checked

    def _check_inputs(self, x):
        graph = self._graph
        n_inputs = len(graph.inputs)
        if n_inputs > 1:
            if not isinstance(x, (list, tuple)) or len(x) != n_inputs:
                raise ValueError(
                    f"Model '{self.model.name}' has {n_inputs} inputs; pass a list of {n_inputs} arrays."
                )
            xs = list(x)
        else:
            xs = [x]
        checked = []
        for k, (a, shape, dtype) in enumerate(zip(xs, graph.input_shapes, graph.input_dtypes)):
            a = np.asarray(a)
            name = "x" if n_inputs == 1 else f"input {k}"
            if a.dtype == bool or a.dtype.kind not in "iuf":
                raise TypeError(f"{name} has dtype {a.dtype}; expected a numeric (float or int) array.")
            if a.ndim != len(shape) or any(d is not None and d != s for d, s in zip(shape[1:], a.shape[1:])):
                hint = " Add a batch axis, e.g. x[None]." if a.shape == tuple(shape[1:]) else ""
                raise ValueError(
                    f"{name} has shape {a.shape}; the model expects (batch, ...) = {shape}.{hint}"
                )
            if a.shape[0] == 0:
                raise ValueError(f"{name} is an empty batch (shape {a.shape}); pass at least one sample.")
            a = a.astype(dtype, copy=False)
            bad = ~np.isfinite(a)
            if bad.any():
                raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite values.")
            if self._input_range is not None:
                low, high = self._input_range[k]
                tol = 1e-6 * max(1.0, float(np.max(np.abs(high))), float(np.max(np.abs(low))))
                if np.any(a < low - tol) or np.any(a > high + tol):
                    raise ValueError(
                        f"{name} has values in [{a.min():g}, {a.max():g}], outside input_range "
                        f"[{low.min():g}, {high.max():g}]; the z^B rule assumes low <= x <= high."
                    )
            checked.append(a)
        if len({a.shape[0] for a in checked}) > 1:
            raise ValueError(f"All inputs need the same batch size, got {[a.shape[0] for a in checked]}.")
        return checked

    def _check_selection(self, selection, n):
        if isinstance(selection, str):
            if selection in ("max_activation", "all"):
                return np.full(n, -1, np.int32), selection == "all"
            raise ValueError(
                "neuron_selection must be 'max_activation', 'all', an int or one int per sample; "
                f"got '{selection}'."
            )
        a = np.asarray(selection)
        if a.dtype == bool or a.dtype.kind not in "iu" or a.ndim > 1:
            raise ValueError(
                "neuron_selection must be 'max_activation', 'all', an int or one int per sample; "
                f"got {selection!r}."
            )
        if a.ndim == 1 and a.shape[0] != n:
            raise ValueError(f"neuron_selection has {a.shape[0]} indices for {n} samples.")
        if np.any(a < 0) or np.any(a >= self._n_outputs):
            raise ValueError(
                f"neuron_selection {selection!r} is out of range: the output has {self._n_outputs} neurons "
                f"(0..{self._n_outputs - 1})."
            )
        return np.broadcast_to(a, (n,)).astype(np.int32), False

    def _warn_non_positive(self, selected):
        bad = np.flatnonzero(selected <= 0)
        if bad.size:
            shown = ", ".join(map(str, bad[:10])) + (", ..." if bad.size > 10 else "")
            warnings.warn(
                f"{bad.size} of {selected.size} samples have a selected output <= 0 (samples {shown}); "
                "relevance explains max(f, 0), so their relevance maps are zero.",
                ZeroRelevanceWarning,
                stacklevel=_outside_keras_dtd(),
            )


def _outside_keras_dtd():
    """The stacklevel of the first caller outside this package, so warnings point at user code."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("keras_dtd"):
        frame, level = frame.f_back, level + 1
    return level


def _vjp(tape, inputs, outputs):
    def vjp(cotangents):
        if tape is None:
            raise RuntimeError(
                "A rule with uses_vjp = False called call.vjp; set uses_vjp = True on its class."
            )
        return tape.gradient(outputs, inputs, output_gradients=cotangents)

    return vjp


def _constant(a):
    return None if a is None else tf.constant(a)


# kinds that keep every entry in place, so a real input stays a real input
_KEEP_SUPPORT = ("elementwise", "stripped", "batch_norm")


def _hidden_domain(value, bounded):
    """The domain of hidden units merged with input values: no support, zero bounds."""
    zeros = tf.zeros_like(value[:1])
    return R.Domain(zeros, zeros if bounded else None, zeros if bounded else None, tf.ones_like(value[:1]))


def _moved(node, masks):
    """0/1 masks moved (or merged) the way the node moves values."""
    return [tf.cast(m > 0, m.dtype) for m in node.forward(masks)]


def _propagate(domains, node):
    """Domains of a node's outputs from those of its inputs: supports and hidden masks
    follow the layer's moves (padding adds zeros; an entry mixing input values and
    hidden units counts as hidden), bounds map through it (monotone layers keep the order)."""
    if node.kind in _KEEP_SUPPORT:
        supports, hidden = [domains[0].support], [domains[0].hidden]
    else:
        supports = _moved(node, [d.support for d in domains])
        hidden = [None] * len(supports)
        if any(d.hidden is not None for d in domains):
            hidden = _moved(
                node, [tf.zeros_like(d.support) if d.hidden is None else d.hidden for d in domains]
            )
            supports = [s * (1 - h) for s, h in zip(supports, hidden)]
    if any(d.low is None for d in domains):
        return [R.Domain(s, hidden=h) for s, h in zip(supports, hidden)]
    lows = node.forward([d.low for d in domains])
    highs = node.forward([d.high for d in domains])
    return [
        R.Domain(s, tf.minimum(lo, hi), tf.maximum(lo, hi), h)
        for s, lo, hi, h in zip(supports, lows, highs, hidden)
    ]


def _per_sample_sum(t):
    return tf.reduce_sum(tf.reshape(t, (tf.shape(t)[0], -1)), axis=-1)


def _pad(a, pad, value):
    if not pad:
        return a
    return np.concatenate([a, np.full((pad,) + a.shape[1:], value, a.dtype)])


class DTD(Analyzer):
    """Deep Taylor Decomposition (Montavon et al. 2017).

    ``DTD(model)``: inputs in ℝ^d, w² rule at the first layer, z⁺ above.
    ``DTD(model, input_range=(0, 1))``: bounded inputs, z^B at the first layer.
    Maps are conservative (they sum to max(f, 0)) and positive. Relevance passes through
    activations other than ReLU with a :class:`NonReLUWarning`; ``strict=True`` refuses them.
    """

    def __init__(self, model, input_range=None, strict=False, **kwargs):
        super().__init__(model, C.dtd(input_range, strict), input_range=input_range, **kwargs)


class LRP(Analyzer):
    """Layer-wise Relevance Propagation: one ``rule`` on every linear layer (``first_rule``
    on the first kernel layers), e.g. ``LRP(model, rules.Epsilon(0.01))``, or a composite,
    e.g. ``LRP(model, composites.EpsilonGammaBox(low=0.0, high=1.0))``. Explains the signed
    selected output f; ``positive_output=True`` explains max(f, 0) as DTD does."""

    def __init__(
        self,
        model,
        rule: R.Rule | C.Composite = R.Epsilon(),
        first_rule: R.Rule | None = None,
        positive_output: bool = False,
        **kwargs,
    ):
        if isinstance(rule, C.Composite):
            if first_rule is not None:
                raise ValueError("LRP: give either a composite or rule/first_rule, not both.")
            composite = rule
        elif isinstance(rule, R.Rule):
            composite = C.lrp(rule, first_rule)
        else:
            raise TypeError(f"LRP needs a keras_dtd.rules.Rule or a composites.Composite, got {rule!r}.")
        super().__init__(model, composite, positive_output=positive_output, **kwargs)
