"""keras_dtd: Deep Taylor Decomposition and Layer-wise Relevance Propagation for Keras 3.

from keras_dtd import DTD
R = DTD(model, input_range=(0.0, 1.0)).analyze(x)
"""

try:
    import tensorflow as _tf  # noqa: F401
except ImportError as _error:  # pragma: no cover - depends on the environment
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

from keras_dtd import composites, metrics, relevance_models, rules  # noqa: E402
from keras_dtd.analyzer import DTD, LRP, Analyzer, Explanation, RelevancePass, ZeroRelevanceWarning  # noqa: E402
from keras_dtd.baselines import Gradient, InputTimesGradient, IntegratedGradients, SmoothGrad  # noqa: E402
from keras_dtd.compat import create_analyzer  # noqa: E402
from keras_dtd.conservation import ConservationReport, check  # noqa: E402
from keras_dtd.constraints import NonPositive  # noqa: E402
from keras_dtd.export import export  # noqa: E402
from keras_dtd.graph import ModelNotTraceableError  # noqa: E402
from keras_dtd.presets import NonReLUWarning, UnsupportedLayerError, register_rule, unregister_rule  # noqa: E402
from keras_dtd.taylor import RootNotFoundWarning, Taylor, TaylorExplanation  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DTD",
    "LRP",
    "Analyzer",
    "Explanation",
    "RelevancePass",
    "Gradient",
    "InputTimesGradient",
    "IntegratedGradients",
    "SmoothGrad",
    "check",
    "composites",
    "ConservationReport",
    "create_analyzer",
    "export",
    "ModelNotTraceableError",
    "NonPositive",
    "NonReLUWarning",
    "UnsupportedLayerError",
    "ZeroRelevanceWarning",
    "metrics",
    "register_rule",
    "relevance_models",
    "RootNotFoundWarning",
    "Taylor",
    "TaylorExplanation",
    "rules",
    "unregister_rule",
]
