"""The article's four claims, each settled or left open by comparisons declared before any run.

A claim is a handful of comparisons between arms (or between the soft and the hard map of the same
runs). A comparison states either a direction ("dilated_resize has a lower FP rate than fcn_skips")
or an equivalence ("fcn_bottleneck ≈ fcn_skips", within the metric's declared margin). Each is a
difference from `aggregate.compare_arms` (per image with the runs crossed where the metric is a mean
over images, else one number per run; paired by seed where the arms share their seeds; within-run pairs
for soft against hard), with the two-sided p-value of no difference and the equivalence test's
(two one-sided tests, `stats.equivalence_p`).

A claim holds only if all its comparisons do: an intersection–union test, at level α per claim, whose
p-value is the largest of its comparisons'. When its comparisons do not all point the stated way, the
claim's test is the other one: one comparison settled against it (opposite direction, or equivalent
where a difference was stated), Bonferroni over its comparisons. Holm's correction then runs over the
claims, the report's one confirmatory family. Verdicts: holds, does not hold, equivalent within ±δ
(every difference the claim states is absent), not settled at this size. A claim whose evidence the
study cannot give cleanly is shown as exploratory, outside the family, and says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from mammoseg.core.errors import InputError
from mammoseg.metrics import stats
from mammoseg.metrics.stats import NAN_INTERVAL, Interval
from mammoseg.reporting.aggregate import ALPHA, Arm, compare_arms
from mammoseg.reporting.evidence import Evidence
from mammoseg.reporting.registry import METRIC_BY_KEY

HOLDS, FAILS, EQUIVALENT, OPEN = "holds", "does not hold", "equivalent within ±δ", "not settled at this size"


@dataclass(frozen=True)
class Comparison:
    """`arm` is expected to be better than `other` on `metric` (or, with `equivalent`, within the metric's
    equivalence margin of it); with `against` (a metric of the same runs), `metric` is expected to be
    better than `against` in every arm that learned (soft against hard)."""

    metric: str
    arm: str = ""
    other: str = ""
    against: str = ""
    equivalent: bool = False

    @property
    def label(self) -> str:
        if self.against:
            return f"{METRIC_BY_KEY[self.metric].label} vs {METRIC_BY_KEY[self.against].label}, every run"
        return f"{METRIC_BY_KEY[self.metric].label}: {self.arm} {'≈' if self.equivalent else 'vs'} {self.other}"

    @property
    def margin(self) -> float:
        """The metric's declared equivalence margin; NaN where none is declared (no equivalence is tested)."""
        margin = METRIC_BY_KEY[self.metric].equivalence_margin
        return math.nan if margin is None else margin


@dataclass(frozen=True)
class Claim:
    """A claim and its comparisons; `exploratory` says why a claim stays outside the confirmatory family."""

    key: str
    statement: str
    comparisons: tuple[Comparison, ...]
    exploratory: str = ""
    timed: bool = False  # an interleaved speed record of every pair makes the claim confirmatory, on it

    @property
    def arms(self) -> tuple[str, ...]:
        """The arms the claim names, in order."""
        return tuple(dict.fromkeys(n for c in self.comparisons for n in (c.arm, c.other) if n))


CONTROLS = ("dilated_transpose", "dilated_transpose-k3")
SHARED_CLOCK = ("the study's own timings share the machine with whatever else ran; the interleaved benchmark "
                "(`mammoseg bench --compare`, or [speed] in the experiment) gives the speed ratio with an interval")
