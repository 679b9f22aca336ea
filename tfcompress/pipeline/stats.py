"""Paired comparisons of two models on the same images: the difference and its uncertainty.

On a few hundred test images one image is a fraction of a point, so an accuracy difference is
reported with its 95% interval (scipy's paired bootstrap) and the exact McNemar test on the
images where the two models disagree; a difference whose interval holds 0 is no difference.
"""

import numpy as np

from tfcompress import errors


def paired_difference(correct_a, correct_b, *, confidence: float = 0.95,
                      resamples: int = 2000, seed: int = 0) -> dict:
    """Accuracy of b minus accuracy of a, in points, on the same images.

    Args:
        correct_a, correct_b: per-image booleans (a: the reference, e.g. the float32 baseline).
        confidence: the interval's level.
        resamples: bootstrap resamples.
        seed: the bootstrap's random seed (figures are reproducible).

    Returns:
        {"difference_points", "low_points", "high_points", "confidence", "n", "only_a",
        "only_b", "mcnemar_p", "significant"}: ``only_a`` images only a gets right, ``only_b``
        only b; ``significant`` when the interval excludes 0.

    Raises:
        DataError: arrays of different lengths or empty.
    """
    a = np.asarray(correct_a, bool).reshape(-1)
    b = np.asarray(correct_b, bool).reshape(-1)
    if len(a) != len(b) or not len(a):
        raise errors.DataError(
            f"paired comparison needs two equal, non-empty per-image arrays; got {len(a)} and "
            f"{len(b)} images")
    from scipy import stats as scipy_stats  # loaded when a statistic runs, not on import

    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    diff = float(b.mean() - a.mean()) * 100.0
    if only_a + only_b == 0:  # identical on every image: no spread to resample
        low = high = 0.0
        p = 1.0
    else:
        res = scipy_stats.bootstrap(
            (a.astype(float), b.astype(float)), lambda x, y, axis=-1: (y - x).mean(axis=axis),
            paired=True, vectorized=True, confidence_level=confidence, n_resamples=resamples,
            method="percentile", random_state=np.random.default_rng(seed))
        low, high = (float(v) * 100.0 for v in (res.confidence_interval.low,
                                                 res.confidence_interval.high))
        p = float(scipy_stats.binomtest(only_b, only_a + only_b, 0.5).pvalue)
    return {"difference_points": diff, "low_points": low, "high_points": high,
            "confidence": confidence, "n": int(len(a)), "only_a": only_a, "only_b": only_b,
            "mcnemar_p": p, "significant": bool(low > 0 or high < 0)}


def drop_upper_bound(difference: dict, confidence: float) -> float:
    """A one-sided upper confidence bound, in points, of the accuracy LOST in a paired
    difference (``paired_difference``'s result), by the normal approximation of McNemar's
    statistic: the observed drop plus z(confidence) standard errors. ``confidence`` 0.5 gives
    the observed drop; a candidate chosen among many on the same images needs more: its
    discordant images say how far luck alone may have carried it.

    Raises:
        ConfigError: a confidence outside [0.5, 1).
    """
    if not 0.5 <= float(confidence) < 1.0:
        raise errors.ConfigError(f"confidence={confidence!r}; accepted: a number in [0.5, 1)")
    from scipy import stats as scipy_stats  # loaded when a statistic runs, not on import

    n, a, b = difference["n"], difference["only_a"], difference["only_b"]
    variance = max(a + b - (b - a) ** 2 / n, 0.0)
    z = float(scipy_stats.norm.ppf(confidence))
    return -difference["difference_points"] + z * np.sqrt(variance) / n * 100.0
