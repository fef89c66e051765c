"""``keras_dtd.metrics`` is :mod:`keras_dtd.evaluation.metrics` (its public import path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("keras_dtd.evaluation.metrics")
