"""The report as one document: a small tree of blocks built once from the arms, which the Markdown
and HTML renderers each write out. Text may hold **bold** spans, the one inline markup (a claim)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Union

from mammoseg.evaluation.evaluate import GATE_RULE
from mammoseg.core.conventions import AUTHOR_PIXEL_DIVISOR
from mammoseg.metrics.declaration import SOURCE_CONFOUND
from mammoseg.metrics.detection import TARGET_SENSITIVITY
from mammoseg.reporting.aggregate import DEFAULT_BASELINE, Arm, claimed, run_learned, subset_mask
from mammoseg.reporting.registry import METRIC_BY_KEY, Metric, compared_keys, metrics
from mammoseg.reporting.verdict import Verdict, fmt, fmt_interval, fmt_p, rank_arms

TITLE = "Upsampling comparison"
FIGURE_DIR = "figures"
NORMALS_GROUP = "Normal images"
BESIDE_TABLES = {"froc": "Lesion detection"}
"""Figures shown under their metric group's results table rather than among the other figures."""


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of text."""

    text: str
    style: str = ""  # "glance": the answer, shown first and larger


@dataclass(frozen=True)
class Bullets:
    """A bulleted list, one sentence or note an item."""

    items: tuple[str, ...]
    style: str = ""  # "verdict" | "notes"


@dataclass(frozen=True)
class Table:
    """A table with a header row; `emphasis[r][c]` marks a cell that stands out (a lead, a claim)."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    emphasis: tuple[tuple[bool, ...], ...]
    style: str = ""  # "results" | "paired"


@dataclass(frozen=True)
class Figure:
    """A PNG with its caption: embedded in the HTML, written beside report.md and linked from it."""

    stem: str
    caption: str
    png: bytes = field(repr=False)

    @property
    def path(self) -> str:
        """Where the PNG is written, relative to the report."""
        return f"{FIGURE_DIR}/{self.stem}.png"


@dataclass(frozen=True)
class Details:
    """Blocks a reader may skip: folded under `summary` where the format can fold, shown inline otherwise."""

    summary: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Section:
    """A titled part of the document; sections nest (level 3 inside level 2)."""

    title: str
    blocks: tuple[Block, ...]
    level: int = 2


Block = Union[Paragraph, Bullets, Table, Figure, Details, Section]


@dataclass(frozen=True)
class Document:
    """The report: a title over a sequence of blocks."""

    title: str
    blocks: tuple[Block, ...]

    @property
    def figures(self) -> list[Figure]:
        """Every figure of the document, in order: the files written beside it."""
        return list(_figures(self.blocks))


def _figures(blocks: Sequence[Block]) -> Iterator[Figure]:
    for block in blocks:
        if isinstance(block, Figure):
            yield block
        elif isinstance(block, (Section, Details)):
            yield from _figures(block.blocks)


