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
