"""Results by properties of the images that their dataset's manifest records.

Lesions found at the operating point by abnormality class (mass, calcification, ...), on whole mammograms:
what the image size can show (a mass at 256 px) and what it cannot (a calcification of a pixel or less).

Claim (a)'s false-positive measures by mini-MIAS's background tissue (F fatty, G fatty-glandular, D dense).
"False positives follow bright tissue" predicts that they grow with density, and, if one design follows it
more than another, that the difference between the designs grows with density too: an arm × density interaction. Per stratum, each arm's mean with its
interval over seeds, and each arm − the baseline with its interval (per image, seeds crossed, as every
comparison); the interaction is tested on the per-image differences (mean over seeds) across strata
(Kruskal–Wallis: no assumption on the shape of false-positive counts). All exploratory: the strata split
the images the claims were settled on."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from mammoseg.core.conventions import KINDS
from mammoseg.core.errors import MammosegError
from mammoseg.dataset.layouts.mias import TISSUES
from mammoseg.dataset.pipeline import read_manifest
from mammoseg.evaluation.detections import detections_from_arrays
from mammoseg.metrics.stats import seed_interval
from mammoseg.reporting.aggregate import Arm, compare_arms, image_differences, images_in_subset, on_images
from mammoseg.reporting.claims import FOLLOWS_BRIGHT_TISSUE
from mammoseg.reporting.document import Paragraph, Section, Table
from mammoseg.reporting.registry import METRIC_BY_KEY, Metric
from mammoseg.reporting.verdict import fmt_interval, fmt_p
from mammoseg.runs.folds import OP_THRESHOLD, operating_threshold
from mammoseg.runs.rundir import Run

logger = logging.getLogger("mammoseg.report")

STRATUM_COLUMN = "tissue"  # its codes are the mini-MIAS layout's TISSUES
CLASS_COLUMN = "abnormality_type"
WHOLE = KINDS[0]  # a whole mammogram: its lesions counted once, not again in its tiles
MIN_IMAGES = 2
"""Images a stratum needs in a metric's subset to be shown."""


def image_records(runs: Sequence[Run], columns: Sequence[str] = (STRATUM_COLUMN, CLASS_COLUMN)) -> dict[str, dict[str, str]]:
    """column -> (example_id -> the manifest's value), from the manifests of the datasets the runs were
    evaluated on (their own, or the external one), each read once; a column no manifest records, or whose
    manifests are gone, maps to an empty dict."""
    records: dict[str, dict[str, str]] = {column: {} for column in columns}
    for folder in sorted({_dataset(run) for run in runs} - {None}):
        try:
            manifest = read_manifest(folder)
        except MammosegError as exc:
            logger.info("no strata from %s: %s", folder, exc)
            continue
        for column in columns:
            if column in manifest.columns:
                records[column].update({k: v for k, v in zip(manifest["example_id"], manifest[column].astype(str))
                                        if v and (column != STRATUM_COLUMN or v in TISSUES)})
    return records


def _dataset(run: Run) -> str | None:
    external = run.metrics.get("dataset")
    if isinstance(external, str):
        return external
    own = run.config.get("dataset")
    return own.get("path") if isinstance(own, dict) and isinstance(own.get("path"), str) else None


def strata_section(arms: Sequence[Arm], base: Arm | None, strata: dict[str, str]) -> Section | None:
    """One table per measure of claim (a): each arm per stratum, then each arm − `base` per stratum and the
    interaction p-value. None when the images carry no stratum."""
    if not strata or not arms:
        return None
    tables = [t for key in FOLLOWS_BRIGHT_TISSUE if (t := _table(arms, base, strata, key)) is not None]
    if not tables:
        return None
    note = Paragraph(
        "Claim (a)'s measures by background tissue (F fatty, G fatty-glandular, D dense; n: images in the measure's "
        "subset): each arm's mean [95% interval over seeds], and each arm − " + (base.name if base else "the baseline")
        + " [95% interval, per image with the seeds crossed]. p (arm × tissue): Kruskal–Wallis test that the "
        "per-image differences (mean over seeds) are alike in every stratum; a small p means the designs differ "
        "more on some tissue than on another. Exploratory: no claim is settled here.")
    return Section("By background tissue", (note, *tables))


