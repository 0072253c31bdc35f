import math

import numpy as np
import pytest

from ferlab.evaluation import mcnemar


def _pairs(only_a: int, only_b: int, both: int = 50, neither: int = 5) -> tuple[np.ndarray, np.ndarray]:
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    return np.array(a), np.array(b)


def test_few_discordant_pairs_use_the_exact_binomial_test():
    result = mcnemar(*_pairs(10, 2))
    # two-sided: 2 * P(X <= 2) for X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 2**12
    assert result.p_value == pytest.approx(2 * 79 / 4096)
    assert (result.only_a, result.only_b, result.method) == (10, 2, "exact binomial")


def test_many_discordant_pairs_use_corrected_chi_squared():
    result = mcnemar(*_pairs(30, 10))
    statistic = (abs(30 - 10) - 1) ** 2 / 40
    assert result.statistic == pytest.approx(statistic)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(statistic / 2)))  # chi2 with 1 dof


def test_identical_models_do_not_differ():
    a, _ = _pairs(0, 0)
    result = mcnemar(a, a)
    assert result.p_value == 1.0 and result.only_a == result.only_b == 0


def test_unpaired_arrays_are_refused():
    with pytest.raises(ValueError, match="paired"):
        mcnemar(np.ones(3, bool), np.ones(4, bool))
