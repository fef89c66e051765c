"""Every keras.applications family (weights=None, smallest input, 2 samples): DTD maps sum to
max(f, 0) and are positive; LRP-ε runs. On two piecewise-linear families (VGG16: max pooling;
ResNet50: BatchNormalization, Add) LRP-0 with the bias in the denominator equals x ⊙ ∇f from
Keras' own gradient, and VGG16's LRP-ε loses exactly ε's share at its top layer. Pixel bounds
match each family's preprocessing."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
import zoo

import keras_dtd

A = keras.applications
FAMILIES = {  # constructor, module with preprocess_input (None: preprocessing inside the model), size
    "VGG16": (A.VGG16, A.vgg16, 32),
    "ResNet50": (A.ResNet50, A.resnet50, 32),
    "ResNet50V2": (A.ResNet50V2, A.resnet_v2, 32),
    "DenseNet121": (A.DenseNet121, A.densenet, 32),
    "InceptionV3": (A.InceptionV3, A.inception_v3, 75),
    "Xception": (A.Xception, A.xception, 71),
    "NASNetMobile": (A.NASNetMobile, A.nasnet, 32),
    "MobileNet": (A.MobileNet, A.mobilenet, 32),
    "MobileNetV2": (A.MobileNetV2, A.mobilenet_v2, 32),
    "MobileNetV3Small": (A.MobileNetV3Small, None, 32),
    "EfficientNetB0": (A.EfficientNetB0, None, 32),
    "EfficientNetV2B0": (A.EfficientNetV2B0, None, 32),
    "ConvNeXtTiny": (A.ConvNeXtTiny, None, 32),
    "InceptionResNetV2": (A.InceptionResNetV2, A.inception_resnet_v2, 75),
}


def family_case(name):
    """(model with logits output, preprocessed pixels (2 samples), (low, high) bounds)."""
    make, module, size = FAMILIES[name]
    keras.utils.set_random_seed(0)
    model = make(weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None)
    raw = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    black, white = np.zeros((size, size, 3), "float32"), np.full((size, size, 3), 255.0, "float32")
    if module is None:
        return model, raw, (black, white)
    low, high = module.preprocess_input(black), module.preprocess_input(white)
    return model, module.preprocess_input(raw.copy()), (np.minimum(low, high), np.maximum(low, high))


def _input_times_gradient(model, x):
    """x ⊙ ∂f_top/∂x in float64, with Keras' forward pass and TensorFlow's gradient."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        f = model(xt, training=False)
        top = tf.reduce_max(f, axis=1)
    return x.astype(np.float64) * tape.gradient(top, xt).numpy().astype(np.float64)


def _randomize_biases_and_batch_norms(model):
    zoo._randomize_batch_norms(model)
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:  # kernel layers (a BatchNorm's shift is its beta)
            layer.bias.assign(rng.uniform(-0.1, 0.1, layer.bias.shape))


PIECEWISE_LINEAR = ("VGG16", "ResNet50")  # ReLU, max/avg pooling, BN, Add only: LRP-0 = x ⊙ ∇f


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family(name):
    model, x, (low, high) = family_case(name)
    f = model.predict_on_batch(x)  # Keras' own forward pass, independent of keras_dtd's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.NonReLUWarning)
        relevance = keras_dtd.DTD(model, input_range=(low, high)).analyze(x)
        lrp_epsilon = keras_dtd.LRP(model, keras_dtd.rules.Epsilon(0.01))
        epsilon = lrp_epsilon.analyze(x)
    target = np.maximum(f.max(axis=1), 0)
    assert np.all(target > 0)
    np.testing.assert_allclose(relevance.reshape(2, -1).sum(axis=1), target, rtol=1e-4)
    assert relevance.min() >= 0
    # untrained logits can be ~1e-21 (MobileNet), which ε absorbs entirely: check it runs cleanly
    assert epsilon.shape == x.shape and np.all(np.isfinite(epsilon))
    if name not in PIECEWISE_LINEAR:
        return
    _randomize_biases_and_batch_norms(model)  # untrained ones are 0 and 1, which hides the bias terms
    f = model.predict_on_batch(x)
    lrp0 = keras_dtd.LRP(model, keras_dtd.rules.Z(bias="include")).analyze(x)
    expected = _input_times_gradient(model, x)
    # float32 through up to 50 layers: measured max deviation 2.3e-6 of max |R| (8e-7 without oneDNN)
    np.testing.assert_allclose(lrp0, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    if name != "VGG16":
        return
    # LRP-ε at the top Dense: R_i = a_i w_ij* f / (f + ε), a = fc2's output, f = a·w_j* + b_j*
    report = keras_dtd.check(lrp_epsilon, x)
    _, layers = lrp_epsilon.analyze(x, return_layers=True)
    a = keras.Model(model.inputs, model.get_layer("fc2").output).predict_on_batch(x).astype(np.float64)
    kernel, bias = (v.astype(np.float64) for v in model.get_layer("predictions").get_weights())
    top = f.argmax(axis=1)
    z = a @ kernel + bias
    f_top = z[np.arange(2), top]
    np.testing.assert_allclose(f_top, f.max(axis=1), rtol=1e-5)
    share = f_top / (f_top + 0.01 * np.where(f_top >= 0, 1, -1))
    expected_top = a * kernel[:, top].T * share[:, None]
    # float32 sums of 4096 products: rtol 1e-5 with an absolute floor of 1e-6 of the largest entry
    np.testing.assert_allclose(layers["fc2"], expected_top, rtol=1e-5, atol=1e-6 * np.abs(expected_top).max())
    lost = f_top - (f_top - bias[top]) * share  # relevance in minus relevance passed on
    assert [loss[0] for loss in report.first_loss] == ["predictions", "predictions"]
    assert {loss[2] for loss in report.first_loss} == {"ε absorbs relevance, bias in the denominator"}
    # lost ≈ 0.01·f / (f + 0.01): a float32 difference of f-sized values, so atol 1e-6·max f
    np.testing.assert_allclose(
        [loss[1] for loss in report.first_loss], lost, rtol=1e-5, atol=1e-6 * np.abs(f_top).max()
    )
