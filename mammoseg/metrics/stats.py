"""Confidence intervals for the comparison: over seeds for claims about designs, over images for one run.

A claim about a design ("arm A has fewer false positives than arm B") must hold for another seed,
so its unit of replication is the training run. Every run of an experiment is evaluated on the same
test images, so a run's number already contains those images' difficulty, shared by every run and
every arm; what varies from run to run is the seed (initialisation, batch order, augmentation) and
how that seed's network happens to treat each image. The intervals here therefore take one number
per run: a Student-t interval over an arm's runs (df = runs − 1), and a two-sample t interval for the
difference of two arms' means (`difference`), with its two-sided p-value for a multiple-comparison correction
(`holm`). With one run per arm the seed variation cannot be estimated, so nothing about designs can
be claimed; the image bootstrap (`nanmean_ci`, `pooled_ci`) then describes that single run's
precision over its test images, and is never the basis of a claim.

A metric declares the range it can take (`Bounds`). An arm's interval is computed on a scale on
which that range cannot be left — logit for a bounded metric, log for a positive one — and mapped
back; where a run sits exactly on a bound (a false-positive rate of 0) the transform is undefined
and the interval is computed on the metric's own scale and cut to its range. A difference is cut
to the range a difference can take. Cutting never removes the true value from an interval, so it
cannot lower coverage.

The image bootstrap draws images with replacement as a matrix of counts (resample x image): any
statistic that is a ratio of per-image sums — a NaN-aware mean, a pooled Dice from tp/fp/fn — costs
one matrix product. Its generator is seeded, so a report is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

N_RESAMPLES = 2000
CONFIDENCE = 0.95
Bounds = tuple[float, float]
UNBOUNDED: Bounds = (-math.inf, math.inf)
UNIT: Bounds = (0.0, 1.0)
POSITIVE: Bounds = (0.0, math.inf)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval (NaN bounds when it cannot be estimated) and, for a
    difference, the two-sided p-value of "no difference" (NaN otherwise)."""

    estimate: float
    low: float
    high: float
    p_value: float = math.nan

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


# ---------------------------------------------------------------- over seeds: the basis of claims


def _finite(values: np.ndarray | Sequence[float]) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


def _sample(values: np.ndarray | Sequence[float]) -> tuple[np.ndarray, float, Interval | None]:
    """The finite values and their mean, and the interval to return as it is when they are too few
    for a spread: none (all NaN) or one (its value, NaN bounds)."""
    values = _finite(values)
    if values.size == 0:
        return values, math.nan, NAN_INTERVAL
    mean = float(values.mean())
    return values, mean, Interval(mean, math.nan, math.nan) if values.size < 2 else None


def seed_interval(values: np.ndarray | Sequence[float], bounds: Bounds = UNBOUNDED, *,
                  confidence: float = CONFIDENCE) -> Interval:
    """Student-t interval of the mean of per-run values (df = runs − 1), cut to `bounds`.

    The true mean lies inside the bounds, so cutting the interval there never loses coverage, and
    the estimate (the plain mean of the runs) always lies inside it. (A t interval on a logit or log
    scale stays inside the bounds too, but it is centred on the mean of the transformed values: with
    runs spread across decades the plain mean can fall outside it.) Undefined with fewer than two
    runs — a single run says nothing about the spread.
    """
    values, mean, too_few = _sample(values)
    if too_few is not None:
        return too_few
    half = _t_quantile(confidence, values.size - 1) * float(values.std(ddof=1)) / math.sqrt(values.size)
    return Interval(mean, max(mean - half, bounds[0]), min(mean + half, bounds[1]))


def difference(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float], bounds: Bounds = UNBOUNDED,
               *, confidence: float = CONFIDENCE) -> Interval:
    """mean(a) − mean(b) of per-run values with its two-sample Student t interval and two-sided p-value.

    Needs two runs in each arm, not all identical (a gap between arms whose runs agree exactly cannot be
    judged); NaN bounds otherwise. The seed variance is pooled over both arms (df = the runs of both
    arms − 2): exact when the arms are the same design, which is the null a claim must
    survive; Welch's separate variances would leave 1-2 df with two seeds per arm and claim only
    about 1% of the time instead of 5%. With equal seed counts the standard error is Welch's, so
    arms whose seeds vary differently are still judged by both spreads. Arms evaluated on the same
    images share those images' difficulty in every run, so it cancels in the difference. The
    interval is cut to the range a difference of `bounds` can take.
    """
    a, b = _finite(a), _finite(b)
    if a.size == 0 or b.size == 0:
        return NAN_INTERVAL
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Interval(diff, math.nan, math.nan)
    dof = a.size + b.size - 2
    pooled = (float(a.var(ddof=1)) * (a.size - 1) + float(b.var(ddof=1)) * (b.size - 1)) / dof
    se = math.sqrt(pooled * (1.0 / a.size + 1.0 / b.size))
    span = bounds[1] - bounds[0]
    return _t_test(diff, se, dof, confidence, span)


