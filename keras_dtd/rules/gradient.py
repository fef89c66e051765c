"""Gradient-based rules for ReLU networks: deconvnet and guided backpropagation."""

from __future__ import annotations

import tensorflow as tf

from keras_dtd.rules.base import Rule
from keras_dtd.rules.structural import Route


def _is_relu(node):
    return node.activation == "relu"


class Deconvnet(Rule):
    """Deconvnet (Zeiler & Fergus 2014): a ReLU passes relu(R) back whatever its input was;
    a layer with a fused ReLU returns Wᵀ relu(R); every other layer the gradient Jᵀ R."""

    def relevance(self, call, relevance):
        (r,) = relevance
        if not _is_relu(call.node):
            return Route().relevance(call, relevance)
        if call.node.linear_map is None:
            return [tf.nn.relu(r)]
        return call.node.linear_map.transpose(call.inputs, call.kernel, tf.nn.relu(r))


class GuidedBackprop(Rule):
    """Guided backpropagation (Springenberg et al. 2015): a ReLU passes relu(R) ⊙ [z > 0]
    back (the gradient's mask and the deconvnet's); every other layer the gradient Jᵀ R."""

    def relevance(self, call, relevance):
        (r,) = relevance
        if not _is_relu(call.node):
            return Route().relevance(call, relevance)
        return call.vjp([tf.nn.relu(r)])
