"""The article's four claims, each settled or left open by comparisons declared before any run.

A claim is a handful of comparisons between arms (or between the soft and the hard map of the same
runs). Each comparison is a Student-t difference over the runs (`stats.difference`; within-run pairs
for soft against hard, `stats.paired`), and Holm's correction runs over every comparison of every
claim, so the chance that any comparison is claimed falsely stays at 5%. A claim "holds" when every
one of its comparisons is significant in the direction the article states, "does not hold" when one
is significant in the opposite direction, and is "not settled at this size" otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mammoseg.metrics import stats
from mammoseg.metrics.declaration import SOURCE_CONFOUND
from mammoseg.metrics.stats import NAN_INTERVAL, Interval
from mammoseg.reporting import figures
from mammoseg.reporting.aggregate import ALPHA, Arm
from mammoseg.reporting.document import Block, Bullets, Figure, Paragraph, Section, Table
from mammoseg.reporting.registry import METRIC_BY_KEY
from mammoseg.reporting.report_figures import shared_examples
from mammoseg.reporting.verdict import fmt_interval, fmt_p

HOLDS, FAILS, OPEN = "holds", "does not hold", "not settled at this size"

ARTICLE_FIGURES: tuple[tuple[int, str, str, bool], ...] = (
    (1, "fcn_skips", "hard", True), (2, "fcn_skips", "hard", False), (3, "fcn_bottleneck", "hard", False),
    (4, "fcn_resize_mid", "soft", True), (5, "fcn_resize_mid", "soft", False),
    (6, "dilated_transpose", "soft", True), (7, "dilated_transpose", "soft", False),
    (8, "dilated_resize", "soft", True), (9, "dilated_resize", "soft", False),
)
"""The article's Figures 1-9: (number, arm, output shown, image with an abnormality)."""


@dataclass(frozen=True)
class Comparison:
    """`arm` is expected to be better than `other` on `metric`; with `against` (a metric of the same runs),
    `metric` is expected to be better than `against` in every arm that learned (soft against hard)."""

    metric: str
    arm: str = ""
    other: str = ""
    against: str = ""

    @property
    def label(self) -> str:
        if self.against:
            return f"{METRIC_BY_KEY[self.metric].label} vs {METRIC_BY_KEY[self.against].label}, every run"
        return f"{METRIC_BY_KEY[self.metric].label}: {self.arm} vs {self.other}"


@dataclass(frozen=True)
class Claim:
    key: str
    statement: str
    comparisons: tuple[Comparison, ...]


CONTROLS = ("dilated_transpose", "dilated_transpose-k3")
CLAIMS: tuple[Claim, ...] = (
    Claim("a", "false positives that follow bright tissue on images without an abnormality are fewer for "
               "dilated_resize than for fcn_skips, and the 1x1 bottleneck (fcn_bottleneck) does not remove them: "
               "at each run's operating point chosen on validation, fewer false-positive lesions per negative tile "
               "and per normal mammogram, and less false-positive area on the brightest third of the breast",
          tuple(Comparison(m, "dilated_resize", o) for o in ("fcn_skips", "fcn_bottleneck")
                for m in ("neg_fp_per_tile_op", "normal_fp_per_image_op", "neg_bright_fp_area_op"))),
    Claim("b", "the transpose-first control shows checkerboard artifacts at initialisation and after training, "
               "and dilated_resize does not, inside the decoder and at the output",
          tuple(Comparison(m, "dilated_resize", c) for c in CONTROLS
                for m in ("decoder_init", "decoder_trained", "output_upsampling_init", "output_upsampling_trained"))),
    Claim("c", "the resize variants train faster per epoch",
          (Comparison("train_img_per_s", "fcn_resize_mid", "fcn_skips"),
           Comparison("train_img_per_s", "dilated_resize", "dilated_transpose"))),
    Claim("d", "soft probabilities are more useful than hard predictions: at the hard map's false positives per "
               "image they find more lesions, and once the loss weight's prior is taken off (margin − ln w) they "
               "are better calibrated (ECE and Brier score)",
          (Comparison("soft_sens_at_hard_fp", against="hard_sensitivity"),
           Comparison("ece_prior", against="hard_ece"), Comparison("brier_prior", against="hard_brier"))),
)


@dataclass
class Outcome:
    """One comparison's numbers: the two sides' means with their intervals over seeds, the difference
    (better side − other side on the metric's scale), its Holm-adjusted p-value and its result."""

    comparison: Comparison
    side: Interval = NAN_INTERVAL
    other_side: Interval = NAN_INTERVAL
    difference: Interval = NAN_INTERVAL
    adjusted: float = math.nan
    missing: str = ""

    @property
    def expected_sign(self) -> float:
        return 1.0 if METRIC_BY_KEY[self.comparison.metric].better == "higher" else -1.0

    @property
    def result(self) -> str:
        if self.missing or not self.adjusted < ALPHA:
            return OPEN
        return HOLDS if self.difference.estimate * self.expected_sign > 0 else FAILS


