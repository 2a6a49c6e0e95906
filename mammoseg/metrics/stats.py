"""Confidence intervals and tests for the comparison: over seeds for claims about designs, over images
for one run, and over both at once where every run scored the same images.

A claim about a design ("arm A has fewer false positives than arm B") must hold for another seed,
so the training run is a unit of replication. Every run of an experiment is evaluated on the same
test images, so each image is a second, crossed unit: a design may flag the same image in every seed.
Three analyses follow from that:
- one number per run (`seed_interval`, `difference`, `paired`): a Student-t interval over an arm's
  runs, Welch's two-sample t of two arms' difference, or a one-sample t of per-seed differences when the
  arms share their seeds (seed k gives every arm the same data order, so runs pair by seed);
- per image with the runs crossed (`crossed_difference`): seeds × images of each arm, analysed as a
  two-way random-effects model by its mean squares, so a signal that no seed varies (1 of 14 normal
  images flagged in every seed against 14 of 14) still gets an interval and a p-value;
- one run's precision over its images (`nanmean_ci`, `pooled_ci`, an image bootstrap): descriptive,
  never the basis of a claim.
A difference carries what a test needs (`Spread`: its variance from seeds and from images, its degrees
of freedom), so the same number gives the test of no difference, the equivalence test within a
declared margin (`equivalence_p`, two one-sided tests) and the seeds or images a settled answer
would need (`needed_units`). Quantiles come from `scipy.stats`, Holm's correction from `statsmodels`.

A metric declares the range it can take (`Bounds`). Intervals are computed on the metric's own
scale and cut to that range (a difference to the range a difference can take): the true value lies
inside it, so cutting never lowers coverage, and the estimate stays the plain mean.

The image bootstrap draws images with replacement as a matrix of counts (resample x image): any
statistic that is a ratio of per-image sums — a NaN-aware mean, a pooled Dice from tp/fp/fn — costs
one matrix product. Its generator is seeded, so a report is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

N_RESAMPLES = 2000
CONFIDENCE = 0.95
POWER = 0.8  # the chance of a settled answer that `needed_units` plans for
WELCH_MIN_RUNS = 3  # runs an arm that an unpaired comparison needs (see `difference`)
Bounds = tuple[float, float]
UNBOUNDED: Bounds = (-math.inf, math.inf)
UNIT: Bounds = (0.0, 1.0)
POSITIVE: Bounds = (0.0, math.inf)


@dataclass(frozen=True)
class Spread:
    """Where an estimate's variance comes from: `seed_var` shrinks with more seeds, `image_var` with more
    images; `dof` are the test's degrees of freedom (Satterthwaite's where both contribute)."""

    seeds: int
    images: int
    seed_var: float
    image_var: float
    dof: float

    @property
    def se(self) -> float:
        return math.sqrt(self.seed_var + self.image_var)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval (NaN bounds when it cannot be estimated) and, for a
    difference, the two-sided p-value of "no difference" (NaN otherwise) and its `spread`."""

    estimate: float
    low: float
    high: float
    p_value: float = math.nan
    spread: Spread | None = None

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


# ---------------------------------------------------------------- over seeds: one number per run


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


def t_quantile(confidence: float, dof: float) -> float:
    """The two-sided Student-t quantile: the half-width of a `confidence` interval in standard errors."""
    return float(scipy_stats.t.ppf(1.0 - (1.0 - confidence) / 2.0, dof))


def seed_interval(values: np.ndarray | Sequence[float], bounds: Bounds = UNBOUNDED, *,
                  confidence: float = CONFIDENCE) -> Interval:
    """Student-t interval of the mean of per-run values (df = runs − 1), cut to `bounds`.

    The true mean lies inside the bounds, so cutting the interval there never loses coverage, and
    the estimate (the plain mean of the runs) always lies inside it. Undefined with fewer than two
    runs — a single run says nothing about the spread.
    """
    values, mean, too_few = _sample(values)
    if too_few is not None:
        return too_few
    half = t_quantile(confidence, values.size - 1) * float(values.std(ddof=1)) / math.sqrt(values.size)
    return Interval(mean, max(mean - half, bounds[0]), min(mean + half, bounds[1]))


