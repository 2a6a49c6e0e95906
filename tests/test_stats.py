"""The statistics the comparison rests on: scipy and statsmodels in place of hand-written code (the
same numbers), the per-image analysis with seeds and images crossed, equivalence and planning."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from mammoseg.metrics import stats

# Student-t two-sided 95% quantiles and the two-sided p-value of t = 2, as the project's earlier
# continued-fraction code computed them (they agree with scipy to 3e-13 over df 1-59).
T_QUANTILES = {1: 12.706204736174659, 2: 4.302652729749456, 3: 3.182446305283701, 4: 2.7764451051977836,
               5: 2.5705818356363057, 10: 2.228138851986259}
P_AT_TWO = {1: 0.29516723530086586, 2: 0.18350341907227152, 3: 0.13932596855884105, 4: 0.11611652351681445,
            5: 0.10193947882984777, 10: 0.07338803477073763}


def test_library_quantiles_and_p_values_match_the_hand_written_ones():
    for dof, quantile in T_QUANTILES.items():
        assert stats.t_quantile(0.95, dof) == pytest.approx(quantile, rel=1e-11)
        result = stats.paired(2.0 / math.sqrt(dof + 1) + _spread(dof))  # t = 2 on dof degrees of freedom
        assert result.p_value == pytest.approx(P_AT_TWO[dof], rel=1e-9)


def _spread(dof: int) -> np.ndarray:
    """dof + 1 values with mean 0 and standard deviation 1 (standard error of the mean 1/sqrt(dof + 1))."""
    values = np.arange(dof + 1, dtype=float)
    values -= values.mean()
    return values / values.std(ddof=1)


def test_holm_from_statsmodels_steps_down_and_skips_missing():
    adjusted = stats.holm([0.01, 0.04, 0.03, math.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    assert stats.holm([]) == [] and math.isnan(stats.holm([math.nan])[0])


def test_a_signal_no_seed_varies_gets_an_interval_and_the_exact_sign_test():
    """1 of 14 normal images flagged in every seed against 14 of 14: 13 discordant images, all one way."""
    low = np.zeros((3, 14))
    low[:, 0] = 1.0
    high = np.ones((3, 14))
    result = stats.crossed_difference(low, high, stats.UNIT, paired_seeds=True)
    assert result.estimate == pytest.approx(-13 / 14) and result.defined and result.high < 0
    assert result.p_value == pytest.approx(2 * 0.5 ** 13)  # 2.4e-4: the sign test, not the t's smaller value
    assert result.spread.seed_var == 0.0
    # with seeds 0-2 against 3-5 (not paired) the same
    assert stats.crossed_difference(low, high, stats.UNIT).p_value == pytest.approx(2 * 0.5 ** 13)


def test_crossed_variance_components_of_an_additive_table():
    """Per-seed differences that are a seed shift plus an image effect, nothing else: the seed part is the
    shifts' variance over seeds, the image part the effects' variance over images."""
    shifts, effects = np.array([0.1, -0.2, 0.3, 0.0]), np.linspace(-0.5, 0.5, 9)
    diff = shifts[:, None] + effects[None, :]
    result = stats.crossed_difference(diff + 1.0, np.ones_like(diff), paired_seeds=True)
    assert result.spread.seed_var == pytest.approx(shifts.var(ddof=1) / 4)
    assert result.spread.image_var == pytest.approx(effects.var(ddof=1) / 9)
    assert result.estimate == pytest.approx(diff.mean())
    assert not stats.crossed_difference(diff[:1], diff[:1]).defined  # one seed: nothing about designs


def test_equivalence_is_two_one_sided_tests_within_the_margin():
    spread = stats.Spread(seeds=5, images=0, seed_var=0.01, image_var=0.0, dof=8)
    centred = stats.Interval(0.0, -1.0, 1.0, 1.0, spread)
    assert stats.equivalence_p(centred, 0.25) == pytest.approx(scipy_stats.t.sf(2.5, 8))
    shifted = stats.Interval(0.2, -1.0, 1.0, 0.1, spread)
    assert stats.equivalence_p(shifted, 0.25) == pytest.approx(scipy_stats.t.cdf(-0.5, 8))
    assert math.isnan(stats.equivalence_p(centred, math.nan)) and math.isnan(stats.equivalence_p(stats.NAN_INTERVAL, 1))


def test_needed_units_scale_the_study_s_own_variance():
    z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
    seeds_only = stats.Interval(0.1, 0, 0, 0.5, stats.Spread(3, 0, (0.1 / z) ** 2 * 4, 0.0, 4))
    assert stats.needed_units(seeds_only, 0.1)[0] == 12  # four times the variance: four times the seeds
    both = stats.Interval(0.1, 0, 0, 0.5, stats.Spread(3, 50, (0.1 / z) ** 2, (0.1 / z) ** 2, 4))
    seeds, images = stats.needed_units(both, 0.1)
    assert math.isinf(seeds) and math.isinf(images)  # either part alone already uses the whole budget
    assert stats.needed_units(both, 1.0) == (3, 50)  # already enough


def test_copies_of_one_design_per_image_are_never_called_different():
    """Two arms that are one design (seeds 0-2 against 3-5), binary and continuous per-image values with a
    seed effect: the 5% test claims a difference at most about 5% of the time."""
    rng = np.random.default_rng(4)
    claims = 0
    for _ in range(200):
        image = rng.normal(0, 1, 30)
        arms = [image + rng.normal(0, 0.3, (3, 1)) + rng.normal(0, 1, (3, 30)) for _ in range(2)]
        claims += stats.crossed_difference(*arms).p_value < 0.05
        flags = [(a > 1.0).astype(float) for a in arms]
        claims += stats.crossed_difference(*flags, stats.UNIT).p_value < 0.05
    assert claims <= 0.08 * 400
