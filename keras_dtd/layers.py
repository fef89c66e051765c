"""How keras_dtd sees each supported Keras layer: its kind, and for linear layers a linear map.

Kinds:
  ``kernel``       Dense, Conv1D/2D/3D: z = x·W + b
  ``average_pool`` average pooling (also global): a linear map with fixed weights 1/N
  ``max_pool``     max pooling (also global)
  ``add``          Add: z = Σ_k x_k
  ``batch_norm``   BatchNormalization not folded into a kernel layer: z = x·s + b
  ``structural``   layers that only move values: Flatten, Reshape, Permute, Concatenate, padding, cropping
  ``elementwise``  layers whose relevance passes through unchanged: ReLU, Dropout, Rescaling, ...
"""

from __future__ import annotations

import keras
import tensorflow as tf

_KINDS = (
    ("kernel", (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)),
    (
        "average_pool",
        (
            keras.layers.AveragePooling1D,
            keras.layers.AveragePooling2D,
            keras.layers.AveragePooling3D,
            keras.layers.GlobalAveragePooling1D,
            keras.layers.GlobalAveragePooling2D,
            keras.layers.GlobalAveragePooling3D,
        ),
    ),
    (
        "max_pool",
        (
            keras.layers.MaxPooling1D,
            keras.layers.MaxPooling2D,
            keras.layers.MaxPooling3D,
            keras.layers.GlobalMaxPooling1D,
            keras.layers.GlobalMaxPooling2D,
            keras.layers.GlobalMaxPooling3D,
        ),
    ),
    ("add", (keras.layers.Add,)),
    ("batch_norm", (keras.layers.BatchNormalization,)),
    (
        "structural",
        (
            keras.layers.Flatten,
            keras.layers.Reshape,
            keras.layers.Permute,
            keras.layers.Concatenate,
            keras.layers.ZeroPadding1D,
            keras.layers.ZeroPadding2D,
            keras.layers.ZeroPadding3D,
            keras.layers.Cropping1D,
            keras.layers.Cropping2D,
            keras.layers.Cropping3D,
        ),
    ),
    (
        "elementwise",
        (
            keras.layers.InputLayer,
            keras.layers.Dropout,
            keras.layers.SpatialDropout1D,
            keras.layers.SpatialDropout2D,
            keras.layers.SpatialDropout3D,
            keras.layers.GaussianNoise,
            keras.layers.GaussianDropout,
            keras.layers.Identity,
            keras.layers.Rescaling,
            keras.layers.ReLU,
            keras.layers.Activation,
            keras.layers.Softmax,
        ),
    ),
)

# Activations a hidden layer may have: relevance passes through them unchanged.
HIDDEN_ACTIVATIONS = ("relu", "linear")
# Activations stripped when they end the model: DTD explains the pre-activation score.
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


def kind_of(layer) -> str | None:
    """The kind of a built-in layer (see module docstring), or None if unknown."""
    for kind, classes in _KINDS:
        if type(layer) in classes:
            return kind
    return None


