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
from keras_dtd.analyzers.analyzer import (  # noqa: E402
    DTD,
    LRP,
    Analyzer,
    Explanation,
    RelevancePass,
    ZeroRelevanceWarning,
)
from keras_dtd.analyzers.assignment import (  # noqa: E402
    NonReLUWarning,
    UnsupportedLayerError,
    register_rule,
    unregister_rule,
)
from keras_dtd.analyzers.baselines import Gradient, InputTimesGradient, IntegratedGradients, SmoothGrad  # noqa: E402
from keras_dtd.analyzers.innvestigate import create_analyzer  # noqa: E402
from keras_dtd.analyzers.taylor import RootNotFoundWarning, Taylor, TaylorExplanation  # noqa: E402
from keras_dtd.core.kinds import Kind  # noqa: E402
from keras_dtd.core.registry import register_layer, unregister_layer  # noqa: E402
from keras_dtd.core.tracing import ModelNotTraceableError  # noqa: E402
from keras_dtd.evaluation.conservation import ConservationReport, check  # noqa: E402
from keras_dtd.integrations.constraints import NonPositive  # noqa: E402
from keras_dtd.integrations.export import export  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DTD",
    "LRP",
    "Analyzer",
    "Explanation",
    "RelevancePass",
    "Gradient",
    "InputTimesGradient",
    "Kind",
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
    "register_layer",
    "register_rule",
    "relevance_models",
    "RootNotFoundWarning",
    "Taylor",
    "TaylorExplanation",
    "rules",
    "unregister_layer",
    "unregister_rule",
]
