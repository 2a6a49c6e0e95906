"""Two-level bootstrap confidence intervals, over seeds and images, for single arms and paired differences.

A number in the report varies for two reasons: which images the test set happened to sample, and
which seed the training run happened to get. An interval over images alone can call an arm best
while its own seeds disagree by more than the gap, so every resample here draws both: the seeds
of each arm with replacement (independently per arm) and the images with replacement (one draw
shared by all arms and seeds, so paired differences stay paired). The statistic is the mean over
the drawn seeds of each seed's value on the drawn images, so the point estimate (nothing
resampled) equals the mean of the per-run numbers. Per-image values come as [seeds, images], and
both draws are matrices of counts (resample x image, resample x seed): any statistic that is a
ratio of per-image sums — a NaN-aware mean, a pooled Dice from tp/fp/fn — costs one matrix
product and a weighted sum instead of a Python loop. The generator is seeded, so a report is
reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval (NaN bounds when it cannot be estimated)."""

    estimate: float
    low: float
    high: float

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def overlaps(self, other: "Interval") -> bool:
        """True when the two intervals share any value (or either is undefined: nothing can be claimed)."""
        if not (self.defined and other.defined):
            return True
        return self.low <= other.high and other.low <= self.high

    def excludes(self, value: float) -> bool:
        return self.defined and (value < self.low or value > self.high)


NAN_INTERVAL = Interval(math.nan, math.nan, math.nan)


def resample_counts(n: int, rng: np.random.Generator, n_resamples: int = N_RESAMPLES) -> np.ndarray:
    """How often each of `n` items is drawn in each bootstrap resample: float array [R, n], rows sum to n."""
    if n == 0:
        return np.zeros((n_resamples, 0))
    draws = rng.integers(0, n, size=(n_resamples, n))
    offsets = (np.arange(n_resamples) * n)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_resamples * n)
    return counts.reshape(n_resamples, n).astype(np.float64)


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _seed_mean(per_seed: np.ndarray, seed_counts: np.ndarray) -> np.ndarray:
    """[R, S] statistic per resample and seed -> [R], the mean over the drawn seeds (each counted as
    often as drawn) where it is defined."""
    valid = np.isfinite(per_seed)
    return _ratio((seed_counts * np.where(valid, per_seed, 0.0)).sum(axis=1), (seed_counts * valid).sum(axis=1))


def _as_seeds(values: np.ndarray) -> np.ndarray:
    """Per-image values as [seeds, images]: a 1-D array is one seed."""
    values = np.asarray(values, dtype=np.float64)
    return values[None, :] if values.ndim == 1 else values


def nanmean_stat(values: np.ndarray, counts: np.ndarray, seed_counts: np.ndarray) -> np.ndarray:
    """Mean over seeds (weighted by `seed_counts` [R, S]) of each seed's NaN-ignoring image mean
    (images weighted by `counts` [R, n]).

    Per-image Dice is NaN where truth and prediction are both empty; each seed keeps its own NaNs,
    so the result is exactly the mean over seeds of the per-run numbers when all weights are one.
    """
    values = _as_seeds(values)
    valid = np.isfinite(values)
    per_seed = _ratio(counts @ np.where(valid, values, 0.0).T, counts @ valid.T.astype(np.float64))
    return _seed_mean(per_seed, seed_counts)


