"""``keras_dtd.datasets`` is :mod:`keras_dtd.integrations.datasets` (its public import path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("keras_dtd.integrations.datasets")
