"""Speed as a comparison can state it: the speed ratio of two networks from interleaved block timings,
with a t interval, and the time a run took to reach a declared validation loss.

Block timings taken side by side share the machine's load, so their ratio is what can be compared; a
study's own timings, taken while other work shared the cores, cannot be.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
"""Level of the speed-ratio interval."""

WITHIN_BEST = 0.05
"""Time to quality's default level: the validation loss within this fraction of the run's best."""

HISTORY_COLUMNS = ("epoch", "val_loss", "train_seconds")
"""The history.csv columns time to quality reads."""


@dataclass(frozen=True)
class SpeedRatio:
    """How many times faster A is than B (> 1: A faster), from blocks of equal work, and its interval."""

    ratio: float  # geometric mean of the block ratios
    low: float
    high: float
    p_value: float  # two-sided, for ratio = 1
    confidence: float
    pairs: int
    block_ratios: tuple[float, ...]


def ratio_interval(a_seconds: Sequence[float], b_seconds: Sequence[float], confidence: float = CONFIDENCE) -> SpeedRatio:
    """Speed ratio A/B from the seconds of paired blocks of equal work (block i of A timed beside block
    i of B): a one-sample t interval and test on the log ratios, since speeds compose by multiplication
    and their noise is closer to log-normal than normal."""
    from scipy import stats

    a, b = np.asarray(a_seconds, float), np.asarray(b_seconds, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"block timings must be two equal-length lists, got {a.shape} and {b.shape}")
    if a.size < 2:
        raise ValueError(f"an interval needs at least 2 block pairs, got {a.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and a.min() > 0 and b.min() > 0):
        raise ValueError("block timings must be positive, finite seconds")
    log_ratios = np.log(b) - np.log(a)  # log(speed A / speed B) for equal work
    mean = float(log_ratios.mean())
    if np.ptp(log_ratios) == 0:  # no spread: the t statistic's limit
        low = high = mean
        p_value = 1.0 if mean == 0 else 0.0
    else:
        test = stats.ttest_1samp(log_ratios, 0.0)
        interval = test.confidence_interval(confidence)
        low, high, p_value = float(interval.low), float(interval.high), float(test.pvalue)
    return SpeedRatio(ratio=math.exp(mean), low=math.exp(low), high=math.exp(high), p_value=p_value,
                      confidence=confidence, pairs=int(a.size), block_ratios=tuple(float(r) for r in np.exp(log_ratios)))


@dataclass(frozen=True)
class TimeToQuality:
    """When a run's validation loss first reached `level`: the epoch (1-based, as history.csv counts)
    and the training seconds summed through it (validation excluded). None where it never did."""

    level: float
    epoch: int | None
    train_seconds: float | None


def time_to_quality(epochs: Sequence[int], val_loss: Sequence[float], train_seconds: Sequence[float],
                    level: float | None = None, within: float = WITHIN_BEST) -> TimeToQuality:
    """Epochs and training seconds until the validation loss first reaches `level`, or, without one,
    comes within `within` of the run's best (a level every finished run reaches; comparable across
    arms only as "how soon a run gets near its own best"). Epochs with no finite loss never qualify.
    Seconds are measured under whatever load the run met: compare arms on epochs, or on epochs times
    an interleaved benchmark's seconds per epoch."""
    loss = np.asarray(val_loss, float)
    seconds = np.asarray(train_seconds, float)
    if not len(epochs) == loss.size == seconds.size:
        raise ValueError(f"history columns differ in length: {len(epochs)}, {loss.size}, {seconds.size}")
    if within < 0:
        raise ValueError(f"within must be non-negative, got {within}")
    finite = np.isfinite(loss)
    if level is None:
        if not finite.any():
            raise ValueError("no epoch has a finite validation loss: no best to measure against")
        best = float(loss[finite].min())
        level = best + within * abs(best)
    reached = np.flatnonzero(finite & (loss <= level))
    if reached.size == 0:
        return TimeToQuality(level=float(level), epoch=None, train_seconds=None)
    first = int(reached[0])
    return TimeToQuality(level=float(level), epoch=int(epochs[first]), train_seconds=float(seconds[: first + 1].sum()))
