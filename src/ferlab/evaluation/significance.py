"""McNemar's test: is one model's accuracy really different from another's on the same images?

Written on scipy rather than imported from statsmodels: the test is a binomial
tail over the discordant pairs, and statsmodels would be a large dependency for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest, chi2

__all__ = ["McNemarResult", "mcnemar"]

#: Below this many discordant pairs the chi-squared approximation is poor; the exact test is used.
EXACT_BELOW = 25


@dataclass(frozen=True)
class McNemarResult:
    """Counts of the images only one model got right, and the two-sided p-value."""

    only_a: int
    only_b: int
    statistic: float
    p_value: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemarResult:
    """Paired test of two models' correctness on the same images.

    Args:
        correct_a: (N,) bool, model A right on image i.
        correct_b: (N,) bool, model B right on the same image i.

    Returns:
        The exact binomial test when fewer than 25 images differ, else the
        chi-squared test with continuity correction (Edwards).
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"correctness arrays must be 1-D and paired, got {a.shape} and {b.shape}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = only_a + only_b
    if discordant == 0:
        return McNemarResult(only_a, only_b, 0.0, 1.0, "none differ")
    if discordant < EXACT_BELOW:
        p = binomtest(only_a, discordant, 0.5).pvalue
        return McNemarResult(only_a, only_b, float(min(only_a, only_b)), float(min(p, 1.0)), "exact binomial")
    statistic = (abs(only_a - only_b) - 1) ** 2 / discordant
    return McNemarResult(only_a, only_b, float(statistic), float(chi2.sf(statistic, df=1)), "chi-squared, corrected")
