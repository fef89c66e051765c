"""``keras_dtd.plot`` is :mod:`keras_dtd.integrations.plot` (its public import path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("keras_dtd.integrations.plot")
