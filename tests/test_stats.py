import random

import pytest
from scipy.stats import binomtest

from sfteval import stats


def test_wilson_matches_textbook_value():
    low, high = stats.wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4)
    assert high == pytest.approx(0.5962, abs=1e-4)


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible():
    rng = random.Random(0)
    units = [[rng.random() < 0.6] for _ in range(400)]
    mean = sum(u[0] for u in units) / len(units)
    low, high = stats.bootstrap_interval(units)
    assert low < mean < high
    assert 0.05 < high - low < 0.14  # about +-4.8 points for n=400
    assert stats.bootstrap_interval(units) == (low, high)


@pytest.mark.parametrize("only_a,only_b,same", [(10, 3, 50), (0, 0, 20), (7, 7, 1), (1, 12, 0)])
def test_mcnemar_equals_scipy_binomial_test(only_a, only_b, same):
    a = [True] * only_a + [False] * only_b + [True] * same
    b = [False] * only_a + [True] * only_b + [True] * same
    result = stats.mcnemar_exact(a, b)
    assert (result["only_first"], result["only_second"]) == (only_a, only_b)
    expected = 1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert result["p_value"] == pytest.approx(expected, rel=1e-12)


def test_clustered_mcnemar_by_hand_and_as_plain_mcnemar_for_single_verdicts():
    # Three prompts: hits A - hits B = 2, -1, 0 -> X^2 = 1 / 5
    a = [[True, True, False], [False], [True, False]]
    b = [[False, False, False], [True], [True, False]]
    test = stats.clustered_mcnemar(a, b)
    assert test["statistic"] == pytest.approx(1 / 5) and test["clusters_with_changes"] == 2
    from scipy.stats import chi2

    assert test["p_value"] == pytest.approx(chi2.sf(1 / 5, 1))
    # One verdict per prompt: the asymptotic McNemar statistic (b - c)^2 / (b + c).
    flat_a = [[True]] * 7 + [[False]] * 2 + [[True]] * 5
    flat_b = [[False]] * 7 + [[True]] * 2 + [[True]] * 5
    assert stats.clustered_mcnemar(flat_a, flat_b)["statistic"] == pytest.approx((7 - 2) ** 2 / 9)
    assert stats.clustered_mcnemar([[True]], [[True]])["p_value"] == 1.0
