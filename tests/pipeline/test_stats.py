"""Paired comparisons: the difference, its bootstrap interval, McNemar's exact test and the
one-sided bound of a drop, checked against figures computed here by hand."""

import math
import statistics

import numpy as np
import pytest

from tfcompress import errors
from tfcompress.pipeline import stats


def _pair(n: int, only_a: int, only_b: int, both: int):
    """Per-image booleans: ``both`` right for a and b, ``only_a``/``only_b`` right for one."""
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:both] = b[:both] = True
    a[both:both + only_a] = True
    b[both + only_a:both + only_a + only_b] = True
    perm = np.random.default_rng(1).permutation(n)
    return a[perm], b[perm]


def _mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact binomial p of the discordant images (p = 0.5), by hand."""
    m, k = only_a + only_b, min(only_a, only_b)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m
    return min(1.0, 2 * tail)


def test_difference_counts_and_mcnemar_match_a_hand_computation():
    a, b = _pair(200, only_a=4, only_b=16, both=150)
    d = stats.paired_difference(a, b)
    assert d["difference_points"] == pytest.approx((b.mean() - a.mean()) * 100)
    assert d["difference_points"] == pytest.approx(6.0)
    assert (d["n"], d["only_a"], d["only_b"]) == (200, 4, 16)
    assert d["mcnemar_p"] == pytest.approx(_mcnemar_exact(4, 16))
    assert d["low_points"] < d["difference_points"] < d["high_points"]
    assert d["low_points"] > 0 and d["significant"]  # 16 against 4: a real difference


def test_interval_holds_zero_when_the_models_split_evenly():
    a, b = _pair(300, only_a=6, only_b=6, both=250)
    d = stats.paired_difference(a, b)
    assert d["difference_points"] == 0.0
    assert d["low_points"] < 0 < d["high_points"] and not d["significant"]
    assert d["mcnemar_p"] == pytest.approx(1.0)


def test_bootstrap_interval_is_close_to_the_normal_one_and_reproducible():
    """With 40 discordant images of 400, the percentile bootstrap's 95% interval is within
    half a point of the normal approximation of the paired difference."""
    a, b = _pair(400, only_a=12, only_b=28, both=300)
    d = stats.paired_difference(a, b)
    diff = (b.astype(float) - a.astype(float))
    half = 1.959964 * diff.std() / math.sqrt(len(diff)) * 100
    assert d["low_points"] == pytest.approx(d["difference_points"] - half, abs=0.5)
    assert d["high_points"] == pytest.approx(d["difference_points"] + half, abs=0.5)
    assert stats.paired_difference(a, b) == d  # seeded
    other = stats.paired_difference(a, b, seed=7)
    assert other["difference_points"] == d["difference_points"]


def test_identical_models_have_no_spread():
    a = np.array([True, False, True, True])
    d = stats.paired_difference(a, a)
    assert (d["low_points"], d["high_points"], d["mcnemar_p"]) == (0.0, 0.0, 1.0)
    assert d["only_a"] == d["only_b"] == 0 and not d["significant"]


def test_drop_upper_bound_is_the_observed_drop_plus_z_standard_errors():
    a, b = _pair(300, only_a=15, only_b=6, both=250)  # b loses 3 points
    d = stats.paired_difference(a, b)
    assert stats.drop_upper_bound(d, 0.5) == pytest.approx(3.0)
    n, x, y = 300, 15, 6
    se = math.sqrt(x + y - (y - x) ** 2 / n) / n * 100
    z = statistics.NormalDist().inv_cdf(0.9)
    assert stats.drop_upper_bound(d, 0.9) == pytest.approx(3.0 + z * se)
    assert stats.drop_upper_bound(d, 0.95) > stats.drop_upper_bound(d, 0.9) > 3.0


@pytest.mark.parametrize("confidence", [0.4, 1.0, 1.5])
def test_drop_upper_bound_refuses_a_confidence_outside_its_range(confidence):
    d = stats.paired_difference([True, False], [True, True])
    with pytest.raises(errors.ConfigError, match=r"confidence=.*accepted: a number in \[0.5, 1\)"):
        stats.drop_upper_bound(d, confidence)


@pytest.mark.parametrize("a, b", [([True, False], [True]), ([], [])])
def test_paired_difference_refuses_unequal_or_empty_arrays(a, b):
    with pytest.raises(errors.DataError) as info:
        stats.paired_difference(a, b)
    message = str(info.value)
    assert "\n" not in message and f"got {len(a)} and {len(b)} images" in message
