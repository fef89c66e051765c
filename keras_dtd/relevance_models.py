"""``keras_dtd.relevance_models`` is :mod:`keras_dtd.analyzers.relevance_models` (its public import path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("keras_dtd.analyzers.relevance_models")