"""Why a timed claim stays exploratory until an interleaved speed record of its every pair is at hand."""
FOLLOWS_BRIGHT_TISSUE = ("neg_fp_per_tile_op", "normal_fp_per_image_op", "neg_bright_fp_area_op")
"""Claim (a)'s measures, at each run's validation operating point."""
CLAIMS: tuple[Claim, ...] = (
    Claim("a", "false positives that follow bright tissue on images without an abnormality are fewer for "
               "dilated_resize than for fcn_skips, and the 1x1 bottleneck (fcn_bottleneck) does not remove them: "
               "at each run's operating point chosen on validation, fewer false-positive lesions per negative tile "
               "and per normal mammogram, and less false-positive area on the brightest third of the breast",
          tuple(Comparison(m, "dilated_resize", "fcn_skips") for m in FOLLOWS_BRIGHT_TISSUE)
          + tuple(Comparison(m, "fcn_bottleneck", "fcn_skips", equivalent=True) for m in FOLLOWS_BRIGHT_TISSUE)),
    Claim("b", "the transpose-first control shows checkerboard artifacts at initialisation and after training, "
               "and dilated_resize does not, inside the decoder and at the output",
          tuple(Comparison(m, "dilated_resize", c) for c in CONTROLS
                for m in ("decoder_init", "decoder_trained", "output_upsampling_init", "output_upsampling_trained"))),
    Claim("c", "the resize variants train faster per epoch",
          (Comparison("train_img_per_s", "fcn_resize_mid", "fcn_skips"),
           Comparison("train_img_per_s", "dilated_resize", "dilated_transpose")),
          exploratory=SHARED_CLOCK, timed=True),
    Claim("d", "soft probabilities are more useful than hard predictions: at the hard map's false positives per "
               "image they find more lesions, and once the loss weight's prior is taken off (margin − ln w) they "
               "are better calibrated (ECE and Brier score)",
          (Comparison("soft_sens_at_hard_fp", against="hard_sensitivity"),
           Comparison("ece_prior", against="hard_ece"), Comparison("brier_prior", against="hard_brier"))),
)


@dataclass
class Outcome:
    """One comparison's numbers: the two sides' means with their intervals over seeds, the difference
    (arm − other, or soft − hard) with its p-value of no difference, and the equivalence p-value."""

    comparison: Comparison
    side: Interval = NAN_INTERVAL
    other_side: Interval = NAN_INTERVAL
    difference: Interval = NAN_INTERVAL
    missing: str = ""
    basis: str = ""  # where the numbers come from, when not from the runs

    @property
    def expected_sign(self) -> float:
        return 1.0 if METRIC_BY_KEY[self.comparison.metric].better == "higher" else -1.0

    @property
    def equivalence_p(self) -> float:
        return stats.equivalence_p(self.difference, self.comparison.margin)

    @property
    def as_stated(self) -> bool:
        """Whether the estimate points the way the claim states (inside the margin for an equivalence)."""
        estimate = self.difference.estimate
        if self.comparison.equivalent:
            return abs(estimate) < self.comparison.margin
        return estimate * self.expected_sign > 0

    @property
    def support_p(self) -> float:
        """The p-value of the test that would settle this comparison as stated."""
        return self.equivalence_p if self.comparison.equivalent else self.difference.p_value

    @property
    def against(self) -> tuple[float, str]:
        """The p-value of the test that would settle this comparison against the statement, and its verdict:
        a difference where equivalence was stated, else the opposite direction or an equivalence."""
        if self.comparison.equivalent:
            return self.difference.p_value, FAILS
        if self.as_stated:
            return self.equivalence_p, EQUIVALENT
        equivalent, different = self.equivalence_p, self.difference.p_value
        return (equivalent, EQUIVALENT) if equivalent < different else (different, FAILS)

    def reading(self, alpha: float = ALPHA) -> str:
        """What this comparison alone says at `alpha`, unadjusted: a description, not a claim."""
        if self.missing:
            return f"not compared ({self.missing})"
        if self.support_p < alpha:
            return EQUIVALENT if self.comparison.equivalent else "as stated"
        p, verdict = self.against
        if p < alpha:
            return "opposite" if verdict == FAILS and not self.comparison.equivalent else verdict
        return "not settled"


def _over_networks(comparison: Comparison, evidence: Evidence) -> Outcome | None:
    """An at-initialisation comparison over rebuilt networks (Welch's t, networks as units); None without two
    finite scores in each arm (a map too small for the score's period has none)."""
    metric = METRIC_BY_KEY[comparison.metric]
    values = [evidence.networks.get(name, {}).get(metric.key) for name in (comparison.arm, comparison.other)]
    if any(v is None or sum(map(math.isfinite, v)) < 2 for v in values):
        return None
    a, b = values
    return Outcome(comparison, stats.seed_interval(a, metric.bounds), stats.seed_interval(b, metric.bounds),
                   stats.difference(a, b, metric.bounds), basis=f" ({evidence.network_count} rebuilt networks per arm)")