def _table(arms: Sequence[Arm], base: Arm | None, strata: dict[str, str], key: str) -> Section | None:
    metric = METRIC_BY_KEY[key]
    in_subset = images_in_subset(arms, metric)
    groups = {}
    for code in TISSUES:
        ids = [i for i in in_subset if strata.get(i) == code]
        if len(ids) >= MIN_IMAGES:
            groups[code] = ids
    if not groups:
        return None
    header = ["Arm", *(f"{code} (n={len(ids)})" for code, ids in groups.items())]
    compared = base is not None and any(a is not base for a in arms)
    if compared:
        header += [f"− {base.name}: {code}" for code in groups] + ["p (arm × tissue)"]
    rows = []
    for arm in arms:
        row = [arm.name, *(fmt_interval(metric, on_images(arm, metric, ids)) for ids in groups.values())]
        if compared:
            if arm is base:
                row += [""] * (len(groups) + 1)
            else:
                row += [fmt_interval(metric, compare_arms(arm, base, metric, ids)) for ids in groups.values()]
                row.append(fmt_p(_interaction(arm, base, metric, groups)))
        rows.append(tuple(row))
    table = Table(tuple(header), tuple(rows), tuple((False,) * len(header) for _ in rows))
    return Section(metric.label, (table,), level=3)


def _interaction(arm: Arm, base: Arm, metric: Metric, groups: dict[str, list[str]]) -> float:
    """Kruskal–Wallis p over the strata of the per-image differences arm − base; NaN with fewer than two
    strata of two images, or when every difference is the same."""
    from scipy.stats import kruskal

    samples = [d[np.isfinite(d)] for d in (image_differences(arm, base, metric, ids) for ids in groups.values())]
    samples = [s for s in samples if s.size >= MIN_IMAGES]
    if len(samples) < 2 or np.ptp(np.concatenate(samples)) == 0:
        return math.nan
    return float(kruskal(*samples).pvalue)


def lesions_section(arms: Sequence[Arm], classes: dict[str, str]) -> Section | None:
    """Lesion sensitivity at each run's operating point by the abnormality class of whole mammograms (an image
    of several classes is its own class, e.g. calc+mass), mean [interval over seeds]; None with one class or
    none, or without the runs' candidates."""
    found = {arm.name: _found_by_class(arm, classes) for arm in arms}
    names = sorted({c for per_run in found.values() for run in per_run for c in run})
    if len(names) < 2:
        return None
    lesions = {c: max(run[c][1] for per_run in found.values() for run in per_run if c in run) for c in names}
    metric = METRIC_BY_KEY["op_sensitivity"]
    header = ("Arm", *(f"{c} (lesions={lesions[c]})" for c in names))
    rows = tuple((arm.name, *(fmt_interval(metric, seed_interval(
        np.array([run[c][0] / run[c][1] if c in run else math.nan for run in found[arm.name]]), metric.bounds))
        for c in names)) for arm in arms)
    note = Paragraph("Lesions found at each run's operating point on whole mammograms, by the class of abnormality "
                     "the dataset records: mean [95% interval over seeds]. Exploratory.")
    return Section("Lesions by abnormality class", (note, Table(header, rows, tuple((False,) * len(header)
                                                                                      for _ in rows))))


def _found_by_class(arm: Arm, classes: dict[str, str]) -> list[dict[str, tuple[int, int]]]:
    """Per counted run: class -> (lesions found at its operating point, lesions), whole mammograms only."""
    out = []
    for run in arm.counted:
        if run.detections is None:
            continue
        images = detections_from_arrays(run.detections)
        thresholds = run.detections.get(OP_THRESHOLD, np.full(len(images), operating_threshold(run.metrics)))
        tally: dict[str, list[int]] = {}
        for example, kind, image, threshold in zip(run.per_image["example_id"], run.per_image["kind"], images,
                                                   thresholds):
            if kind == WHOLE and image.n_lesions and example in classes and math.isfinite(threshold):
                counts = tally.setdefault(classes[example], [0, 0])
                counts[0] += image.lesions_found(threshold)
                counts[1] += image.n_lesions
        out.append({c: (f, n) for c, (f, n) in tally.items()})
    return out