def difference(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float], bounds: Bounds = UNBOUNDED,
               *, confidence: float = CONFIDENCE) -> Interval:
    """mean(a) − mean(b) of per-run values with Welch's two-sample t interval and two-sided p-value.

    Needs three runs in each arm, not all identical (a gap between arms whose runs agree exactly cannot be
    judged); NaN bounds otherwise. Each arm keeps its own seed variance, with the Welch-Satterthwaite
    degrees of freedom: simulated, a pooled variance claims a difference 10% of the time at the nominal
    5% when one arm's runs vary ten times more than the other's (3 seeds each); Welch's claims 3-6%
    whatever the ratio from 3 seeds. With two runs an arm its degrees of freedom fall towards 1: it
    claimed 1.6-2.9% and had almost no power, so two runs an arm are compared only paired by seed
    (`paired`). Arms evaluated on the same images share those images' difficulty in every run, so it
    cancels in the difference. The interval is cut to the range a difference of `bounds` can take.
    """
    a, b = _finite(a), _finite(b)
    if a.size == 0 or b.size == 0:
        return NAN_INTERVAL
    diff = float(a.mean() - b.mean())
    if a.size < WELCH_MIN_RUNS or b.size < WELCH_MIN_RUNS:
        return Interval(diff, math.nan, math.nan)
    parts = [float(x.var(ddof=1)) / x.size for x in (a, b)]
    spread_of_parts = sum(v * v / (x.size - 1) for v, x in zip(parts, (a, b)))
    dof = sum(parts) ** 2 / spread_of_parts if spread_of_parts > 0 else a.size + b.size - 2
    spread = Spread(min(a.size, b.size), 0, sum(parts), 0.0, dof)
    return _t_test(diff, spread, confidence, bounds[1] - bounds[0])


def paired(differences: np.ndarray | Sequence[float], bounds: Bounds = UNBOUNDED, *,
           confidence: float = CONFIDENCE) -> Interval:
    """Mean of within-run or within-seed differences (two measures of the same runs, or two arms' runs of
    the same seed) with its one-sample Student t interval (df = pairs − 1), cut to the range a difference
    of `bounds` can take, and the two-sided p-value of a zero mean; NaN bounds under two pairs."""
    values, mean, too_few = _sample(differences)
    if too_few is not None:
        return too_few
    spread = Spread(values.size, 0, float(values.var(ddof=1)) / values.size, 0.0, values.size - 1)
    return _t_test(mean, spread, confidence, bounds[1] - bounds[0])


def _t_test(estimate: float, spread: Spread, confidence: float, span: float = math.inf,
            floor_p: float = 0.0) -> Interval:
    """`estimate` ± the Student-t half-width, cut to ±`span`, with the two-sided p-value of zero (never
    below `floor_p`, an exact test's). With no spread at all (se 0) there is nothing to judge a non-zero
    estimate by: no bounds, and only an exact test's p-value."""
    se = spread.se
    if se == 0.0:
        if estimate == 0.0:
            return Interval(estimate, estimate, estimate, 1.0, spread)
        return Interval(estimate, math.nan, math.nan, floor_p if floor_p > 0 else math.nan, spread)
    half = t_quantile(confidence, spread.dof) * se
    p_value = max(floor_p, float(2.0 * scipy_stats.t.sf(abs(estimate) / se, spread.dof)))
    return Interval(estimate, float(max(estimate - half, -span)), float(min(estimate + half, span)), p_value, spread)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: rejecting where adjusted p < alpha keeps the chance of any
    false claim in the family at most alpha. NaN p-values (not estimable) stay NaN and do not count."""
    finite = [i for i, p in enumerate(p_values) if math.isfinite(p)]
    adjusted = [math.nan] * len(p_values)
    if finite:
        for index, p in zip(finite, multipletests([p_values[i] for i in finite], method="holm")[1]):
            adjusted[index] = float(p)
    return adjusted


# ---------------------------------------------------------------- equivalence and planning


def equivalence_p(interval: Interval, margin: float) -> float:
    """Two one-sided tests of |difference| ≥ `margin`: below alpha, the difference lies within ±margin
    (equivalent), at level alpha. NaN without a spread, a positive standard error or a finite margin."""
    spread = interval.spread
    if spread is None or not (margin > 0 and math.isfinite(margin) and spread.se > 0):
        return math.nan
    low = scipy_stats.t.sf((interval.estimate + margin) / spread.se, spread.dof)
    high = scipy_stats.t.cdf((interval.estimate - margin) / spread.se, spread.dof)
    return float(max(low, high))


def needed_units(interval: Interval, target: float, alpha: float = 1.0 - CONFIDENCE,
                 power: float = POWER) -> tuple[float, float]:
    """Seeds (images fixed) and images (seeds fixed) at which a true difference of `target` would be
    settled with probability `power` at level `alpha`, scaling this study's own variance components
    (normal approximation); inf where the other unit's share alone is already too large."""
    spread = interval.spread
    if spread is None or not (target > 0 and math.isfinite(target)):
        return math.nan, math.nan
    allowed = (target / (scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(power))) ** 2

    def scaled(units: int, own: float, other: float) -> float:
        if own + other <= allowed:
            return float(units)
        return math.ceil(units * own / (allowed - other)) if allowed > other and own > 0 else math.inf

    return (scaled(spread.seeds, spread.seed_var, spread.image_var),
            scaled(spread.images, spread.image_var, spread.seed_var) if spread.images else math.nan)