def _timed(comparison: Comparison, evidence: Evidence) -> Outcome:
    """A speed comparison from the interleaved record: the sides are the arms' median images per second, the
    difference is B's speed × (ratio A/B − 1) with the ratio's interval, and p is the ratio's test of 1."""
    pair = evidence.speed[(comparison.arm, comparison.other)]
    ratio, low, high = pair["speed_ratio"], pair["speed_ratio_low"], pair["speed_ratio_high"]
    other = pair["b_images_per_second_median"]
    return Outcome(comparison, Interval(pair["a_images_per_second_median"], math.nan, math.nan),
                   Interval(other, math.nan, math.nan),
                   Interval(other * (ratio - 1), other * (low - 1), other * (high - 1), pair["p_value"]),
                   basis=f" (interleaved benchmark: speed ratio {ratio:.3f} [{low:.3f}, {high:.3f}])")


def _compare(comparison: Comparison, arms: dict[str, Arm], evidence: Evidence) -> Outcome:
    metric = METRIC_BY_KEY[comparison.metric]
    by_networks = _over_networks(comparison, evidence) if comparison.arm else None
    if by_networks is not None:
        return by_networks
    if comparison.against:
        learned = [a for a in arms.values() if a.learned]
        if not learned:
            return Outcome(comparison, missing="no arm learned")
        soft = np.concatenate([a.cells[comparison.metric].per_run for a in learned])
        hard = np.concatenate([a.cells[comparison.against].per_run for a in learned])
        return Outcome(comparison, stats.seed_interval(soft, metric.bounds), stats.seed_interval(hard, metric.bounds),
                       stats.paired(soft - hard, metric.bounds))
    arm, other = arms[comparison.arm], arms[comparison.other]
    outcome = Outcome(comparison, arm.cells[metric.key].seed_interval, other.cells[metric.key].seed_interval,
                      compare_arms(arm, other, metric))
    failed = [a.name for a in (arm, other) if not a.learned]
    if failed:
        outcome.missing = f"{' and '.join(failed)} did not learn"
    return outcome


@dataclass
class Settled:
    """One claim's answer: its comparisons, the arms it needs that the experiment lacks, the p-value of
    the test its comparisons point to (`test`: the verdict that test would give), and that p-value
    Holm-adjusted over the family (NaN for a claim outside it)."""

    claim: Claim
    outcomes: list[Outcome]
    absent: tuple[str, ...] = ()
    p_value: float = math.nan
    test: str = OPEN
    adjusted: float = math.nan

    @property
    def confirmatory(self) -> bool:
        return not (self.absent or self.claim.exploratory)

    @property
    def status(self) -> str:
        """The confirmatory answer: an exploratory claim is never settled, whatever it points to."""
        return self.test if self.confirmatory and self.adjusted < ALPHA else OPEN

    @property
    def deciding(self) -> Outcome | None:
        """The comparison that settles the claim against its statement (the one most clearly against it), or
        None when every comparison points the stated way."""
        if not self.outcomes or all(o.as_stated for o in self.outcomes):
            return None
        return most_against(self.outcomes)

    def needed(self) -> tuple[float, float]:
        """Seeds per arm (images as they are) and images (seeds as they are) at which each comparison, at its
        own difference or the room inside its margin, would be settled with 80% power; the largest over them."""
        needs = [stats.needed_units(o.difference, abs(o.difference.estimate) if not o.comparison.equivalent
                                    else o.comparison.margin - abs(o.difference.estimate),
                                    alpha=2 * ALPHA if o.comparison.equivalent else ALPHA)
                 for o in self.outcomes]
        finite = [n for n in needs if not math.isnan(n[0])]
        if not finite:
            return math.nan, math.nan
        images = [n[1] for n in finite]
        return max(n[0] for n in finite), (math.nan if any(math.isnan(i) for i in images) else max(images))


def claim_test(outcomes: Sequence[Outcome]) -> tuple[float, str]:
    """The claim's p-value and the verdict its test gives: when every comparison points the stated way,
    the intersection–union test (the largest p-value); otherwise the one comparison most clearly against
    it, Bonferroni over the comparisons. NaN when a comparison could not be made."""
    if not outcomes or any(o.missing for o in outcomes):
        return math.nan, OPEN
    if all(o.as_stated for o in outcomes):
        return max(o.support_p for o in outcomes), HOLDS
    p, verdict = most_against(outcomes).against
    return min(1.0, len(outcomes) * p), verdict