CONVENTIONS = [
    "**Dice per image**: Dice of the abnormal class computed on each image, then averaged (NaN where truth and "
    "prediction are both empty, left out of the mean: nnU-Net convention). Reported on the positive images (truth "
    "not empty), where it measures segmentation; negatives are judged by the false-positive measures.",
    "**Dice pooled**: one confusion matrix summed over the images, then Dice; large lesions weigh more. "
    "\"(all images)\" adds the negatives, so every false-positive pixel on them counts against it.",
    f"**Negative image**: an image whose truth mask is empty. It counts as a **false positive** when more than "
    f"S²/{AUTHOR_PIXEL_DIVISOR} of its pixels have P(abnormal) > 0.5 (the author's rule, kept as exploratory: 546 "
    f"pixels at 640×640, 0.13% of an image, at P > 0.5, an operating point that moves with the loss weight; the "
    f"rows at the operating point chosen on validation are the ones the claims use).",
    "**Normal image**: a whole mammogram without abnormality from another collection (`prepare --normals`), "
    "judged by the same rule in rows of its own and not counted among the negative images (tiles of CBIS-DDSM "
    "images away from every abnormality); the rows are left out when no arm saw a normal image.",
    "**Lesion detection**: each P map's candidates are the peaks of its logit margin (local maxima, a plateau one "
    "peak at its centre, none within side/32 of a stronger one), scored by their height; a candidate is a hit when "
    "its peak lies inside a lesion (a connected region of the truth mask, or its disc for circle annotations), each "
    "lesion counted once, and a false positive when it lies in none. FROC: sensitivity against mean false positives "
    "per image over every test image; CPM: mean sensitivity at 1/8 to 8 FP per image. The **operating point** of "
    f"each run is the highest threshold reaching the experiment's target lesion sensitivity on its validation "
    f"split: {TARGET_SENSITIVITY:.0%}, or the highest every run of the experiment reaches there if lower (the "
    "\"targets\" row), so every arm is compared at one validation sensitivity chosen without a test image; the "
    "rows \"at the operating point\" apply it to the test "
    "images: false-positive candidates per image, images flagged (peak at or above it), false-positive area, "
    "and where those pixels fall: on the brightest third of the breast by input intensity (⅓ by chance).",
    "**Prior-corrected calibration**: the loss weighs abnormal pixels w times, which multiplies the odds by w; ECE "
    "and Brier are also given on sigmoid(margin − ln w), the probability the softmax gives without the weighting. "
    "The hard map's calibration error and Brier score are both its pixel error rate.",
    "**Intervals**: 95% Student-t intervals over seeds. A design claim must hold for another training run, so the "
    "unit is the run: each run gives one number (its mean over the test images, or its pooled Dice), and an arm's "
    "interval is t over those numbers (df = seeds − 1), cut to the metric's range (the true value lies inside it, "
    "so cutting loses no coverage). Every run sees the same test images, so their difficulty is in "
    "every run alike: the intervals are about the designs on this test set. With one seed the seed variation "
    "cannot be estimated: the interval shown (marked †) is a bootstrap over that run's test images, which "
    "describes the run's precision and supports no claim. Calibrated by simulation (benchmarks/studies/calibration.py): "
    "where there is no difference, a claim 2.6-5.5% of the time at the nominal 5% by one number per run from 3 "
    "seeds (1.6-2.9% with 2), 3.3-6.2% per image with the runs crossed (lower only where every seed agrees on "
    "every image and few images are discordant). The ± is the standard deviation over seeds.",
    "**Differences between arms**: arm − other of the runs' means. A mean over images is compared per image on "
    "the images both were evaluated on (matched by example id), with seeds and images crossed (a multi-reader "
    "multi-case analysis, seeds as readers): a signal that no seed varies still gets an interval, and a 0/1 "
    "outcome's p-value is never below the exact sign test's over the discordant images. Other metrics use one "
    "number per run (Welch's two-sample t). Arms with the same seeds pair by seed (seed k gives "
    "every arm the same data order). Equivalence within a metric's declared margin ±δ: two one-sided tests.",
    "**Checkerboard scores**: kernel score = std/|mean| of the per-phase sums of a transposed kernel's taps "
    "(0 = a constant input cannot produce a checkerboard); phase-mean score = std of the 2×2 sub-grid means over "
    "the map's std, on the logit margin l1 − l0 (comparable before and after training: P(abnormal) saturates) "
    "and on P(abnormal) itself (what a reader sees); aliasing fraction = share of the map's AC spectral energy at "
    "the stride-2 aliasing bins.",
    "**Verdict rule**: a report has one confirmatory family. Where the experiment holds every arm of one of the "
    "article's claims, the claims are that family (each holds only if all its comparisons do; Holm's correction "
    "over the claims) and every other number is exploratory. Otherwise claims are made only on the experiment's "
    "primary metrics (by default false-positive rate on negative images, Dice per image, phase-mean checkerboard "
    "score of the trained P(abnormal); `primary_metrics` in the experiment config): a difference from the "
    "baseline is claimed when its p-value, Holm-adjusted over every primary metric of every compared arm, is "
    "below 0.05. Either way the chance of any false claim in the report stays at 5%. An exploratory lead (95% "
    "intervals over seeds that do not overlap) is something to check, not a claim. With one seed per arm "
    "nothing is claimed.",
    f"**Learning gate**: {GATE_RULE}. A run that fails it did not learn: it is shown, marked, and left out of every "
    "claim and every arm's numbers (an arm all of whose runs failed is shown with their numbers, never compared).",
]
DIFFERENCES_NOTE = ("Arm − baseline, difference of the runs' means with its 95% interval (per image with the runs "
                    "crossed for a mean over images, paired by seed where the arms share their seeds); for a primary "
                    "metric in the confirmatory family, the p-value Holm-adjusted over all primary comparisons "
                    "(bold: claimed, adjusted p < 0.05). Exploratory columns make no claim.")


