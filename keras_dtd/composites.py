"""``keras_dtd.composites`` is :mod:`keras_dtd.analyzers.composites` (its public import path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("keras_dtd.analyzers.composites")
