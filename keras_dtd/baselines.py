"""``keras_dtd.baselines`` is :mod:`keras_dtd.analyzers.baselines` (its public import path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("keras_dtd.analyzers.baselines")
