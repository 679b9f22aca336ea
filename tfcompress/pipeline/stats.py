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


def paired_regression_difference(outputs_a, outputs_b, targets, *, confidence: float = 0.95,
                                 resamples: int = 2000, seed: int = 0) -> dict:
    """R^2 of b minus R^2 of a, in points (100 x R^2), on the same samples, with its interval.

    R^2 is linear in the per-sample squared errors (1 - MSE / variance of the targets), so the
    difference is the mean of ``(se_a - se_b) / variance`` over samples, and its 95% interval
    is scipy's bootstrap of that mean (paired: the same samples for both).

    Args:
        outputs_a, outputs_b: the two models' outputs (a: the reference), (N,) or (N, K).
        targets: the float targets of the same samples.
        confidence, resamples, seed: as for ``paired_difference``.

    Returns:
        {"metric": "r2", "difference_points", "low_points", "high_points", "confidence", "n",
        "std_points" (of the per-sample differences), "mse_difference" (b's MSE minus a's),
        "mse_low", "mse_high", "significant"}.

    Raises:
        DataError: arrays of different lengths, empty, or targets without variance.
    """
    t = np.asarray(targets, np.float64)
    n = len(t)
    a = np.asarray(outputs_a, np.float64).reshape(len(outputs_a), -1)
    b = np.asarray(outputs_b, np.float64).reshape(len(outputs_b), -1)
    if not n or len(a) != n or len(b) != n:
        raise errors.DataError(
            f"paired comparison needs equal, non-empty per-sample arrays; got {len(a)}, "
            f"{len(b)} outputs and {n} targets")
    t = t.reshape(n, -1)
    variance = float(np.mean(np.square(t - t.mean(0))))
    if variance <= 0:
        raise errors.DataError("the targets have no variance; accepted: targets that vary "
                               "(R^2 is undefined otherwise)")
    se_a, se_b = np.square(a - t).mean(1), np.square(b - t).mean(1)
    d = (se_a - se_b) / variance * 100.0
    diff = float(d.mean())
    if np.allclose(d, d[0]):  # no spread to resample
        low = high = diff
    else:
        from scipy import stats as scipy_stats  # loaded when a statistic runs, not on import

        res = scipy_stats.bootstrap(
            (d,), lambda x, axis=-1: x.mean(axis=axis), vectorized=True,
            confidence_level=confidence, n_resamples=resamples, method="percentile",
            random_state=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"metric": "r2", "difference_points": diff, "low_points": low, "high_points": high,
            "confidence": confidence, "n": int(n),
            "std_points": float(d.std(ddof=1)) if n > 1 else 0.0,
            "mse_difference": float(np.mean(se_b - se_a)),
            "mse_low": -high * variance / 100.0, "mse_high": -low * variance / 100.0,
            "significant": bool(low > 0 or high < 0)}


def drop_upper_bound(difference: dict, confidence: float) -> float:
    """A one-sided upper confidence bound, in points, of the accuracy (or R^2) LOST in a paired
    difference (``paired_difference``'s result: the normal approximation of McNemar's
    statistic; ``paired_regression_difference``'s: of the mean per-sample difference): the observed drop plus z(confidence) standard errors. ``confidence`` 0.5 gives
    the observed drop; a candidate chosen among many on the same images needs more: its
    discordant images say how far luck alone may have carried it.

    Raises:
        ConfigError: a confidence outside [0.5, 1).
    """
    if not 0.5 <= float(confidence) < 1.0:
        raise errors.ConfigError(f"confidence={confidence!r}; accepted: a number in [0.5, 1)")
    from scipy import stats as scipy_stats  # loaded when a statistic runs, not on import

    z = float(scipy_stats.norm.ppf(confidence))
    if "std_points" in difference:  # a mean of per-sample differences (regression: R^2)
        return (-difference["difference_points"]
                + z * difference["std_points"] / np.sqrt(difference["n"]))
    n, a, b = difference["n"], difference["only_a"], difference["only_b"]
    variance = max(a + b - (b - a) ** 2 / n, 0.0)
    return -difference["difference_points"] + z * np.sqrt(variance) / n * 100.0