def build_document(arms: list[Arm], base: Arm | None, split: str, primary: Sequence[str], verdict: Verdict,
                   figures: Sequence[Figure], claims: Section | None = None, more: Sequence[Section] = ()) -> Document:
    """The whole report: the answer first (the verdict, then the article's claims when they apply), then
    the tables (`more`: sections after the differences, such as results by stratum), figures, conventions,
    notes and runs."""
    intro = Paragraph(f"Arms: {', '.join(a.name for a in arms)}; baseline: {base.name if base else 'none'}; "
                      f"split: {split}.")
    beside = {BESIDE_TABLES[f.stem]: f for f in figures if f.stem in BESIDE_TABLES}
    sections = [_verdict_section(verdict), *([claims] if claims else []), _results_section(arms, beside)]
    if base is not None and len(arms) > 1:
        sections.append(_differences_section(arms, base, primary))
    sections += [*more, Section("Figures", tuple(f for f in figures if f.stem not in BESIDE_TABLES)),
                 Section("Conventions", (Bullets(tuple(CONVENTIONS)),)),
                 Section("Notes", (Bullets(tuple(_notes(arms, base, split)), "notes"),)),
                 Section("Runs", (Bullets(tuple(f"{a.name}: " + ", ".join(str(r.path) for r in a.runs)
                                                for a in arms)),))]
    return Document(TITLE, (intro, *sections))


def _verdict_section(verdict: Verdict) -> Section:
    """The at-a-glance answer, the findings, and the exploratory leads folded (things to check, not claims)."""
    blocks: list[Block] = [Paragraph(verdict.glance, "glance"), Bullets(verdict.findings, "verdict")]
    if verdict.exploratory:
        blocks.append(Details(f"Exploratory metrics: {len(verdict.exploratory)} lines, leads to check, not claims",
                              (Bullets(verdict.exploratory, "verdict"),)))
    return Section("Verdict", tuple(blocks))


def _results_section(arms: list[Arm], beside: dict[str, Figure]) -> Section:
    return Section("Results", tuple(Section(group, (_results_table(arms, metrics), *_beside(beside, group)), level=3)
                                    for group, metrics in _groups(arms)))


def _beside(figures: dict[str, Figure], group: str) -> tuple[Block, ...]:
    """What a group's table carries beside it: its figure, and on the normal images the source confound."""
    notes = (Paragraph(f"Every row here: {SOURCE_CONFOUND}."),) if group == NORMALS_GROUP else ()
    return notes + ((figures[group],) if group in figures else ())


def _results_table(arms: list[Arm], metrics: list[Metric]) -> Table:
    """Per arm: mean ± sd [interval] of each metric; the leader's cell stands out where one arm leads."""
    header = ["Arm", "Seeds"] + [m.label + (" ↑" if m.better == "higher" else " ↓") for m in metrics]
    winners = {}
    for metric in metrics:
        ranking = rank_arms(metric, arms)
        if ranking.status == "best":
            winners[metric.key] = ranking.leaders[0]
    rows, emphasis = [], []
    for arm in arms:
        row = [_arm_label(arm), _seed_count(arm)]
        for metric in metrics:
            cell = arm.cells[metric.key]
            text = fmt(metric, cell.mean)
            if math.isfinite(cell.sd):
                text += f" ± {fmt(metric, cell.sd)}"
            if metric.source != "exact" and cell.interval.defined:
                text += f" [{fmt(metric, cell.interval.low)}, {fmt(metric, cell.interval.high)}]"
                text += "†" if cell.over == "images" else ""
            row.append(text)
        rows.append(tuple(row))
        emphasis.append((False, False, *(winners.get(m.key) == arm.name for m in metrics)))
    return Table(tuple(header), tuple(rows), tuple(emphasis), "results")


def _arm_label(arm: Arm) -> str:
    return arm.name if arm.learned else f"{arm.name} (did not learn)"


def _seed_count(arm: Arm) -> str:
    """Runs behind the arm's numbers, and how many did not learn."""
    if arm.failed and arm.learned:
        return f"{len(arm.counted)} (+{len(arm.failed)} did not learn)"
    return str(len(arm.runs))


