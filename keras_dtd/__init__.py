"""keras_dtd: Deep Taylor Decomposition and Layer-wise Relevance Propagation for Keras 3.

from keras_dtd import DTD
R = DTD(model, input_range=(0.0, 1.0)).analyze(x)

The names below are imported when first used, so ``import keras_dtd`` and the command
line's ``--help`` do not pay for TensorFlow; :mod:`keras_dtd.core` checks that TensorFlow
and Keras' TensorFlow backend are there.
"""

import importlib

__version__ = "0.2.0"

_PUBLIC = {
    "keras_dtd.analyzers.analyzer": (
        "DTD",
        "LRP",
        "Analyzer",
        "Explanation",
        "RelevancePass",
        "ZeroRelevanceWarning",
    ),
    "keras_dtd.analyzers.assignment": (
        "NonReLUWarning",
        "register_rule",
        "unregister_rule",
    ),
    "keras_dtd.analyzers.baselines": ("Gradient", "InputTimesGradient", "IntegratedGradients", "SmoothGrad"),
    "keras_dtd.analyzers.innvestigate": ("create_analyzer",),
    "keras_dtd.analyzers.taylor": ("RootNotFoundWarning", "Taylor", "TaylorExplanation"),
    "keras_dtd.core.kinds": ("Kind",),
    "keras_dtd.core.registry": ("register_layer", "unregister_layer"),
    "keras_dtd.core.tracing": ("ModelNotTraceableError", "UnsupportedLayerError"),
    "keras_dtd.evaluation.conservation": ("ConservationReport", "check"),
    "keras_dtd.integrations.constraints": ("NonPositive",),
    "keras_dtd.integrations.export": ("export",),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}
# public modules (keras_dtd/<name>.py are the modules of the layers, keras_dtd.rules a package)
_MODULES = (
    "baselines", "beam", "callbacks", "cli", "compat", "composites", "datasets", "demo", "metrics", "plot",
    "relevance_models", "rules", "taylor",
)  # fmt: skip

__all__ = sorted(_HOME) + ["composites", "metrics", "relevance_models", "rules"]


def __getattr__(name):
    if name in _HOME:
        importlib.import_module("keras_dtd.core")  # TensorFlow and the backend are checked there
        value = getattr(importlib.import_module(_HOME[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f"keras_dtd.{name}")
    else:
        raise AttributeError(f"module 'keras_dtd' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOME) | set(_MODULES))
