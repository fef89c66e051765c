"""``keras_dtd.beam`` is :mod:`keras_dtd.integrations.beam` (its public import path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("keras_dtd.integrations.beam")
