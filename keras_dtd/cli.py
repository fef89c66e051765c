"""``keras_dtd.cli`` is :mod:`keras_dtd.integrations.cli` (its public import path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("keras_dtd.integrations.cli")
