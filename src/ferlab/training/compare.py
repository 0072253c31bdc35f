"""Moved to `ferlab.experiments.compare` (experiments sit above training); this alias goes in the next release."""

import importlib
import sys
import warnings

warnings.warn("ferlab.training.compare moved to ferlab.experiments.compare", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("ferlab.experiments.compare")
