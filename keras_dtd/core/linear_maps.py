"""Linear maps: a node's pre-activation z = apply(x, W) + b as a map linear in its inputs,
which rules evaluate with modified weights (W⁺, W², ...) and transpose (Jᵀ s).

Each map reads the layer's weights when a pass runs (``parameters``), never when it is
built: a kernel is read through the layer's own attribute, so a LoRA update
(``enable_lora``) is included, and an int8 or int4 kernel is dequantized. A
BatchNormalization folded into a kernel layer is applied to those tensors (the model is
untouched). :mod:`keras_dtd.core.registry` says which layer class gets which map.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

from keras_dtd.core.tracing import UnsupportedLayerError, constant_arguments

# Quantization modes whose kernels are dequantized (Dense); float8 keeps a float kernel.
DEQUANTIZED_MODES = ("int8", "int4")


def check_quantization(layer):
    """Refuse a layer whose quantized kernel keras_dtd cannot dequantize, naming the mode."""
    mode = getattr(layer, "quantization_mode", None)
    if (
        mode is None
        or mode == "float8"
        or (mode in DEQUANTIZED_MODES and isinstance(layer, keras.layers.Dense))
    ):
        return
    raise UnsupportedLayerError(
        f"Layer '{layer.name}' ({type(layer).__name__}) is quantized in mode '{mode}', whose kernel "
        f"keras_dtd cannot dequantize (it dequantizes {' and '.join(DEQUANTIZED_MODES)} on Dense layers and "
        "keeps float8 kernels). Explain the model before model.quantize(...), which changes its layers in "
        "place: keep a float copy from before it (keras.models.clone_model, then set_weights)."
    )


def read_weight(layer, name):
    """``layer.<name>`` as a float tensor when a pass runs (None if the layer has none): the
    LoRA update included, as Keras' ``kernel`` property computes it; an int8 or int4 kernel
    dequantized, W = q / s per output (int8, int4 per channel) or W = (q − z_g) · s_g per
    group g of inputs (int4 in groups), plus the LoRA update W_a W_b · α / r."""
    mode = getattr(layer, "quantization_mode", None)
    if name != "kernel" or mode not in DEQUANTIZED_MODES:
        value = getattr(layer, name)
        return None if value is None else tf.convert_to_tensor(value)
    (stored,) = [v for v in layer.variables if v.name == "kernel"]  # q (int4: two per byte)
    q = tf.cast(stored, layer.compute_dtype)
    if mode == "int4":
        q = tf.cast(keras.quantizers.unpack_int4(stored, layer.units, axis=-1), layer.compute_dtype)
    scale = tf.convert_to_tensor(layer.kernel_scale)
    if getattr(layer, "kernel_zero", None) is None:
        kernel = q / scale
    else:  # one scale and zero point per group of inputs
        groups = tf.cast(layer.g_idx, tf.int32)
        zero = tf.cast(tf.gather(layer.kernel_zero, groups), q.dtype)
        kernel = (q - zero) * tf.gather(scale, groups)
    if layer.lora_enabled:
        kernel = kernel + (layer.lora_alpha / layer.lora_rank) * tf.matmul(
            layer.lora_kernel_a, layer.lora_kernel_b
        )
    return kernel


def separable_maps(layer, batch_norm=None) -> tuple[LinearMap, LinearMap]:
    """A SeparableConv as (depthwise map, pointwise 1×1 convolution with the bias)."""
    ones = (1,) * len(layer.strides)
    depthwise = DepthwiseMap(layer, "depthwise_kernel", None)
    pointwise = ConvMap(
        layer,
        "pointwise_kernel",
        "bias",
        batch_norm,
        strides=ones,
        padding="valid",
        dilation_rate=ones,
    )
    return depthwise, pointwise


class LinearMap:
    """A node's pre-activation as a map linear in its inputs: z = apply(x, W) + b.

    ``parameters(inputs)`` returns (W, b) once per pass, given the layer's actual inputs
    (maps such as LayerNormalization have a W that depends on them): W is None for maps
    with fixed non-negative weights (pooling, sums; ``fixed_weights`` is then True), b is
    None or broadcasts against z.
    ``apply(inputs, kernel)`` evaluates the map with any kernel of W's shape (W⁺, W², ...:
    every rule modifies W elementwise), which rules use with the gradient trick. ``diagonal``:
    each output reads one input entry (rules then need no Jacobian). ``stack_axes()``
    names the input and kernel axes along which several (input, kernel) pairs can be
    concatenated into one call, and the output axis along which that call's result must be
    split and summed (None when the map's contraction sums it):
    Σ_t apply(a_t, W_t) = apply([a_1 | a_2 | ...], [W_1; W_2; ...]) (split and summed); or None.
    ``output_stack_axes()`` names the kernel and output axes along which one input's maps
    with several kernels run as one call: apply(x, [W_1 | W_2 | ...]) = [apply(x, W_1) | ...];
    or None.
    """

    diagonal = False
    fixed_weights = False

    def kernel(self, inputs):
        return None

    def bias(self, inputs):
        return None

    def parameters(self, inputs):
        return self.kernel(inputs), self.bias(inputs)

    def stack_axes(self):
        return None

    def output_stack_axes(self):
        return None

    def apply(self, inputs, kernel):
        raise NotImplementedError

    def transpose(self, inputs, kernel, cotangent):
        """Jᵀ s, the transposed map of ``apply(·, kernel)`` applied to the cotangent s: one
        tensor per input (None where the map does not read it). ``inputs`` give shapes
        only. By default the VJP of ``apply``; maps that can write Jᵀ directly do, which
        spares the tape and the kernel's gradient that a VJP also builds."""
        if len({id(x) for x in inputs}) < len(inputs):  # one tensor read twice: keep its uses apart
            inputs = [tf.identity(x) for x in inputs]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(inputs)
            z = self.apply(inputs, kernel)
        return tape.gradient(z, inputs, output_gradients=cotangent)


def _batch_norm_scale_shift(bn, dtype):
    """(s, t) with BN(x) = x·s + t in inference mode: s = γ/√(σ²+ε), t = β − μ·s."""
    scale = tf.math.rsqrt(tf.cast(bn.moving_variance, dtype) + bn.epsilon)
    if bn.scale:
        scale = scale * tf.cast(bn.gamma, dtype)
    shift = -tf.cast(bn.moving_mean, dtype) * scale
    if bn.center:
        shift = shift + tf.cast(bn.beta, dtype)
    return scale, shift


def _to_channels_last(x):
    return tf.transpose(x, [0, *range(2, x.shape.rank), 1])


def _to_channels_first(z):
    return tf.transpose(z, [0, z.shape.rank - 1, *range(1, z.shape.rank - 1)])


class KernelMap(LinearMap):
    """A layer's kernel and bias, read by attribute name when a pass runs
    (:func:`read_weight`), optionally with a BatchNormalization folded in:
    W' = W·s (per output channel), b' = (b − μ)·s + β, never written back. channels_first
    inputs are computed in channels_last (CPUs without oneDNN have no NCHW convolutions).

    Args:
      layer: the layer.
      kernel: the name of its kernel attribute, e.g. "kernel".
      bias: the name of its bias attribute, or None.
      batch_norm: a BatchNormalization layer to fold in, or None.
      **conv_args: strides, padding, dilation_rate where they are not the layer's own.

    Raises:
      UnsupportedLayerError: the layer is quantized in a mode whose kernel cannot be read.
    """

    def __init__(self, layer, kernel, bias, batch_norm=None, **conv_args):
        check_quantization(layer)
        self.layer = layer
        self._kernel = kernel
        self._bias = bias
        self.batch_norm = batch_norm
        self.channels_first = getattr(layer, "data_format", None) == "channels_first"
        self.conv_args = {
            "strides": conv_args.get("strides", getattr(layer, "strides", None)),
            "padding": conv_args.get("padding", getattr(layer, "padding", None)),
            "dilation_rate": conv_args.get("dilation_rate", getattr(layer, "dilation_rate", None)),
        }

    def parameters(self, inputs):
        check_quantization(self.layer)  # again when a pass is traced: the layer may be quantized since
        kernel = read_weight(self.layer, self._kernel)
        bias = None if self._bias is None else read_weight(self.layer, self._bias)
        if self.batch_norm is not None:
            scale, shift = _batch_norm_scale_shift(self.batch_norm, kernel.dtype)
            kernel = self._scale_outputs(kernel, scale)
            bias = shift if bias is None else bias * scale + shift
        if bias is not None and self.channels_first:
            bias = tf.reshape(bias, (-1,) + (1,) * (inputs[0].shape.rank - 2))
        return kernel, bias

    def _scale_outputs(self, kernel, scale):
        """W with each output channel's weights multiplied by its scale."""
        return kernel * scale

    def apply(self, inputs, kernel):
        (x,) = inputs
        if not self.channels_first:
            return self._map(x, kernel)
        return _to_channels_first(self._map(_to_channels_last(x), kernel))

    def transpose(self, inputs, kernel, cotangent):
        (x,) = inputs
        if not self.channels_first:
            transposed = self._transposed_map(x, kernel, cotangent)
        else:
            transposed = self._transposed_map(_to_channels_last(x), kernel, _to_channels_last(cotangent))
            transposed = None if transposed is None else _to_channels_first(transposed)
        return super().transpose(inputs, kernel, cotangent) if transposed is None else [transposed]

    def _map(self, x, kernel):
        """The map on channels_last input."""
        raise NotImplementedError

    def _transposed_map(self, x, kernel, s):
        """Jᵀ s on channels_last tensors (x gives the shape), or None to use the VJP."""
        return None

    def _plain_2d(self, x):
        """Whether the map is a 2D convolution that TensorFlow's transposed ops express as is."""
        args = self.conv_args
        plain = args["padding"] in ("same", "valid") and tuple(args["dilation_rate"]) == (1, 1)
        return x.shape.rank == 4 and plain


class DenseMap(KernelMap):
    """Dense: z = x·W + b (over the last axis)."""

    def stack_axes(self):
        return -1, 0, None

    def output_stack_axes(self):
        return -1, -1

    def _map(self, x, kernel):
        return tf.tensordot(x, kernel, axes=[[-1], [0]]) if x.shape.rank > 2 else tf.matmul(x, kernel)

    def _transposed_map(self, x, kernel, s):
        return tf.matmul(s, kernel, transpose_b=True) if x.shape.rank == 2 else None


class EinsumMap(KernelMap):
    """EinsumDense: z = einsum(equation, x, W) + b (Jᵀ by the VJP)."""

    def _map(self, x, kernel):
        return tf.einsum(self.layer.equation, x, kernel)


class ConvMap(KernelMap):
    """Conv1D/2D/3D (strides, valid/same/causal padding, dilation, groups)."""

    def stack_axes(self):
        if getattr(self.layer, "groups", 1) != 1:
            return None
        return (1 if self.channels_first else -1), -2, None

    def output_stack_axes(self):
        if getattr(self.layer, "groups", 1) != 1:
            return None
        return -1, (1 if self.channels_first else -1)

    def _map(self, x, kernel):
        args = dict(self.conv_args)
        if args["padding"] == "causal":  # Conv1D: pad on the left, then a valid convolution
            x = tf.pad(x, [[0, 0], [args["dilation_rate"][0] * (kernel.shape[0] - 1), 0], [0, 0]])
            args["padding"] = "valid"
        groups = x.shape[-1] // kernel.shape[-2]
        if groups == 1:
            return keras.ops.conv(x, kernel, data_format="channels_last", **args)
        if kernel.shape[-2] == 1:  # one input channel per group: a depthwise convolution
            depthwise = tf.reshape(kernel, kernel.shape[:-2] + (groups, kernel.shape[-1] // groups))
            return keras.ops.depthwise_conv(x, depthwise, data_format="channels_last", **args)
        # grouped: one convolution per group (TensorFlow has no grouped convolution on CPU)
        pieces = zip(tf.split(x, groups, axis=-1), tf.split(kernel, groups, axis=-1))
        return tf.concat([keras.ops.conv(a, k, data_format="channels_last", **args) for a, k in pieces], -1)

    def _transposed_map(self, x, kernel, s):
        if not self._plain_2d(x) or x.shape[-1] != kernel.shape[-2]:
            return None
        strides, padding = (1, *self.conv_args["strides"], 1), self.conv_args["padding"].upper()
        return tf.nn.conv2d_transpose(s, kernel, tf.shape(x), strides, padding)


class DepthwiseMap(KernelMap):
    """DepthwiseConv1D/2D (and the depthwise half of a SeparableConv): kernel (..., in, mult),
    output channel c·mult + m."""

    def stack_axes(self):  # channels do not mix: the stacked call's outputs are summed
        channels = 1 if self.channels_first else -1
        return channels, -2, channels

    def _scale_outputs(self, kernel, scale):
        return kernel * tf.reshape(scale, kernel.shape[-2:])

    def _map(self, x, kernel):
        return keras.ops.depthwise_conv(x, kernel, data_format="channels_last", **self.conv_args)

    def _transposed_map(self, x, kernel, s):
        if not self._plain_2d(x):
            return None
        strides, padding = (1, *self.conv_args["strides"], 1), self.conv_args["padding"].upper()
        return tf.nn.depthwise_conv2d_backprop_input(tf.shape(x), kernel, s, strides, padding)


class TransposedConvMap(KernelMap):
    """Conv1D/2D/3DTranspose: kernel (..., out, in)."""

    def stack_axes(self):
        return (1 if self.channels_first else -1), -1, None

    def _scale_outputs(self, kernel, scale):
        return kernel * scale[:, None]

    def _map(self, x, kernel):
        return keras.ops.conv_transpose(
            x, kernel, output_padding=self.layer.output_padding, data_format="channels_last", **self.conv_args
        )


class LayerNormMap(LinearMap):
    """LayerNormalization with 1/σ held constant (Ali et al., ICML 2022), a map linear in x:
    z_j = Σ_i (δ_ij − c/N) γ_j/σ · x_i + β_j over the N normalized entries (c = 1 when
    centering, 0 for rms_scaling). Its kernel holds the diagonal entries (1 − c/N) γ_j/σ
    and the off-diagonal entries −c γ_j/(Nσ), stacked on a leading axis, so elementwise
    weight modifiers (W⁺, W², ...) apply to the full matrix."""

    def __init__(self, layer):
        self.layer = layer
        self.centered = not layer.rms_scaling

    def _axes(self, x):
        axes = self.layer.axis if isinstance(self.layer.axis, (list, tuple)) else [self.layer.axis]
        return [a % x.shape.rank for a in axes]

    def _parameter(self, variable, x):
        """γ or β shaped to broadcast against x."""
        shape = [1] * x.shape.rank
        for a in self._axes(x):
            shape[a] = x.shape[a]
        return tf.reshape(tf.cast(variable, x.dtype), shape)

    def kernel(self, inputs):
        (x,) = inputs
        axes = self._axes(x)
        _, variance = tf.nn.moments(x, axes, keepdims=True)
        gain = tf.math.rsqrt(variance + self.layer.epsilon)
        if self.layer.scale:
            gain = gain * self._parameter(self.layer.gamma, x)
        gain = tf.broadcast_to(gain, tf.shape(x))
        if not self.centered:
            return gain[None]
        n = 1
        for a in axes:
            n *= x.shape[a]
        return tf.stack([(1.0 - 1.0 / n) * gain, -gain / n])

    def bias(self, inputs):
        return self._parameter(self.layer.beta, inputs[0]) if self.layer.center else None

    def apply(self, inputs, kernel):
        (x,) = inputs
        z = x * kernel[0]
        if self.centered:  # Σ_{i≠j} x_i O_j = (Σ_i x_i − x_j) O_j
            total = tf.reduce_sum(x, axis=self._axes(x), keepdims=True)
            z = z + (total - x) * kernel[1]
        return z


class TimeDistributedMap(LinearMap):
    """A TimeDistributed layer's map: its inner layer's map at every step, on the input with
    batch and time merged, (batch · time, ...)."""

    def __init__(self, inner):
        self.inner = inner
        self.diagonal = inner.diagonal
        self.fixed_weights = inner.fixed_weights

    def parameters(self, inputs):
        return self.inner.parameters([_merge_time(x) for x in inputs])

    def stack_axes(self):
        axes = self.inner.stack_axes()
        return axes if axes is not None and all(a is None or a < 0 for a in axes) else None

    def output_stack_axes(self):
        axes = self.inner.output_stack_axes()
        return axes if axes is not None and all(a < 0 for a in axes) else None

    def apply(self, inputs, kernel):
        return _split_time(self.inner.apply([_merge_time(x) for x in inputs], kernel), inputs[0])

    def transpose(self, inputs, kernel, cotangent):
        merged = [_merge_time(x) for x in inputs]
        return [
            _split_time(g, x)
            for g, x in zip(self.inner.transpose(merged, kernel, _merge_time(cotangent)), inputs)
        ]


def _merge_time(x):
    return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))


def _split_time(z, like):
    return tf.reshape(z, tf.concat([tf.shape(like)[:2], tf.shape(z)[1:]], 0))


class MatrixMap(LinearMap):
    """z = x·W with W given as a tensor when the map is used (the pieces of a recurrent cell)."""

    def stack_axes(self):
        return -1, -2, None

    def output_stack_axes(self):
        return -1, -1

    def apply(self, inputs, kernel):
        return tf.matmul(inputs[0], kernel)

    def transpose(self, inputs, kernel, cotangent):
        return [tf.matmul(cotangent, kernel, transpose_b=True)]


class MatmulMap(LinearMap):
    """``keras.ops.matmul(x, W)`` with a constant W: z = x·W."""

    def __init__(self, node):
        constants = constant_arguments(node)
        if len(constants) != 1 or node.arguments.args[0] is constants[0]:
            raise ValueError(f"Operation '{node.path}': only matmul(tensor, constant) is a linear map.")
        self._kernel = tf.convert_to_tensor(constants[0])

    def kernel(self, inputs):
        return tf.cast(self._kernel, inputs[0].dtype) if inputs else self._kernel

    def stack_axes(self):
        return -1, -2, None

    def apply(self, inputs, kernel):
        return (
            tf.linalg.matmul(inputs[0], kernel) if inputs[0].shape.rank > 2 else tf.matmul(inputs[0], kernel)
        )


class BatchNormMap(LinearMap):
    """A BatchNormalization that no kernel layer absorbs: z = x·s + t, s = γ/√(σ²+ε)."""

    diagonal = True

    def __init__(self, layer):
        self.layer = layer

    def _broadcast(self, v, rank):
        shape = [1] * rank
        shape[self.layer.axis] = -1
        return tf.reshape(v, shape)

    def parameters(self, inputs):
        scale, shift = _batch_norm_scale_shift(self.layer, self.layer.moving_variance.dtype)
        rank = inputs[0].shape.rank
        return self._broadcast(scale, rank), self._broadcast(shift, rank)

    def apply(self, inputs, kernel):
        (x,) = inputs
        return x * kernel


class FixedLinearMap(LinearMap):
    """A map with fixed non-negative weights evaluated by the layer itself (average pooling,
    Average, mean, sum), with the node's other arguments (or none: a TimeDistributed layer's
    inner layer gets the tensors only)."""

    fixed_weights = True

    def __init__(self, node):
        self.node = node

    def apply(self, inputs, kernel):
        if self.node.arguments is None:
            return self.node.layer(*inputs)
        tensor_dict = {id(t): x for t, x in zip(self.node.arguments.keras_tensors, inputs)}
        args, kwargs = self.node.arguments.fill_in(tensor_dict)
        return self.node.layer(*args, **kwargs)


class WeightedSumMap(LinearMap):
    """z = Σ_k c_k x_k + b: Add (c = 1, kernel None), Subtract (1, −1), CustomScaleLayer (1, scale);
    b: the sum of the constant tensors added (a position table, a class token's slot), or None."""

    def __init__(self, weights, constants=()):
        self.weights = weights
        self.constants = tuple(constants)

    def bias(self, inputs):
        if not self.constants:
            return None
        dtype = inputs[0].dtype if inputs else tf.float32
        return functools.reduce(tf.add, [tf.cast(c, dtype) for c in self.constants])

    @property
    def fixed_weights(self):
        return self.weights is None

    def kernel(self, inputs):
        if self.weights is None:
            return None
        return tf.constant(self.weights, dtype=inputs[0].dtype if inputs else tf.float32)

    def apply(self, inputs, kernel):
        terms = inputs if kernel is None else [kernel[k] * x for k, x in enumerate(inputs)]
        return functools.reduce(tf.add, terms)  # tf.add broadcasts, as Keras' merges do

    def transpose(self, inputs, kernel, cotangent):
        if any(x.shape != cotangent.shape for x in inputs):  # broadcasting sums: the VJP reduces
            return super().transpose(inputs, kernel, cotangent)
        return [cotangent if kernel is None else kernel[k] * cotangent for k in range(len(inputs))]