def _t_test(estimate: float, se: float, dof: int, confidence: float, span: float = math.inf) -> Interval:
    """`estimate` ± the Student-t half-width, cut to ±`span`, with the two-sided p-value of zero. With no
    spread at all (se 0) there is nothing to judge a non-zero estimate by: no bounds and no p-value."""
    if se == 0.0:
        return Interval(estimate, estimate, estimate, 1.0) if estimate == 0.0 else Interval(estimate, math.nan, math.nan)
    half = _t_quantile(confidence, dof) * se
    p_value = min(1.0, 2.0 * (1.0 - _t_cdf(abs(estimate) / se, dof)))
    return Interval(estimate, float(max(estimate - half, -span)), float(min(estimate + half, span)), p_value)


def paired(differences: np.ndarray | Sequence[float], *, confidence: float = CONFIDENCE) -> Interval:
    """Mean of within-run differences (two measures of the same runs) with its one-sample Student t
    interval (df = runs − 1) and the two-sided p-value of a zero mean; NaN bounds under two runs."""
    values, mean, too_few = _sample(differences)
    if too_few is not None:
        return too_few
    return _t_test(mean, float(values.std(ddof=1)) / math.sqrt(values.size), values.size - 1, confidence)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: rejecting where adjusted p < alpha keeps the chance of any
    false claim in the family at most alpha. NaN p-values (not estimable) stay NaN and do not count."""
    finite = [(p, i) for i, p in enumerate(p_values) if math.isfinite(p)]
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (len(finite) - rank) * p))
        adjusted[index] = running
    return adjusted


# ---------------------------------------------------------------- over images: one run's precision


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


def nanmean_stat(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """NaN-ignoring mean of per-image `values` [n] with image weights `counts` [R, n] -> [R].

    Per-image Dice is NaN where truth and prediction are both empty; those images are left out."""
    values = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(values)
    return _ratio(counts @ np.where(valid, values, 0.0), counts @ valid.astype(np.float64))


def pooled_overlap(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, metric: str) -> np.ndarray:
    """Pooled Dice or IoU from (possibly resampled) confusion sums: one confusion matrix over all images."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    if metric == "dice":
        return _ratio(2.0 * tp, 2.0 * tp + fp + fn)
    if metric == "iou":
        return _ratio(tp, tp + fp + fn)
    raise ValueError(f"unknown pooled metric {metric!r} (dice or iou)")


def pooled_stat(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, metric: str, counts: np.ndarray) -> np.ndarray:
    """Pooled Dice/IoU over the images weighted by `counts` [R, n] -> [R]."""
    sums = [counts @ np.nan_to_num(np.asarray(x, dtype=np.float64)) for x in (tp, fp, fn)]
    return pooled_overlap(*sums, metric)


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], n: int, *, confidence: float = CONFIDENCE,
              seed: int = 0, resample: bool = True) -> Interval:
    """Point estimate (all weights 1) and percentile interval of `statistic` over image resamples.

    `statistic` maps image weights [R, n] to one value per row. Without `resample`, only the point
    estimate is computed (NaN bounds).
    """
    if n == 0:
        return NAN_INTERVAL
    estimate = float(statistic(np.ones((1, n)))[0])
    if not resample:
        return Interval(estimate, math.nan, math.nan)
    images = resample_counts(n, np.random.default_rng(seed))
    return Interval(estimate, *_percentiles(statistic(images), confidence))


def nanmean_ci(values: np.ndarray, *, confidence: float = CONFIDENCE, seed: int = 0, resample: bool = True) -> Interval:
    """One run's mean over its images ignoring NaN, with its bootstrap interval over images."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(values).any():
        return NAN_INTERVAL
    return bootstrap(lambda w: nanmean_stat(values, w), values.size, confidence=confidence, seed=seed,
                     resample=resample)


def pooled_ci(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, metric: str, *, confidence: float = CONFIDENCE,
              seed: int = 0, resample: bool = True) -> Interval:
    """One run's pooled Dice/IoU with its bootstrap interval over images (their per-image tp/fp/fn)."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64).ravel() for x in (tp, fp, fn))
    return bootstrap(lambda w: pooled_stat(tp, fp, fn, metric, w), tp.size, confidence=confidence, seed=seed,
                     resample=resample)


# ---------------------------------------------------------------- Student t without scipy


@lru_cache(maxsize=256)
def _t_quantile(confidence: float, dof: float) -> float:
    """Two-sided Student-t quantile by bisection on the regularised incomplete beta (no scipy needed);
    cached: the degrees of freedom are whole seed counts."""
    target = 1.0 - (1.0 - confidence) / 2.0
    low, high = 0.0, 1000.0
    for _ in range(100):
        mid = (low + high) / 2.0
        if _t_cdf(mid, dof) < target:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def _t_cdf(t: float, dof: float) -> float:
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