def _groups(arms: list[Arm]) -> list[tuple[str, list[Metric]]]:
    """Metric tables by group; the normal-image rows only when some arm was evaluated on normal images."""
    with_normals = any(subset_mask(arm.table, "normals").any() for arm in arms)
    groups: dict[str, list[Metric]] = {}
    for metric in metrics():
        if metric.subset != "normals" or with_normals:
            groups.setdefault(metric.group, []).append(metric)
    return list(groups.items())


def _weight_note(arms: list[Arm]) -> str:
    """Whether the arms were trained with one common positive weight or with the author's per-variant ones."""
    weights = {a.name: sorted({float(r.config["positive_weight"]) for r in a.runs
                               if isinstance(r.config.get("positive_weight"), (int, float))}) for a in arms}
    values = {w for ws in weights.values() for w in ws}
    if len(values) <= 1:
        return (f"Every arm was trained with one common loss weight of abnormal pixels (w = {values.pop():g})."
                if values else "The runs do not record their loss weight of abnormal pixels.")
    return ("The arms were trained with different loss weights of abnormal pixels (the author's per-variant weights: "
            + ", ".join(f"{n} w = {'/'.join(f'{w:g}' for w in ws)}" for n, ws in weights.items() if ws)
            + "): P > 0.5 means a calibrated posterior above 1/(1 + w), a different operating point in each arm. "
            "The operating point chosen on validation and the prior-corrected calibration compare them on equal "
            "terms; the rules at P > 0.5 do not.")


def _notes(arms: list[Arm], base: Arm | None, split: str) -> list[str]:
    notes = []
    if all(len(a.counted) == 1 for a in arms):
        notes.append("Every arm has a single seed: the spread over seeds is not estimated, so no claim about designs "
                     "is made (no ± and no interval for run-level numbers); the intervals marked † are over one run's "
                     "test images, descriptive only.")
    elif any(len(a.counted) == 1 for a in arms):
        notes.append("Intervals marked † belong to an arm with one seed: over that run's test images, descriptive "
                     "only; such an arm is in no claim.")
    elif any(len(a.counted) < 3 for a in arms):
        notes.append("Some arms have fewer than 3 seeds: their spread over seeds is poorly estimated and their "
                     "intervals are wide.")
    unchecked = [str(r.path) for a in arms for r in a.runs if run_learned(r) is None]
    if unchecked:
        notes.append("No learning gate in the evaluation of " + ", ".join(unchecked) + ": re-run `mammoseg evaluate` "
                     "to check that these runs learned; they are counted as if they did.")
    notes.append(_weight_note(arms))
    notes.append("PR-AUC, ROC-AUC and calibration error need every pixel's probability, which per_image.csv does not "
                 "hold: they are per-run values from metrics.json, summarised over seeds.")
    if base is None:
        notes.append(f"No baseline arm ({DEFAULT_BASELINE} absent and none given with --baseline): "
                     "differences are not computed and nothing is claimed.")
    n_images = {a.name: len(a.ids) for a in arms}
    notes.append(f"Split: {split}; images per arm: " + ", ".join(f"{k} {v}" for k, v in n_images.items()) + ".")
    return notes

def _differences_section(arms: list[Arm], base: Arm, primary: Sequence[str]) -> Section:
    """Per compared arm: difference [95% interval] per metric, with the Holm-adjusted p-value for a primary
    metric; other metrics are marked exploratory. A claimed difference stands out."""
    keys = compared_keys(primary)
    header = ["Arm"] + [METRIC_BY_KEY[k].label + (" (primary)" if k in primary else " (exploratory)") for k in keys]
    rows, emphasis = [], []
    for arm in arms:
        if arm is base:
            continue
        row = [_arm_label(arm)]
        for key in keys:
            text = fmt_interval(METRIC_BY_KEY[key], arm.paired[key])
            if key in primary and math.isfinite(arm.adjusted.get(key, math.nan)):
                text += f", p_Holm {fmt_p(arm.adjusted[key])}"
            row.append(text)
        rows.append(tuple(row))
        emphasis.append((False, *(claimed(arm, key) for key in keys)))
    table = Table(tuple(header), tuple(rows), tuple(emphasis), "paired")
    return Section(f"Differences against {base.name}", (Paragraph(DIFFERENCES_NOTE), table))
