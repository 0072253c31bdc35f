"""Temperature scaling (Guo et al. 2017): one number that makes a classifier's confidence match its accuracy.

Networks trained with cross-entropy tend to be over-confident. Dividing their
logits by a temperature T > 1, fitted on held-out images, softens the
probabilities without changing any prediction (the argmax stays put).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

from ferlab.errors import FerlabError

__all__ = ["TEMPERATURE_RANGE", "Calibration", "expected_calibration_error", "fit_calibration", "fit_temperature"]

log = logging.getLogger(__name__)

# Beyond these a fit is degenerate (separable or pure-noise validation data), not a calibration.
TEMPERATURE_RANGE = (0.05, 20.0)
_LOG_RANGE = tuple(math.log(t) for t in TEMPERATURE_RANGE)


def _check(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.ndim != 2 or targets.shape != (len(logits),):
        raise FerlabError(f"calibration needs logits (N, classes) and targets (N,), got {tuple(logits.shape)} and "
                          f"{tuple(targets.shape)}")
    if not len(targets):
        raise FerlabError("calibration needs at least one image")
    if not torch.isfinite(logits).all():
        raise FerlabError("calibration needs finite logits")


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The temperature T minimising the NLL of ``softmax(logits / T)``, within `TEMPERATURE_RANGE`.

    LBFGS on log T (so T stays positive) in float64, from T = 1: deterministic.

    Args:
        logits: (N, classes) raw model outputs.
        targets: (N,) true class indices.

    Raises:
        FerlabError: mismatched shapes, no images, or non-finite logits.
    """
    _check(logits, targets)
    if bool((logits.argmax(dim=1) == targets).all()):
        # Then the NLL keeps falling as T -> 0: the data say nothing about calibration.
        log.warning("all %d calibration images are classified correctly, so no temperature can be fitted; keeping 1.0",
                    len(targets))
        return 1.0
    with torch.inference_mode(False), torch.enable_grad():  # callers may be under inference_mode or no_grad
        # Copies made here are ordinary tensors, which autograd may save (inference tensors may not).
        logits, targets = logits.detach().to(torch.float64, copy=True), targets.to(torch.long, copy=True)
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        lbfgs = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            lbfgs.zero_grad()
            loss = F.cross_entropy(logits / log_t.clamp(*_LOG_RANGE).exp(), targets)
            loss.backward()
            return loss

        lbfgs.step(closure)
    value = log_t.item()
    temperature = min(max(math.exp(value), TEMPERATURE_RANGE[0]), TEMPERATURE_RANGE[1])
    if not _LOG_RANGE[0] < value < _LOG_RANGE[1]:
        log.warning("the temperature fit stopped at its bound %.3g: the %d images are too few, or all classified "
                    "right (or all wrong); the calibration is unreliable", temperature, len(targets))
    return temperature


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, bins: int = 15) -> float:
    """Top-label ECE (l1, equal-width bins) of probabilities (N, classes) against targets (N,)."""
    return float(multiclass_calibration_error(probs, targets.long(), num_classes=probs.shape[1], n_bins=bins,
                                              norm="l1"))


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature, what it did on the images it was fitted on, and the temperature to use.

    ``nll_after`` and ``ece_after`` are at `temperature_fitted`. `temperature` is the fitted one
    when it lowered the NLL (`fitted_kept`), else `temperature_before`: a refit on other images must
    not make a calibrated model worse.
    """

    temperature_before: float
    temperature_fitted: float
    samples: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float

    @property
    def fitted_kept(self) -> bool:
        return self.nll_after < self.nll_before

    @property
    def temperature(self) -> float:
        return self.temperature_fitted if self.fitted_kept else self.temperature_before

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "temperature_before": self.temperature_before,
            "temperature_fitted": self.temperature_fitted,
            "fitted_kept": self.fitted_kept,
            "samples": self.samples,
            "nll": {"before": self.nll_before, "after": self.nll_after},
            "ece": {"before": self.ece_before, "after": self.ece_after},
        }


def fit_calibration(logits: torch.Tensor, targets: torch.Tensor, before: float = 1.0) -> Calibration:
    """Fit the temperature on `logits`, measure NLL and ECE at `before` (the model's current T) and at the fit.

    Raises:
        FerlabError: as `fit_temperature`.
    """
    fitted = fit_temperature(logits, targets)
    logits, targets = logits.detach().double(), targets.long()

    def scores(t: float) -> tuple[float, float]:
        scaled = logits / t
        return float(F.cross_entropy(scaled, targets)), expected_calibration_error(torch.softmax(scaled, 1), targets)

    (nll_before, ece_before), (nll_after, ece_after) = scores(before), scores(fitted)
    return Calibration(before, fitted, len(targets), nll_before, nll_after, ece_before, ece_after)
