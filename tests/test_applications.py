"""Every keras.applications family (weights=None, smallest input, 2 samples): DTD maps sum to
max(f, 0) and are positive; LRP-ε runs. Pixel bounds match each family's preprocessing."""

import warnings

import keras
import numpy as np
import pytest

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


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family(name):
    model, x, (low, high) = family_case(name)
    f = model.predict_on_batch(x)  # Keras' own forward pass, independent of keras_dtd's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_dtd.NonReLUWarning)
        relevance = keras_dtd.DTD(model, input_range=(low, high)).analyze(x)
        epsilon = keras_dtd.LRP(model, keras_dtd.rules.Epsilon(0.01)).analyze(x)
    target = np.maximum(f.max(axis=1), 0)
    assert np.all(target > 0)
    np.testing.assert_allclose(relevance.reshape(2, -1).sum(axis=1), target, rtol=1e-4)
    assert relevance.min() >= 0
    # untrained logits can be ~1e-21 (MobileNet), which ε absorbs entirely: check it runs cleanly
    assert epsilon.shape == x.shape and np.all(np.isfinite(epsilon))