def activation_name(layer) -> str:
    """Name of a layer's activation: 'relu', 'linear', 'softmax', ... ('linear' if none)."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if isinstance(layer, keras.layers.ReLU):
        plain = layer.max_value is None and not layer.negative_slope and not layer.threshold
        return "relu" if plain else "relu_variant"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    return getattr(activation, "__name__", type(activation).__name__)


class LinearOp:
    """A layer's pre-activation as a map linear in its inputs: z = apply(x, W) + b.

    ``kernel()`` returns W, or None for maps with fixed non-negative weights
    (pooling, sums); ``apply(inputs, kernel)`` evaluates the map with any kernel
    of W's shape (W⁺, W², ...), which rules use with the gradient trick;
    ``add_bias(z)`` returns z + b. ``stack_axes()`` names the input and kernel axes
    along which several (input, kernel) pairs can be concatenated into one call:
    Σ_t apply(a_t, W_t) = apply([a_1 | a_2 | ...], [W_1; W_2; ...]), or None.
    """

    def kernel(self):
        return None

    def stack_axes(self):
        return None

    def add_bias(self, z):
        return z

    def apply(self, inputs, kernel):
        raise NotImplementedError


def _batch_norm_scale_shift(bn, dtype):
    """(s, t) with BN(x) = x·s + t in inference mode: s = γ/√(σ²+ε), t = β − μ·s."""
    scale = tf.math.rsqrt(tf.cast(bn.moving_variance, dtype) + bn.epsilon)
    if bn.scale:
        scale = scale * tf.cast(bn.gamma, dtype)
    shift = -tf.cast(bn.moving_mean, dtype) * scale
    if bn.center:
        shift = shift + tf.cast(bn.beta, dtype)
    return scale, shift


class KernelOp(LinearOp):
    """Dense or Conv layer, optionally with a BatchNormalization folded in:
    W' = W·s, b' = (b − μ)·s + β (computed from live variables, never written back)."""

    def __init__(self, layer, batch_norm=None):
        self.layer = layer
        self.batch_norm = batch_norm
        self.channels_first = getattr(layer, "data_format", None) == "channels_first"

    def _dtype(self):
        return self.layer.kernel.dtype

    def stack_axes(self):
        if getattr(self.layer, "groups", 1) != 1:
            return None
        return (1 if self.channels_first else -1), -2 if self.layer.kernel.ndim > 2 else 0

    def kernel(self):
        kernel = tf.convert_to_tensor(self.layer.kernel)
        if self.batch_norm is not None:
            scale, _ = _batch_norm_scale_shift(self.batch_norm, kernel.dtype)
            kernel = kernel * scale
        return kernel

    def add_bias(self, z):
        layer = self.layer
        bias = tf.convert_to_tensor(layer.bias) if layer.use_bias else None
        if self.batch_norm is not None:
            scale, shift = _batch_norm_scale_shift(self.batch_norm, self._dtype())
            bias = shift if bias is None else bias * scale + shift
        if bias is None:
            return z
        if self.channels_first:
            bias = tf.reshape(bias, (-1,) + (1,) * layer.rank)
        return z + bias

    def apply(self, inputs, kernel):
        (x,) = inputs
        if isinstance(self.layer, keras.layers.Dense):
            return tf.tensordot(x, kernel, axes=[[-1], [0]]) if x.shape.rank > 2 else tf.matmul(x, kernel)
        layer = self.layer
        if self.channels_first:  # CPUs without oneDNN have no NCHW convolution: compute in NHWC
            x = tf.transpose(x, [0, *range(2, x.shape.rank), 1])
        padding = layer.padding
        if padding == "causal":  # Conv1D: pad on the left, then a valid convolution
            left = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
            x = tf.pad(x, [[0, 0], [left, 0], [0, 0]])
            padding = "valid"
        z = keras.ops.conv(
            x,
            kernel,
            strides=list(layer.strides),
            padding=padding,
            dilation_rate=layer.dilation_rate,
            data_format="channels_last",
        )
        if self.channels_first:
            z = tf.transpose(z, [0, z.shape.rank - 1, *range(1, z.shape.rank - 1)])
        return z


class BatchNormOp(LinearOp):
    """A BatchNormalization that no kernel layer absorbs: z = x·s + t, s = γ/√(σ²+ε)."""

    def __init__(self, layer):
        self.layer = layer

    def _broadcast(self, v, rank):
        shape = [1] * rank
        shape[self.layer.axis] = -1
        return tf.reshape(v, shape)

    def kernel(self):
        scale, _ = _batch_norm_scale_shift(self.layer, self.layer.moving_variance.dtype)
        return scale

    def add_bias(self, z):
        _, shift = _batch_norm_scale_shift(self.layer, self.layer.moving_variance.dtype)
        return z + self._broadcast(shift, z.shape.rank)

    def apply(self, inputs, kernel):
        (x,) = inputs
        return x * self._broadcast(kernel, x.shape.rank)


class PoolOp(LinearOp):
    """Average pooling: fixed weights 1/N over each window."""

    def __init__(self, layer):
        self.layer = layer

    def apply(self, inputs, kernel):
        (x,) = inputs
        return self.layer(x)


class SumOp(LinearOp):
    """Add: z = Σ_k x_k (fixed weights 1)."""

    def apply(self, inputs, kernel):
        return tf.add_n(list(inputs))
