"""The model-facing core: tracing a Keras model into nodes (the one place touching Keras
internals), the layer registry (what each layer class is to keras_dtd), the linear maps
rules evaluate, and canonizing (BatchNorm folding, separable convolutions split).

Importing it checks that TensorFlow is installed and that Keras runs on it: every part
of keras_dtd that computes goes through here."""

try:
    import tensorflow as _tf  # noqa: F401
except ImportError as _error:  # the message says which distribution to install
    raise ImportError(
        "keras_dtd needs TensorFlow (2.16 or newer, with Keras 3) and none is installed. "
        "Install one alongside keras_dtd: pip install 'keras_dtd[cpu]' (tensorflow-cpu) or "
        "pip install 'keras_dtd[gpu]' (tensorflow[and-cuda])."
    ) from _error

import keras as _keras

if _keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on the environment
    raise ImportError(
        f"keras_dtd runs on Keras' TensorFlow backend, but KERAS_BACKEND is "
        f"'{_keras.backend.backend()}'. Set KERAS_BACKEND=tensorflow before importing keras."
    )
