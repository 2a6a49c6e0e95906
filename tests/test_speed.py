"""Speed measures with known answers: the interleaved speed ratio and its interval on simulated block
timings, and time to quality on hand-made histories."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mammoseg.core.errors import InputError
from mammoseg.metrics.speed import ratio_interval, time_to_quality
from mammoseg.runs.quality import history_time_to_quality, run_time_to_quality
from mammoseg.runs.rundir import RunDir


def _blocks(rng: np.random.Generator, speed_ratio: float, pairs: int, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Block seconds of A and B under a shared load that drifts from pair to pair, A `speed_ratio` times faster."""
    load = np.exp(rng.normal(0, 0.5, pairs))  # the machine's load, common to both blocks of a pair
    b = 2.0 * load * np.exp(rng.normal(0, noise, pairs))
    a = 2.0 / speed_ratio * load * np.exp(rng.normal(0, noise, pairs))
    return a, b


def test_ratio_interval_recovers_a_known_ratio() -> None:
    a = np.array([1.0, 2.0, 4.0, 1.0])
    b = 1.5 * a * np.array([1.02, 0.98, 1.01, 0.99])
    result = ratio_interval(a, b)
    assert result.pairs == 4 and result.confidence == 0.95
    assert result.block_ratios == pytest.approx(tuple(b / a))
    assert result.ratio == pytest.approx(math.exp(np.mean(np.log(b / a))))
    assert result.low < 1.5 < result.high and result.low > 1.4 and result.high < 1.6
    assert result.p_value < 1e-4


def test_ratio_interval_false_claims_near_nominal_and_coverage() -> None:
    """200 simulated benchmarks of two equally fast networks claim a difference about 5% of the time, and
    at a true ratio of 1.3 the interval covers it about 95% of the time (bounds: binomial, 99.9%)."""
    rng = np.random.default_rng(7)
    null = [ratio_interval(*_blocks(rng, 1.0, pairs=4)).p_value < 0.05 for _ in range(200)]
    assert 2 <= sum(null) <= 20  # a normal (z) interval at 4 pairs would claim ~15%: about 29
    covered = [(r := ratio_interval(*_blocks(rng, 1.3, pairs=4))).low <= 1.3 <= r.high for _ in range(200)]
    assert 180 <= sum(covered) <= 198


def test_ratio_interval_without_spread_and_bad_input() -> None:
    tied = ratio_interval([1.0, 2.0], [2.0, 4.0])
    assert (tied.ratio, tied.low, tied.high, tied.p_value) == (2.0, 2.0, 2.0, 0.0)
    assert ratio_interval([1.0, 2.0], [1.0, 2.0]).p_value == 1.0
    with pytest.raises(ValueError, match="at least 2 block pairs"):
        ratio_interval([1.0], [2.0])
    with pytest.raises(ValueError, match="equal-length"):
        ratio_interval([1.0, 2.0], [2.0])
    with pytest.raises(ValueError, match="positive"):
        ratio_interval([1.0, 0.0], [2.0, 1.0])


HISTORY = [  # epoch, val_loss, train_seconds: best 0.50 at epoch 5; within 5% (<= 0.525) first at epoch 3
    (1, 0.90, 10.0), (2, math.nan, 11.0), (3, 0.52, 12.0), (4, 0.60, 10.0), (5, 0.50, 9.0),
]


def test_time_to_quality_within_the_best_and_at_a_fixed_level() -> None:
    epochs, loss, seconds = zip(*HISTORY)
    near_best = time_to_quality(epochs, loss, seconds)
    assert (near_best.level, near_best.epoch, near_best.train_seconds) == (pytest.approx(0.525), 3, 33.0)
    strict = time_to_quality(epochs, loss, seconds, within=0.0)
    assert (strict.epoch, strict.train_seconds) == (5, 52.0)
    fixed = time_to_quality(epochs, loss, seconds, level=0.95)
    assert (fixed.level, fixed.epoch, fixed.train_seconds) == (0.95, 1, 10.0)
    never = time_to_quality(epochs, loss, seconds, level=0.4)
    assert (never.epoch, never.train_seconds) == (None, None)
    with pytest.raises(ValueError, match="no epoch has a finite"):
        time_to_quality([1], [math.nan], [1.0])


def test_time_to_quality_of_a_run_folder(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_history([{"epoch": e, "loss": 1.0, "val_loss": v, "seconds": s + 2, "train_seconds": s} for e, v, s in HISTORY])
    result = run_time_to_quality(run.path)
    assert (result.epoch, result.train_seconds) == (3, 33.0)
    import pandas as pd

    frame = pd.read_csv(run.path / "history.csv")
    assert history_time_to_quality(frame, run.path / "history.csv", level=0.55) == result.__class__(0.55, 3, 33.0)

    with pytest.raises(InputError, match="history.csv: no epochs recorded"):
        run_time_to_quality(tmp_path / "empty")
    run.write_history([{"epoch": 1, "val_loss": 0.5}])
    with pytest.raises(InputError, match="history.csv: missing columns train_seconds"):
        run_time_to_quality(run.path)
