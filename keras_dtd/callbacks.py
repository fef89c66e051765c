"""``keras_dtd.callbacks`` is :mod:`keras_dtd.integrations.callbacks` (its public import path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("keras_dtd.integrations.callbacks")