def pooled_overlap(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, metric: str) -> np.ndarray:
    """Pooled Dice or IoU from (possibly resampled) confusion sums: one confusion matrix over all images."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    if metric == "dice":
        return _ratio(2.0 * tp, 2.0 * tp + fp + fn)
    if metric == "iou":
        return _ratio(tp, tp + fp + fn)
    raise ValueError(f"unknown pooled metric {metric!r} (dice or iou)")


def pooled_stat(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, metric: str, counts: np.ndarray, seed_counts: np.ndarray,
) -> np.ndarray:
    """Mean over seeds (weighted by `seed_counts`) of each seed's pooled Dice/IoU over the images
    weighted by `counts`."""
    sums = [counts @ np.nan_to_num(_as_seeds(x)).T for x in (tp, fp, fn)]
    return _seed_mean(pooled_overlap(*sums, metric), seed_counts)


def bootstrap(
    statistic: Callable[[np.ndarray, list[np.ndarray]], np.ndarray], n: int, n_seeds: Sequence[int], *,
    confidence: float = CONFIDENCE, seed: int = 0, resample: bool = True,
) -> Interval:
    """Point estimate (all weights 1) and percentile interval of `statistic` over seed-and-image resamples.

    `statistic` maps image weights [R, n] and, for each arm, seed weights [R, n_seeds[arm]] to one
    value per row. An arm with one seed always draws that seed: its interval is over images only.
    Without `resample`, only the point estimate is computed (NaN bounds).
    """
    if n == 0:
        return NAN_INTERVAL
    estimate = float(statistic(np.ones((1, n)), [np.ones((1, s)) for s in n_seeds])[0])
    if not resample:
        return Interval(estimate, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    images = resample_counts(n, rng)
    seeds = [resample_counts(s, rng) for s in n_seeds]
    return Interval(estimate, *_percentiles(statistic(images, seeds), confidence))


def nanmean_ci(values: np.ndarray, *, confidence: float = CONFIDENCE, seed: int = 0, resample: bool = True) -> Interval:
    """Mean ignoring NaN (over images, then over seeds for [seeds, images] input), with its CI over
    seeds and images."""
    values = _as_seeds(values)
    if not np.isfinite(values).any():
        return NAN_INTERVAL
    return bootstrap(lambda w, v: nanmean_stat(values, w, v[0]), values.shape[1], [values.shape[0]],
                     confidence=confidence, seed=seed, resample=resample)


def pooled_ci(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, metric: str, *, confidence: float = CONFIDENCE, seed: int = 0,
    resample: bool = True,
) -> Interval:
    """Pooled Dice/IoU with a CI from resampling seeds and images, i.e. their per-image tp/fp/fn."""
    tp, fp, fn = (_as_seeds(x) for x in (tp, fp, fn))
    return bootstrap(lambda w, v: pooled_stat(tp, fp, fn, metric, w, v[0]), tp.shape[1], [tp.shape[0]],
                     confidence=confidence, seed=seed, resample=resample)


def paired_nanmean_diff_ci(a: np.ndarray, b: np.ndarray, *, confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """Difference of NaN-ignoring means, arm a - arm b, on the same images (columns aligned), each
    resample drawing the same images for both arms and each arm's seeds on its own."""
    a, b = _as_seeds(a), _as_seeds(b)
    return bootstrap(lambda w, v: nanmean_stat(a, w, v[0]) - nanmean_stat(b, w, v[1]), a.shape[1],
                     [a.shape[0], b.shape[0]], confidence=confidence, seed=seed)


def paired_pooled_diff_ci(
    a: tuple[np.ndarray, np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray, np.ndarray],
    metric: str,
    *,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Difference of pooled Dice/IoU, both arms resampled with the same images in each resample and
    each arm's seeds on its own."""
    a = tuple(_as_seeds(x) for x in a)
    b = tuple(_as_seeds(x) for x in b)
    return bootstrap(lambda w, v: pooled_stat(*a, metric, w, v[0]) - pooled_stat(*b, metric, w, v[1]),
                     a[0].shape[1], [a[0].shape[0], b[0].shape[0]], confidence=confidence, seed=seed)


def seed_interval(values: np.ndarray, *, confidence: float = CONFIDENCE) -> Interval:
    """Student-t interval of the mean over seeds: for run-level numbers that have no per-image data.

    Undefined with fewer than two seeds — a single run says nothing about the spread.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return NAN_INTERVAL
    mean = float(values.mean())
    if values.size < 2:
        return Interval(mean, math.nan, math.nan)
    half = _t_quantile(confidence, values.size - 1) * float(values.std(ddof=1)) / math.sqrt(values.size)
    return Interval(mean, mean - half, mean + half)


def _t_quantile(confidence: float, dof: int) -> float:
    """Two-sided Student-t quantile by bisection on the regularised incomplete beta (no scipy needed)."""
    target = 1.0 - (1.0 - confidence) / 2.0
    low, high = 0.0, 1000.0
    for _ in range(100):
        mid = (low + high) / 2.0
        if _t_cdf(mid, dof) < target:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def _t_cdf(t: float, dof: int) -> float:
    x = dof / (dof + t * t)
    return 1.0 - 0.5 * _betainc(dof / 2.0, 0.5, x)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its continued fraction (Numerical Recipes' betacf)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < 1e-12:
            break
    return front * result / a
