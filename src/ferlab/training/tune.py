"""Moved to `ferlab.experiments.tune` (experiments sit above training); this alias goes in the next release."""

import importlib
import sys
import warnings

warnings.warn("ferlab.training.tune moved to ferlab.experiments.tune", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("ferlab.experiments.tune")
