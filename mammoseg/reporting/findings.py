"""The article's claims as a report section: one sentence per claim, the table of the comparisons that
could be made, and the article's figures remade."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mammoseg.metrics.declaration import SOURCE_CONFOUND
from mammoseg.reporting import figures
from mammoseg.reporting.aggregate import ALPHA, Arm
from mammoseg.reporting.claims import CLAIMS, EQUIVALENT, OPEN, Claim, Settled, settle
from mammoseg.reporting.evidence import Evidence
from mammoseg.reporting.document import Block, Bullets, Figure, Paragraph, Section, Table
from mammoseg.reporting.registry import METRIC_BY_KEY
from mammoseg.reporting.report_figures import shared_examples
from mammoseg.reporting.verdict import fmt, fmt_interval, fmt_p

ARTICLE_FIGURES: tuple[tuple[int, str, str, bool], ...] = (
    (1, "fcn_skips", "hard", True), (2, "fcn_skips", "hard", False), (3, "fcn_bottleneck", "hard", False),
    (4, "fcn_resize_mid", "soft", True), (5, "fcn_resize_mid", "soft", False),
    (6, "dilated_transpose", "soft", True), (7, "dilated_transpose", "soft", False),
    (8, "dilated_resize", "soft", True), (9, "dilated_resize", "soft", False),
)
"""The article's Figures 1-9: (number, arm, output shown, image with an abnormality)."""

NOTE = ("Each comparison: the two sides' means over runs with their 95% Student-t intervals; the difference "
        "(arm − other; soft − hard within each run) with its 95% interval, per image with the runs crossed for a "
        "mean over images, paired by seed where the arms share their seeds; p: two-sided, of no difference; "
        "p ≈: two one-sided tests of a difference inside the metric's declared margin ±δ. A claim holds only if "
        "all its comparisons do; its p-value is Holm-adjusted over the claims tested, the report's one "
        "confirmatory family. The last column reads each comparison alone at 5%, unadjusted: a description. "
        f"‡ On normal images: {SOURCE_CONFOUND}.")


def _p_is(p: float) -> str:
    """'= 0.012' or '< 0.001', to follow a p."""
    text = fmt_p(p)
    return text if text.startswith("<") else f"= {text}"


def _units(seeds: float, images: float) -> str:
    """'about N seeds per arm (these images) or M images (these seeds)', saying where one unit alone cannot."""
    def one(value: float, unit: str, fixed: str) -> str:
        return f"more {unit} alone would not do" if math.isinf(value) else f"about {int(value)} {unit} ({fixed})"
    parts = [one(seeds, "seeds per arm", "these images")]
    if not math.isnan(images):
        parts.append(one(images, "test images", "these seeds"))
    return " or ".join(parts)


def _sentence(answer: Settled, family: int) -> str:
    claim = answer.claim
    if answer.absent:
        return (f"({claim.key}) Not tested: needs the arms {', '.join(claim.arms)} "
                f"({', '.join(answer.absent)} not in this experiment).")
    missing = sorted({o.missing for o in answer.outcomes if o.missing})
    if missing:
        return f"({claim.key}) Not settled: {claim.statement} (not compared: {'; '.join(missing)})."
    if claim.exploratory:
        reading = answer.test if answer.p_value < ALPHA else OPEN
        return (f"({claim.key}) Exploratory, {reading} at an unadjusted p {_p_is(answer.p_value)}: "
                f"{claim.statement} (outside the confirmatory family: {claim.exploratory}).")
    status = answer.status
    held = sum(o.reading() in ("as stated", EQUIVALENT) and o.as_stated for o in answer.outcomes)
    detail = (f"{held} of {len(answer.outcomes)} comparisons settle as stated alone; Holm p "
              f"{_p_is(answer.adjusted)} over {family} claims")
    deciding = answer.deciding
    if status != OPEN and deciding is not None:
        detail += f"; settled by {deciding.comparison.label}"
    if status == OPEN:
        seeds, images = answer.needed()
        if not math.isnan(seeds):
            detail += f"; a settled answer would need {_units(seeds, images)}"
        return f"({claim.key}) {status.capitalize()}: {claim.statement} ({detail})."
    return f"**({claim.key}) {status.capitalize()}**: {claim.statement} ({detail})."


def _rows(settled: Sequence[Settled]) -> tuple[list[tuple[str, ...]], list[tuple[bool, ...]]]:
    rows, emphasis = [], []
    for answer in settled:
        for o in answer.outcomes:
            metric = METRIC_BY_KEY[o.comparison.metric]
            margin = f"±{fmt(metric, o.comparison.margin)}" if math.isfinite(o.comparison.margin) else "no δ"
            reading = o.reading()
            on_normals = " ‡" if metric.subset == "normals" else ""
            rows.append((f"({answer.claim.key})", o.comparison.label + o.basis + on_normals, fmt_interval(metric, o.side),
                         fmt_interval(metric, o.other_side), fmt_interval(metric, o.difference),
                         fmt_p(o.difference.p_value), f"{fmt_p(o.equivalence_p)} ({margin})", reading))
            emphasis.append((False,) * 7 + (not reading.startswith("not"),))
    return rows, emphasis


def claims_section(arms: Sequence[Arm], evidence: Evidence | None = None,
                   claims: Sequence[Claim] = CLAIMS) -> Section | None:
    """The claims as a report section: one line per claim (one naming the arms it needs where they are not in
    the experiment), the table of the comparisons made, and the article's figures remade; None when the
    experiment holds no claim's arms. `evidence`: what the experiment gathered beside its runs (`settle`);
    `claims`: the experiment's own, where it declares them, else the article's."""
    names = {a.name for a in arms}
    if not any(set(claim.arms) <= names for claim in claims if claim.arms):
        return None
    settled = settle(arms, evidence, claims)
    family = sum(math.isfinite(s.adjusted) for s in settled if s.confirmatory)
    rows, emphasis = _rows(settled)
    blocks: list[Block] = [
        Bullets(tuple(_sentence(answer, family) for answer in settled), "verdict"),
        Paragraph(NOTE),
        Table(("claim", "comparison", "arm", "other", "difference", "p", "p ≈ (margin)", "alone at 5%"),
              tuple(rows), tuple(emphasis), "paired")]
    grid = article_figure(arms)
    if grid is not None:
        blocks.append(Figure("article_figures", "The article's Figures 1-9 remade from the first seed of each arm "
                                                "on one test image with and one without an abnormality: hard "
                                                "(P > 0.5) where the article showed the hard max, else P(abnormal).",
                             grid))
    return Section("The article's claims" if claims is CLAIMS else "The experiment's claims", tuple(blocks))
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
