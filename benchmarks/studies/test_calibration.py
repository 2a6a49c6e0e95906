"""The comparison's intervals on simulated experiments (calibration.py), at a test's count."""

from __future__ import annotations

import math

import numpy as np

import calibration
from mammoseg.metrics import stats


def test_null_false_claim_rate_is_calibrated():
    """400 simulated experiments with no true difference per setting, including the settings where the
    two-level bootstrap claimed a difference 12-46% of the time: the claim rate is 5% within its
    binomial tolerance (3 standard errors)."""
    n = 400
    tolerance = 3 * math.sqrt(0.05 * 0.95 / n)
    for setting in (calibration.Setting("per_image", 0.03, 3, "paired"),
                    calibration.Setting("pooled", 0.02, 2, "paired"),
                    calibration.Setting("per_image", 0.0, 5, "unpaired")):
        rate = calibration.simulate(setting, 0.0, n, seed=11)["claim_rate"]
        assert abs(rate - 0.05) <= tolerance, (setting, rate)
    one_seed = calibration.per_run_values(calibration.Setting("per_image", 0.03, 1, "paired"), 0.0,
                                          np.random.default_rng(0), 50)
    assert not any(stats.difference(v[0], v[1]).excludes(0.0) for v in one_seed)  # one seed: never a claim


def test_per_image_crossed_analysis_and_equivalence_are_calibrated():
    """Per image with the runs crossed, paired by seed: unequal seed variances, and 0/1 flags. Two one-sided
    tests call arms that differ by exactly the margin equivalent at most 5% of the time."""
    n = 300
    tolerance = 3 * math.sqrt(0.05 * 0.95 / n)
    for setting in (calibration.Crossed("continuous", 3, (0.6, 0.0), True),
                    calibration.Crossed("binary", 3, (0.3, 0.3), True)):
        rate = calibration.crossed_rates(setting, n, seed=5)["claim_rate"]
        assert abs(rate - 0.05) <= tolerance, (setting, rate)
    edge = calibration.crossed_rates(calibration.Crossed("continuous", 5, (0.1, 0.1), True, images=100), n, seed=6,
                                     effect=0.5, margin=0.5)["equivalence_rate"]
    assert edge <= 0.05 + tolerance


def test_a_claim_at_its_least_favourable_null_errs_at_most_at_its_level():
    """Every comparison of a claim but one far in the stated direction, that one null: the intersection-union
    test makes a false claim at most 5% of the time (2.5% each way, the two-sided test read for direction);
    where every seed agrees on 0/1 flags, the procedure claims no more often than the exact sign test."""
    n = 300
    tolerance = 3 * math.sqrt(0.05 * 0.95 / n)
    assert calibration.claim_boundary_error(n, seed=7, comparisons=2) <= 0.05 + tolerance
    agree = calibration.Crossed("binary", 3, (0.0, 0.0), False, noise_sd=0.0, interaction_sd=1.0)
    rates = calibration.crossed_rates(agree, n, seed=8)
    assert rates["claim_rate"] <= rates["sign_test_rate"] <= 0.05 + tolerance
