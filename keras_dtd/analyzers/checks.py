"""What analyzers accept: the checks of inputs, input ranges, the explained output and
neuron selection (each error names the problem and the fix), and batches padded to the
compiled size. Nothing here runs inside the compiled pass."""

from __future__ import annotations

import math
import sys

import numpy as np


def choose_output(graph, model, output):
    """(index of the explained output among the model's outputs, its number of neurons,
    whether it is a sequence) for ``output`` (None, an index or a name). A sequence output,
    (batch, length unknown, n), has n neurons per position (a language model's vocabulary)."""
    names = list(getattr(model, "output_names", None) or graph.output_names)
    if output is None:
        if len(graph.outputs) > 1:
            raise ValueError(
                f"Model '{model.name}' has {len(graph.outputs)} outputs {names}; "
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
    if len(shape) == 2 and shape[0] is None and shape[1] is not None:
        return k, shape[1], True
    if any(d is None for d in shape):
        raise ValueError(
            f"Output {names[k]} has unknown dimensions {shape}; neuron selection needs a fixed size."
        )
    return k, math.prod(shape), False


def check_input_range(graph, input_range):
    """``input_range`` as one (low, high) pair of arrays of one sample's shape (batch 1)
    per model input, or None."""
    if input_range is None:
        return None
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


def check_inputs(graph, model_name, x, input_range):
    """``x`` as a list of numpy arrays in the model's input dtypes, after checking count,
    dtype, shape, batch size, finiteness and ``input_range`` (as :func:`check_input_range`
    returns it). ``x`` may be a dict keyed by the model's input names."""
    n_inputs = len(graph.inputs)
    if isinstance(x, dict):
        names = list(graph.input_names)
        missing, extra = [n for n in names if n not in x], [n for n in x if n not in names]
        if missing or extra:
            raise ValueError(
                f"Model '{model_name}' has the inputs {names}; the dict given "
                + (f"lacks {missing}" if missing else "")
                + (" and " if missing and extra else "")
                + (f"has unknown keys {extra}" if extra else "")
                + ". Pass one array per input name."
            )
        x = [x[n] for n in names]
        if n_inputs == 1:
            x = x[0]
    if n_inputs > 1:
        if not isinstance(x, (list, tuple)) or len(x) != n_inputs:
            raise ValueError(f"Model '{model_name}' has {n_inputs} inputs; pass a list of {n_inputs} arrays.")
        xs = list(x)
    else:
        xs = [x]
    checked = []
    for k, (a, shape, dtype) in enumerate(zip(xs, graph.input_shapes, graph.input_dtypes)):
        a = np.asarray(a)
        name = "x" if n_inputs == 1 else f"input {k}"
        if dtype == "bool" and a.dtype != bool:
            raise TypeError(f"{name} has dtype {a.dtype}; the model expects a boolean array (a mask).")
        if dtype != "bool" and (a.dtype == bool or a.dtype.kind not in "iuf"):
            raise TypeError(f"{name} has dtype {a.dtype}; expected a numeric (float or int) array.")
        if a.ndim != len(shape) or any(d is not None and d != s for d, s in zip(shape[1:], a.shape[1:])):
            hint = " Add a batch axis, e.g. x[None]." if a.shape == tuple(shape[1:]) else ""
            raise ValueError(f"{name} has shape {a.shape}; the model expects (batch, ...) = {shape}.{hint}")
        if a.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch (shape {a.shape}); pass at least one sample.")
        a = a.astype(dtype, copy=False)
        bad = ~np.isfinite(a)
        if bad.any():
            raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite values.")
        if input_range is not None:
            low, high = input_range[k]
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


def check_selection(selection, n, n_outputs):
    """(int32 (n,) indices, -1 for each sample's top output; whether "all" outputs are
    explained) for ``neuron_selection``."""
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
    if np.any(a < 0) or np.any(a >= n_outputs):
        raise ValueError(
            f"neuron_selection {selection!r} is out of range: the output has {n_outputs} neurons "
            f"(0..{n_outputs - 1})."
        )
    return np.broadcast_to(a, (n,)).astype(np.int32), False


def check_sequence_selection(selection, n, n_outputs, length, last):
    """Indices for a sequence output (batch, length, n_outputs): t·n_outputs + v for token v
    at position t, or −(t + 1) for the top token at position t; and whether "all" outputs are
    explained. ``selection``: "max_activation" (the top token at each sample's last
    position ``last``), "all", a token (at the last position), one token per sample, a
    (position, token) pair, or one pair per sample ((n, 2)); positions may count from the end."""
    last = np.broadcast_to(np.asarray(last, np.int64), (n,))
    if isinstance(selection, str):
        if selection in ("max_activation", "all"):
            return (-(last + 1)).astype(np.int32), selection == "all"
        raise ValueError(
            "neuron_selection must be 'max_activation', 'all', a token, one token per sample, a "
            f"(position, token) pair or one pair per sample; got '{selection}'."
        )
    pairs = isinstance(selection, tuple) and len(selection) == 2
    a = np.asarray(selection)
    if a.dtype == bool or a.dtype.kind not in "iu" or a.ndim > 2 or (a.ndim == 2 and a.shape[1] != 2):
        raise ValueError(
            "neuron_selection for a sequence output must be 'max_activation', 'all', a token, one "
            f"token per sample, a (position, token) pair or one pair per sample; got {selection!r}."
        )
    if pairs or a.ndim == 2:
        a = np.broadcast_to(a.reshape(-1, 2), (n, 2)) if a.ndim == 1 or a.shape[0] == 1 else a
        if a.shape[0] != n:
            raise ValueError(f"neuron_selection has {a.shape[0]} (position, token) pairs for {n} samples.")
        positions, tokens = a[:, 0].astype(np.int64), a[:, 1]
        if np.any(positions < -length) or np.any(positions >= length):
            raise ValueError(
                f"neuron_selection position out of range: the sequence has {length} positions "
                f"(0..{length - 1}, or -{length}..-1 from the end)."
            )
        positions = positions % length
    else:
        if a.ndim == 1 and a.shape[0] != n:
            raise ValueError(f"neuron_selection has {a.shape[0]} tokens for {n} samples.")
        positions, tokens = last, np.broadcast_to(a, (n,))
    if np.any(tokens < 0) or np.any(tokens >= n_outputs):
        raise ValueError(
            f"neuron_selection token out of range: the output has {n_outputs} neurons per position "
            f"(0..{n_outputs - 1})."
        )
    return (positions * n_outputs + tokens).astype(np.int32), False


def padded(a, pad, value):
    """``a`` with ``pad`` rows of ``value`` appended (the last batch, padded to the compiled size)."""
    if not pad:
        return a
    return np.concatenate([a, np.full((pad,) + a.shape[1:], value, a.dtype)])


def caller_stacklevel():
    """The stacklevel of the first caller outside keras_dtd, so warnings point at user code."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("keras_dtd"):
        frame, level = frame.f_back, level + 1
    return level
