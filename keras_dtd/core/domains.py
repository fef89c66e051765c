"""Domains: what is known about the entries of a tensor that holds model input values
(support, bounds, hidden units mixed in), which the first-layer rules (w², flat, z^B) use."""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf

from keras_dtd.core import registry


@dataclasses.dataclass(frozen=True)
class Domain:
    """What is known about a layer input reached from a model input through layers that
    only move, pool or rescale values (the input of a first kernel layer):
    ``support`` is 1 where an entry is a real input value and 0 where it is padding or
    a hidden unit; ``low``/``high`` bound the input values (from the analyzer's
    ``input_range``; 0 elsewhere); ``hidden`` is 1 at hidden units when the tensor mixes
    them with input values (e.g. ``Concatenate()([input, conv_output])``), else None.
    Tensors have one sample's shape with batch size 1; missing parts are None."""

    support: Any = None
    low: Any = None
    high: Any = None
    hidden: Any = None


def input_domains(graph, inputs, values, input_range):
    """The domain of every tensor that holds model input values: reached from the float inputs
    through layers that pass domains on (not kernel layers). A tensor mixing them with
    hidden units (a Concatenate of input and features) marks those as hidden.

    Args:
      graph: the canonized graph.
      inputs: the model input tensors of this pass.
      values: the forward pass's tensors, by id.
      input_range: the analyzer's checked ``(low, high)`` per input, or None.

    Returns:
      ``{tensor id: Domain}``.
    """
    domains = {}
    for k, (i, x) in enumerate(zip(graph.inputs, inputs)):
        if not x.dtype.is_floating:  # token ids, masks: no values that kernel layers read
            continue
        low, high = input_range[k] if input_range is not None else (None, None)
        domains[i] = Domain(tf.ones_like(x[:1]), _constant(low), _constant(high))
    for node in graph.nodes:
        if not registry.passes_domain(node) or not any(i in domains for i in node.inputs):
            continue
        known = [domains.get(i) or _hidden_domain(values[i], input_range is not None) for i in node.inputs]
        domains.update(zip(node.outputs, _propagate(known, node)))
    return domains


def _constant(a):
    return None if a is None else tf.constant(a)


def _hidden_domain(value, bounded):
    """The domain of hidden units merged with input values: no support, zero bounds."""
    zeros = tf.zeros_like(value[:1])
    return Domain(zeros, zeros if bounded else None, zeros if bounded else None, tf.ones_like(value[:1]))


def _moved(node, masks):
    """0/1 masks moved (or merged) the way the node moves values."""
    return [tf.cast(m > 0, m.dtype) for m in node.forward(masks)]


def _propagate(domains, node):
    """Domains of a node's outputs from those of its inputs: supports and hidden masks
    follow the layer's moves (padding adds zeros; an entry mixing input values and
    hidden units counts as hidden), bounds map through it (monotone layers keep the order)."""
    if registry.keeps_support(node):
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
        return [Domain(s, hidden=h) for s, h in zip(supports, hidden)]
    lows = node.forward([d.low for d in domains])
    highs = node.forward([d.high for d in domains])
    return [
        Domain(s, tf.minimum(lo, hi), tf.maximum(lo, hi), h)
        for s, lo, hi, h in zip(supports, lows, highs, hidden)
    ]
