"""Small Keras models covering the supported layer types (built with a fixed seed)."""

import keras
import numpy as np

L = keras.layers


def _randomize_batch_norms(model):
    """Give BatchNormalization layers non-trivial statistics, as after training."""
    rng = np.random.default_rng(1)
    for layer in _all_layers(model):
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.uniform(-0.1, 0.1, beta.shape),
                    rng.uniform(-0.2, 0.2, mean.shape),
                    rng.uniform(0.5, 2.0, var.shape),
                ]
            )
    return model


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def mlp():
    return keras.Sequential(
        [
            keras.Input((10,)),
            L.Dense(16, activation="relu"),
            L.Dropout(0.5),
            L.Dense(8, activation="relu"),
            L.Dense(3),
        ],
        name="mlp",
    )


def cnn_max_avg():
    inp = keras.Input((12, 12, 2))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = L.MaxPooling2D(2)(h)
    h = L.Conv2D(6, 3, activation="relu")(h)
    h = L.AveragePooling2D(2)(h)
    h = L.Flatten()(h)
    return keras.Model(inp, L.Dense(4)(h), name="cnn_max_avg")


def strided_gap():
    inp = keras.Input((16, 16, 3))
    h = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    h = L.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inp, L.Dense(5)(h), name="strided_gap")


def residual():
    inp = keras.Input((10, 10, 2))
    h = L.Conv2D(6, 3, padding="same", activation="relu")(inp)
    branch = L.Conv2D(6, 3, padding="same", activation="relu")(h)
    branch = L.Conv2D(6, 3, padding="same")(branch)
    h = L.ReLU()(L.Add()([h, branch]))
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inp, L.Dense(3)(h), name="residual")


def concat_branches():
    inp = keras.Input((9, 9, 2))
    a = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    b = L.Conv2D(3, 1, activation="relu")(inp)
    h = L.Concatenate()([a, b])
    h = L.Conv2D(5, 3, activation="relu")(h)
    h = L.GlobalMaxPooling2D()(h)
    return keras.Model(inp, L.Dense(3)(h), name="concat_branches")


def conv1d_global_max():
    inp = keras.Input((20, 3))
    h = L.Conv1D(6, 5, activation="relu")(inp)
    h = L.Conv1D(6, 3, padding="causal", dilation_rate=2, activation="relu")(h)
    h = L.GlobalMaxPooling1D()(h)
    return keras.Model(inp, L.Dense(4)(h), name="conv1d_global_max")


def conv_bn_relu():
    inp = keras.Input((10, 10, 1))
    h = L.Conv2D(6, 3, use_bias=False)(inp)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    h = L.Conv2D(6, 3)(h)
    h = L.BatchNormalization()(h)
    h = L.Activation("relu")(h)
    h = L.MaxPooling2D(2)(h)
    h = L.Flatten()(h)
    return _randomize_batch_norms(keras.Model(inp, L.Dense(3)(h), name="conv_bn_relu"))


def backbone():
    return keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            L.Conv2D(4, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(6, 3, activation="relu"),
        ],
        name="backbone",
    )


def nested_backbone(net=None):
    net = net or backbone()
    inp = keras.Input((12, 12, 1))
    h = L.GlobalAveragePooling2D()(net(inp))
    return keras.Model(inp, L.Dense(3)(h), name="nested_backbone")


def conv3d_reshape():
    inp = keras.Input((6, 6, 4, 1))
    h = L.Conv3D(4, 2, activation="relu")(inp)
    h = L.MaxPooling3D((2, 2, 1))(h)
    h = L.Reshape((-1, 4))(h)
    h = L.Permute((2, 1))(h)
    h = L.Flatten()(h)
    return keras.Model(inp, L.Dense(3, activation="softmax")(h), name="conv3d_reshape")


def padded_rescaled():
    """Explicit padding and rescaling before the first convolution (as in ResNet50)."""
    inp = keras.Input((9, 9, 1))
    h = L.Rescaling(2.0, offset=-0.5)(inp)
    h = L.ZeroPadding2D(2)(h)
    h = L.Conv2D(4, 3, strides=2, activation="relu")(h)
    h = L.ZeroPadding2D(1)(h)
    h = L.MaxPooling2D(3, strides=2)(h)
    h = L.Flatten()(h)
    return keras.Model(inp, L.Dense(3)(h), name="padded_rescaled")


def channels_first_bn():
    """channels_first convolution with a BatchNormalization on axis 1 folded into it."""
    inp = keras.Input((2, 8, 8))
    h = L.Conv2D(4, 3, data_format="channels_first", use_bias=False)(inp)
    h = L.BatchNormalization(axis=1)(h)
    h = L.ReLU()(h)
    h = L.MaxPooling2D(2, data_format="channels_first")(h)
    h = L.GlobalAveragePooling2D(data_format="channels_first")(h)
    return _randomize_batch_norms(keras.Model(inp, L.Dense(3)(h), name="channels_first_bn"))


ZOO = {
    f.__name__: f
    for f in (
        mlp,
        cnn_max_avg,
        strided_gap,
        residual,
        concat_branches,
        conv1d_global_max,
        conv_bn_relu,
        nested_backbone,
        conv3d_reshape,
        padded_rescaled,
        channels_first_bn,
    )
}


def _channels_last_twin(model):
    """The same network in channels_last with the same weights: Keras runs channels_first
    convolutions on CPU only with oneDNN, so reference logits come from this twin."""
    inp = keras.Input(tuple(model.inputs[0].shape[2:]) + (model.inputs[0].shape[1],))
    h = inp
    for layer in model.layers[1:]:
        config = layer.get_config()
        if config.get("data_format") == "channels_first":
            config["data_format"] = "channels_last"
        if isinstance(layer, L.BatchNormalization):
            config["axis"] = -1
        twin = type(layer).from_config(config)
        h = twin(h)
        twin.set_weights(layer.get_weights())
    return keras.Model(inp, h)


def inputs_for(model, n=6, seed=0):
    """Inputs in [0, 1] for ``model`` (one sample per row)."""
    return (
        np.random.default_rng(seed).uniform(0, 1, (n,) + tuple(model.inputs[0].shape[1:])).astype("float32")
    )


def logits(model, x):
    """The model's outputs with a final softmax removed, computed by Keras on a copy."""
    if any(getattr(layer, "data_format", None) == "channels_first" for layer in model.layers):
        return logits(_channels_last_twin(model), np.moveaxis(x, 1, -1))
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    last = clone.layers[-1]
    if getattr(last, "activation", None) is keras.activations.softmax:
        last.activation = keras.activations.linear
    return np.asarray(clone.predict_on_batch(x))
