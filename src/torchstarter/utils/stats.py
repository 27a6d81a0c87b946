"""How sure a test number is: bootstrap intervals over examples, and paired tests of two runs.

Every metric torchstarter reports is a function of sums over examples (accuracy: correct
and count; entity F1: true positives, false positives, false negatives per sentence), so
a metric is given here as per-example parts, an (n, k) array, and a statistic that maps
summed parts to the metric. A bootstrap resample is then a vector of counts (how often
each example was drawn) times the parts: no example is ever copied.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Statistic = Callable[[np.ndarray], np.ndarray]  # (..., k) summed parts -> (...) metric
RESAMPLES = 1000
LEVEL = 0.95
CELLS_PER_CHUNK = 4_000_000  # resample counts held at once (32 MB of float64)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    resamples: int
    level: float = LEVEL
    seed: int = 0

    def describe(self) -> dict[str, float | int]:
        return {"low": self.low, "high": self.high, "resamples": self.resamples,
                "level": self.level, "seed": self.seed}


def resampled(parts: np.ndarray, statistic: Statistic, resamples: int, seed: int
              ) -> np.ndarray:
    """The statistic on `resamples` bootstrap resamples of the rows of parts."""
    parts = np.asarray(parts, dtype=np.float64)
    n = len(parts)
    if n == 0:
        raise ValueError("no examples to resample")
    rng = np.random.default_rng(seed)
    chunk = max(1, CELLS_PER_CHUNK // n)
    values = []
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        drawn = rng.integers(0, n, size=(rows, n))
        offsets = (np.arange(rows) * n)[:, None]
        counts = np.bincount((drawn + offsets).ravel(), minlength=rows * n).reshape(rows, n)
        values.append(statistic(counts @ parts))
    return np.concatenate(values)


def percentile_interval(values: np.ndarray, resamples: int, level: float, seed: int
                        ) -> Interval:
    finite = values[np.isfinite(values)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail]) if len(finite) else (math.nan,) * 2
    return Interval(float(low), float(high), resamples, level, seed)


def bootstrap_interval(parts: np.ndarray, statistic: Statistic, resamples: int = RESAMPLES,
                       level: float = LEVEL, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of statistic(sum of parts) over examples."""
    return percentile_interval(resampled(parts, statistic, resamples, seed), resamples,
                               level, seed)


def paired_difference_interval(parts_a: np.ndarray, parts_b: np.ndarray,
                               statistic: Statistic, resamples: int = RESAMPLES,
                               level: float = LEVEL, seed: int = 0) -> Interval:
    """Interval of statistic(B) - statistic(A), resampling the same examples for both:
    the two runs' parts, side by side, are one row per example."""
    a, b = np.asarray(parts_a, np.float64), np.asarray(parts_b, np.float64)
    if len(a) != len(b):
        raise ValueError(f"paired parts need the same examples ({len(a)} and {len(b)} rows)")
    k = a.shape[1]

    def difference(sums: np.ndarray) -> np.ndarray:
        return statistic(sums[..., k:]) - statistic(sums[..., :k])

    return bootstrap_interval(np.hstack([a, b]), difference, resamples, level, seed)


@dataclass(frozen=True)
class McNemar:
    only_a: int  # examples A got right and B wrong
    only_b: int  # examples B got right and A wrong
    p_value: float
    method: str  # "exact binomial" or "chi-square with continuity correction"


EXACT_BELOW = 50  # discordant pairs under which the exact binomial test is used


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's test of two classifiers on the same examples (two-sided)."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired results need the same examples ({a.shape} and {b.shape})")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    if n == 0:
        return McNemar(0, 0, 1.0, "exact binomial")
    if n < EXACT_BELOW:
        tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
        return McNemar(only_a, only_b, min(1.0, 2 * tail), "exact binomial")
    chi2 = (abs(only_a - only_b) - 1) ** 2 / n
    return McNemar(only_a, only_b, math.erfc(math.sqrt(chi2 / 2)),
                   "chi-square with continuity correction")


def ratio(sums: np.ndarray) -> np.ndarray:
    """Parts (hits, count): accuracy and the like; 0 when nothing was counted, as the
    engine's metrics give (precision of a model that predicts no entity)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums[..., 1] > 0, sums[..., 0] / sums[..., 1], 0.0)


def f1(sums: np.ndarray) -> np.ndarray:
    """Parts (true positives, false positives, false negatives): F1 = 2tp / (2tp+fp+fn)."""
    tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