def most_against(outcomes: Sequence[Outcome]) -> Outcome:
    """The comparison whose test against the claim's statement has the smallest p-value."""
    return min(outcomes, key=lambda o: o.against[0] if math.isfinite(o.against[0]) else math.inf)


COMPARISON_KEYS = tuple(f.name for f in fields(Comparison))
CLAIM_KEYS = ("statement", "compare", "exploratory", "timed")


def read_claims(tables: Any, where: str, arms: Sequence[str]) -> tuple[Claim, ...]:
    """An experiment's own claims, declared before any run as `[claims.KEY]` tables (`statement`, `compare`: a
    list of comparisons with the keys of `Comparison`, optional `exploratory`: why it stays outside the
    family, `timed`: a speed claim, settled on the interleaved benchmark of [speed]); the article's claims
    where it declares none. A metric or arm the experiment lacks is an error."""
    if not tables:
        return CLAIMS
    if not isinstance(tables, dict):
        raise InputError(where, f"[claims] must hold [claims.KEY] tables, got {tables!r}")
    claims = []
    for key, table in tables.items():
        at = f"{where} [claims.{key}]"
        if not isinstance(table, dict) or set(table) - set(CLAIM_KEYS) or not isinstance(table.get("statement"), str):
            raise InputError(at, f"needs a statement and a compare list, and only the keys {', '.join(CLAIM_KEYS)}")
        compare = table.get("compare")
        if not isinstance(compare, list) or not compare or not all(isinstance(c, dict) for c in compare):
            raise InputError(at, "compare must be a list of comparisons ({ metric = ..., arm = ..., other = ... })")
        comparisons = []
        for entry in compare:
            if set(entry) - set(COMPARISON_KEYS) or "metric" not in entry:
                raise InputError(at, f"a comparison takes a metric and the keys {', '.join(COMPARISON_KEYS)}, "
                                     f"got {entry!r}")
            if entry["metric"] not in METRIC_BY_KEY:
                raise InputError(at, f"no metric {entry['metric']!r} (`mammoseg compare --help` lists them)")
            comparison = Comparison(**entry)
            unknown = [n for n in (comparison.arm, comparison.other) if n and n not in arms]
            if unknown or not (comparison.against or (comparison.arm and comparison.other)):
                raise InputError(at, f"a comparison names two of the experiment's arms ({', '.join(arms)}), or a "
                                     f"metric against another of the same runs; got {entry!r}")
            comparisons.append(comparison)
        timed = table.get("timed", False) is True
        claims.append(Claim(key, table["statement"], tuple(comparisons),
                            str(table.get("exploratory", SHARED_CLOCK if timed else "")), timed))
    return tuple(claims)


def claims_apply(arms: Sequence[Arm], claims: Sequence[Claim] = CLAIMS) -> bool:
    """Whether the experiment holds every arm of some confirmatory claim that names arms: the claims are then
    the report's confirmatory family."""
    names = {a.name for a in arms}
    return any(claim.arms and not claim.exploratory and set(claim.arms) <= names for claim in claims)


def settle(arms: Sequence[Arm], evidence: Evidence | None = None, claims: Sequence[Claim] = CLAIMS) -> list[Settled]:
    """Every claim with its comparisons and its answer, Holm-corrected over the confirmatory claims. With
    `evidence`, claim (b)'s at-initialisation comparisons use its rebuilt networks, and a timed claim whose
    every pair was benchmarked side by side becomes confirmatory on that benchmark."""
    evidence = evidence or Evidence()
    by_name = {a.name: a for a in arms}
    settled = []
    for claim in claims:
        absent = tuple(n for n in claim.arms if n not in by_name)
        if absent:
            settled.append(Settled(claim, [], absent))
            continue
        if claim.timed and all((c.arm, c.other) in evidence.speed for c in claim.comparisons):
            claim = replace(claim, exploratory="")
            outcomes = [_timed(c, evidence) for c in claim.comparisons]
        else:
            outcomes = [_compare(c, by_name, evidence) for c in claim.comparisons]
        settled.append(Settled(claim, outcomes, (), *claim_test(outcomes)))
    family = [s for s in settled if s.confirmatory]
    for answer, adjusted in zip(family, stats.holm([s.p_value for s in family])):
        answer.adjusted = adjusted
    return settled