# ---------------------------------------------------------------- per image, runs crossed


def _mean_squares(runs: np.ndarray) -> tuple[float, float]:
    """The seed and residual mean squares of a [seeds, images] table (two-way, one value a cell):
    E[MS_seed] = σ²_e + images·σ²_seed, E[MS_error] = σ²_e."""
    seeds, images = runs.shape
    row, col, grand = runs.mean(1, keepdims=True), runs.mean(0, keepdims=True), runs.mean()
    ms_seed = images * float(((row - grand) ** 2).sum()) / (seeds - 1)
    ms_error = float(((runs - row - col + grand) ** 2).sum()) / ((seeds - 1) * (images - 1))
    return ms_seed, ms_error


def _binary(*tables: np.ndarray) -> bool:
    return all(bool(np.isin(t, (0.0, 1.0)).all()) for t in tables)


def sign_test(per_image: np.ndarray) -> float:
    """Exact two-sided sign test over the images whose difference is not zero (discordant images)."""
    up, down = int((per_image > 0).sum()), int((per_image < 0).sum())
    return 1.0 if up + down == 0 else float(scipy_stats.binomtest(up, up + down, 0.5).pvalue)


def crossed_difference(a: np.ndarray, b: np.ndarray, bounds: Bounds = UNBOUNDED, *, paired_seeds: bool = False,
                       confidence: float = CONFIDENCE) -> Interval:
    """Difference of two arms' grand means over per-image values [seeds, images] on the same images, seeds
    and images crossed random effects (the multi-reader multi-case analysis of Obuchowski-Rockette and
    Hillis, with seeds as readers and images as cases).

    Variance: each table's seed mean square / (seeds · images) — each arm's, or that of the per-seed
    differences when `paired_seeds` (row k of both is seed k) — plus the variance over images of the
    per-image mean differences / images less the residual mean squares' share, floored at 0 (Hillis's
    choice: the seed part is never cut, so a seed effect is never lost to noise); Satterthwaite's degrees
    of freedom over the seed and image parts. Where a 0/1 outcome is the same in every seed of each arm,
    the images are the only replication left and the p-value is never below the exact sign test's over
    the discordant images. Images any run lacks are left out; NaN bounds with fewer
    than two seeds per arm or two images."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a).all(0) & np.isfinite(b).all(0)
    a, b = a[:, keep], b[:, keep]
    if a.size == 0 or b.size == 0:
        return NAN_INTERVAL
    estimate = float(a.mean() - b.mean())
    images = a.shape[1]
    if min(a.shape[0], b.shape[0]) < 2 or images < 2 or (paired_seeds and a.shape != b.shape):
        return Interval(estimate, math.nan, math.nan)
    per_image = a.mean(0) - b.mean(0)
    seed_parts, residual = [], 0.0
    for table in ([a - b] if paired_seeds else [a, b]):
        ms_seed, ms_error = _mean_squares(table)
        seed_parts.append((ms_seed / table.size, table.shape[0] - 1))
        residual += ms_error / table.size
    seed_var = sum(c for c, _ in seed_parts)
    image_var = max(float(per_image.var(ddof=1)) / images - residual, 0.0)
    spread_of_parts = sum(c * c / d for c, d in seed_parts) + image_var ** 2 / (images - 1)
    dof = (seed_var + image_var) ** 2 / spread_of_parts if spread_of_parts > 0 else math.inf
    spread = Spread(min(a.shape[0], b.shape[0]), images, seed_var, image_var, dof)
    agree = all(bool((t == t[:1]).all()) for t in (a, b))  # each image's outcome the same in every seed
    floor = sign_test(per_image) if agree and _binary(a, b) else 0.0
    return _t_test(estimate, spread, confidence, bounds[1] - bounds[0], floor)


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