def _compare(comparison: Comparison, arms: dict[str, Arm]) -> Outcome:
    metric = METRIC_BY_KEY[comparison.metric]
    if comparison.against:
        learned = [a for a in arms.values() if a.learned]
        if not learned:
            return Outcome(comparison, missing="no arm learned")
        soft = np.concatenate([a.cells[comparison.metric].per_run for a in learned])
        hard = np.concatenate([a.cells[comparison.against].per_run for a in learned])
        return Outcome(comparison, stats.seed_interval(soft, metric.bounds), stats.seed_interval(hard, metric.bounds),
                       stats.paired(soft - hard))
    absent = [n for n in (comparison.arm, comparison.other) if n not in arms]
    if absent:
        return Outcome(comparison, missing=f"no {' or '.join(absent)} arm")
    arm, other = arms[comparison.arm], arms[comparison.other]
    failed = [a.name for a in (arm, other) if not a.learned]
    side, other_side = arm.cells[comparison.metric], other.cells[comparison.metric]
    outcome = Outcome(comparison, side.seed_interval, other_side.seed_interval,
                      stats.difference(side.per_run, other_side.per_run, metric.bounds))
    if failed:
        outcome.missing = f"{' and '.join(failed)} did not learn"
    return outcome


def settle(arms: Sequence[Arm]) -> list[tuple[Claim, str, list[Outcome]]]:
    """Every claim with its result and its comparisons, Holm-corrected over all of them."""
    by_name = {a.name: a for a in arms}
    outcomes = [[_compare(c, by_name) for c in claim.comparisons] for claim in CLAIMS]
    flat = [o for group in outcomes for o in group]
    p_values = [o.difference.p_value if not o.missing else math.nan for o in flat]
    for outcome, adjusted in zip(flat, stats.holm(p_values)):
        outcome.adjusted = adjusted
    settled = []
    for claim, group in zip(CLAIMS, outcomes):
        results = {o.result for o in group}
        status = FAILS if FAILS in results else HOLDS if results == {HOLDS} else OPEN
        settled.append((claim, status, group))
    return settled


def _sentence(claim: Claim, status: str, group: list[Outcome]) -> str:
    held = sum(o.result == HOLDS for o in group)
    against = [o.comparison.label for o in group if o.result == FAILS]
    missing = sorted({o.missing for o in group if o.missing})
    detail = f"{held} of {len(group)} comparisons support it"
    if against:
        detail += f"; the data say the opposite on {'; '.join(against)}"
    if missing:
        detail += f"; not compared: {'; '.join(missing)}"
    return f"**({claim.key}) {status.capitalize()}**: {claim.statement} ({detail})."


def claims_section(arms: Sequence[Arm]) -> Section | None:
    """The claims as a report section: one sentence per claim, the table of their comparisons, and the
    article's figures remade; None when no arm a claim names was compared."""
    named = {c.arm for claim in CLAIMS for c in claim.comparisons} | set(CONTROLS)
    if not named & {a.name for a in arms}:
        return None
    settled = settle(arms)
    n = sum(1 for _, _, group in settled for o in group if math.isfinite(o.adjusted))
    note = (f"Each comparison: mean over runs with its 95% Student-t interval; the difference is the side the article "
            f"expects to be better minus the other (within-run pairs for soft against hard), with its p-value "
            f"Holm-adjusted over the {n} comparisons that could be made. A claim holds when all its comparisons do. "
            f"‡ On normal images: {SOURCE_CONFOUND}.")
    rows, emphasis = [], []
    for claim, _, group in settled:
        for o in group:
            metric = METRIC_BY_KEY[o.comparison.metric]
            on_normals = " ‡" if metric.subset == "normals" else ""
            rows.append((f"({claim.key})", o.comparison.label + on_normals, fmt_interval(metric, o.side),
                         fmt_interval(metric, o.other_side), fmt_interval(metric, o.difference),
                         fmt_p(o.adjusted) if math.isfinite(o.adjusted) else "–",
                         f"not compared ({o.missing})" if o.missing else o.result))
            emphasis.append((False,) * 6 + (o.result != OPEN,))
    blocks: list[Block] = [
        Bullets(tuple(_sentence(claim, status, group) for claim, status, group in settled), "verdict"),
        Paragraph(note),
        Table(("claim", "comparison", "expected better", "other", "difference", "Holm p", "result"),
              tuple(rows), tuple(emphasis), "paired")]
    grid = article_figure(arms)
    if grid is not None:
        blocks.append(Figure("article_figures", "The article's Figures 1-9 remade from the first seed of each arm "
                                                "on one test image with and one without an abnormality: hard "
                                                "(P > 0.5) where the article showed the hard max, else P(abnormal).",
                             grid))
    return Section("The article's claims", tuple(blocks))


def article_figure(arms: Sequence[Arm]) -> bytes | None:
    """The article's Figures 1-9 remade from the first seed of each arm, on one shared image with and one
    without an abnormality; None unless every arm the figures need is there."""
    needed = [a for a in arms if a.name in {arm for _, arm, _, _ in ARTICLE_FIGURES}]
    if len(needed) < len({arm for _, arm, _, _ in ARTICLE_FIGURES}):
        return None
    examples = shared_examples(needed, per_kind=1)
    positive = next((e for e in examples if np.asarray(e["mask"]).any()), None)
    negative = next((e for e in examples if not np.asarray(e["mask"]).any()), None)
    if positive is None or negative is None:
        return None
    rows = {arm: row for row, arm in enumerate(dict.fromkeys(arm for _, arm, _, _ in ARTICLE_FIGURES), start=1)}
    panels = []
    for number, arm, output, with_abnormality in ARTICLE_FIGURES:
        prob = (positive if with_abnormality else negative)["probs"][arm]
        shown = (prob > 0.5).astype(np.float32) if output == "hard" else prob
        panels.append((f"Fig. {number}: {arm}, {output}", shown, rows[arm], 0 if with_abnormality else 1))
    return figures.article_grid(panels, positive, negative)
