"""``keras_dtd.demo`` is :mod:`keras_dtd.integrations.demo` (its public import path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("keras_dtd.integrations.demo")
