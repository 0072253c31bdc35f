"""Moved to `ferlab.experiments.search_space` (experiments sit above training); this alias goes in the next release."""

import importlib
import sys
import warnings

warnings.warn("ferlab.training.search_space moved to ferlab.experiments.search_space", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("ferlab.experiments.search_space")
