"""The rule interface: :class:`Rule` maps a :class:`LayerCall`'s output relevance to its inputs."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import tensorflow as tf

from keras_dtd.core.tracing import Node
from keras_dtd.rules import modifiers


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One call of a layer in the forward pass, as a rule sees it.

    ``node``: the traced node (layer, kind, linear map ``node.linear_map``); ``inputs``/``outputs``:
    its tensors; ``kernel``, ``bias``: the weights W of ``node.linear_map`` in this call (None if
    fixed) and its bias b (None if none, else broadcastable against the outputs);
    ``linear``: z_j = Σ_i x_i w_ij as computed in the forward pass (before bias and
    activation; None for nodes without a linear map);
    ``domains``: a :class:`Domain` or None per input; ``vjp(cotangents)``: the
    vector–Jacobian product of the recorded forward call, one result per input; ``saved``:
    what the rule's own :meth:`Rule.forward` kept, if it computed the forward call.
    """

    node: Any
    inputs: list
    outputs: list
    kernel: Any
    bias: Any
    linear: Any
    domains: list
    vjp: Callable
    saved: Any = None

    @functools.cached_property
    def signed_inputs(self):
        """(x⁺ per input, x⁻ per input), computed once per call."""
        return [tf.nn.relu(x) for x in self.inputs], [modifiers.negative(x) for x in self.inputs]


class Rule:
    """Base class: ``relevance(call, relevance)`` maps the relevance of each output of a
    :class:`LayerCall` to one relevance tensor (or None) per input. ``uses_vjp``: whether
    it calls ``call.vjp`` (the forward call is then recorded on a tape); ``needs_vjp(node)``
    may say so per node."""

    uses_vjp = True

    def needs_vjp(self, node):
        """Whether ``relevance`` calls ``call.vjp`` on this node (default: ``uses_vjp``)."""
        return self.uses_vjp

    def relevance(self, call, relevance):  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, node, inputs):
        """The node's outputs and what the backward step needs, computed by the rule itself
        (e.g. attention's intermediates, computed once for both passes), or None to let the
        layer compute its outputs (the default)."""
        return None

    def receivers(self, node):
        """The indices of ``node``'s inputs this rule can give relevance to, or None (all of
        them). Layers that feed only inputs that get none need no rule (a normalization's
        statistics, the sines of a rotary embedding, a mask)."""
        return None

    def keeps_rectified(self, node):
        """Given that relevance reaches only outputs ≥ 0 of ``node``: "yes" if this rule
        then passes it to inputs > 0 alone (the layer before may then skip work for its
        negative outputs), "maybe" if the weights decide at run time, "no" (the default)."""
        return "no"

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def inner_relevance(rule, layer, path, kind, linear_map, inputs, kernel, bias, r, domains=None):
    """The relevance of each of ``inputs`` under ``rule`` for r at z = linear_map(inputs, kernel)
    (+ bias): a rule applied to a piece inside a layer's own structure (a recurrent cell's
    pre-activation or sum, an attention projection), seen as a node of ``kind`` named ``path``.
    Inputs the rule gives nothing get zeros."""
    z = linear_map.apply(list(inputs), kernel)
    node = Node(
        layer=layer,
        inputs=tuple(range(len(inputs))),
        outputs=(len(inputs),),
        path=path,
        kind=kind,
        linear_map=linear_map,
        nonnegative_inputs=(False,) * len(inputs),
    )
    call = LayerCall(
        node=node,
        inputs=list(inputs),
        outputs=[z if bias is None else z + bias],
        kernel=kernel,
        bias=bias,
        linear=z,
        domains=domains or [None] * len(inputs),
        vjp=lambda cotangents: linear_map.transpose(list(inputs), kernel, cotangents[0]),
    )
    shares = rule.relevance(call, [r])
    return [tf.zeros_like(x) if s is None else s for x, s in zip(inputs, shares)]
