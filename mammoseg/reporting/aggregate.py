"""The comparison report: which upsampling design wins, on what, and how sure we are.

Runs are grouped into arms (variant + transpose kernel); seeds are repeated runs of an arm. Every
number is shown as mean ± sd over seeds with a 95% Student-t interval over the runs, and arms are
compared with the baseline by the difference of their runs' means (`stats.difference`). A run that
did not learn (evaluate's learning gate) is shown but left out of every comparison. The verdict
claims a difference only on the experiment's primary metrics, with Holm's correction over all of
them and every arm, so the chance of any false claim stays at 5%; every other metric is exploratory.
With one seed per arm the seed variation is unknown and nothing about designs is claimed.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mammoseg.analysis import stats
from mammoseg.analysis.checkerboard import ALIASING_FREQUENCIES
from mammoseg.analysis.evaluate import GATE_KEY, GATE_RULE
from mammoseg.analysis.metrics import AUTHOR_PIXEL_DIVISOR, author_pixel_threshold
from mammoseg.analysis.runs import Run, flat_metrics, load_run, lookup
from mammoseg.analysis.stats import NAN_INTERVAL, POSITIVE, UNBOUNDED, UNIT, Bounds, Interval
from mammoseg.atomic import write_bytes, write_text
from mammoseg.errors import MammosegError

logger = logging.getLogger("mammoseg.report")

DEFAULT_BASELINE = "dilated_resize"
ARTICLE_ORDER = ("fcn_skips", "fcn_bottleneck", "fcn_resize_mid", "dilated_transpose", "dilated_resize")
ALPHA = 1.0 - stats.CONFIDENCE


# ---------------------------------------------------------------- metric definitions


@dataclass(frozen=True)
class Metric:
    """One reported number. `image` metrics come from per-image rows (one value per run from them);
    `run` metrics exist only per run; `exact` ones do not vary (no interval). `bounds` is the range the
    metric can take, which its intervals keep to."""

    key: str
    label: str
    group: str
    better: str  # "higher" | "lower"
    source: str  # "image" | "run" | "exact"
    fmt: str = "{:.3f}"
    columns: tuple[str, ...] = ()  # per-image columns an image metric averages (or tp/fp/fn when pooled)
    pooled: str = ""  # "dice" | "iou": one confusion matrix over the images instead of a mean
    subset: str = "all"  # "all" | "positives" (truth not empty) | "negatives" (truth empty) | "normals" (kind normal)
    run_value: Callable[[Run], float] | None = None
    bounds: Bounds = UNBOUNDED


def _predicted_positive(table: pd.DataFrame, image_size: int | None) -> np.ndarray:
    """The article's image-level call: more than S²/750 pixels above 0.5 (from evaluation when it says)."""
    if "predicted_positive" in table.columns:
        return table["predicted_positive"].to_numpy(float)
    if image_size is None:
        return np.full(len(table), np.nan)
    return ((table["tp"] + table["fp"]) > author_pixel_threshold(image_size, image_size)).to_numpy(float)


def _number(value: object, scale: float = 1.0) -> float:
    """A JSON value as a float; null, missing or non-numeric values are NaN (not measured)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value) / scale


def _kernel_init(run: Run) -> float:
    """Worst transposed layer's kernel phase imbalance at initialisation (0 = no checkerboard possible)."""
    scores = [_number(v) for v in (run.checkerboard_init.get("kernel") or {}).values()]
    scores = [v for v in scores if not math.isnan(v)]
    return max(scores) if scores else math.nan


def _run_metric(*candidates: str) -> Callable[[Run], float]:
    return lambda run: lookup(flat_metrics(run.metrics), *candidates)


METRICS: tuple[Metric, ...] = (
    Metric("dice_per_image", "Dice per image (positives)", "Segmentation", "higher", "image", columns=("dice",),
           subset="positives", bounds=UNIT),
    Metric("dice_pooled", "Dice pooled (positives)", "Segmentation", "higher", "image",
           columns=("tp", "fp", "fn"), pooled="dice", subset="positives", bounds=UNIT),
    Metric("iou_per_image", "IoU per image (positives)", "Segmentation", "higher", "image", columns=("iou",),
           subset="positives", bounds=UNIT),
    Metric("iou_pooled", "IoU pooled (positives)", "Segmentation", "higher", "image",
           columns=("tp", "fp", "fn"), pooled="iou", subset="positives", bounds=UNIT),
    Metric("dice_pooled_all", "Dice pooled (all images)", "Segmentation", "higher", "image",
           columns=("tp", "fp", "fn"), pooled="dice", bounds=UNIT),
    Metric("neg_fp_rate", "FP rate on negative images", "Negative images", "lower", "image",
           columns=("predicted_positive",), subset="negatives", bounds=UNIT),
    Metric("neg_mean_prob", "Mean P(abnormal) on negatives", "Negative images", "lower", "image",
           columns=("mean_prob",), subset="negatives", bounds=UNIT),
    Metric("neg_max_prob", "Max P(abnormal) on negatives", "Negative images", "lower", "image",
           columns=("max_prob",), subset="negatives", bounds=UNIT),
    Metric("neg_frac_above_05", "Pixels > 0.5 on negatives", "Negative images", "lower", "image", "{:.4f}",
           columns=("frac_above_05",), subset="negatives", bounds=UNIT),
    Metric("normal_fp_rate", "FP rate on normal images", "Normal images", "lower", "image",
           columns=("predicted_positive",), subset="normals", bounds=UNIT),
    Metric("normal_mean_prob", "Mean P(abnormal) on normal images", "Normal images", "lower", "image",
           columns=("mean_prob",), subset="normals", bounds=UNIT),
    Metric("normal_max_prob", "Max P(abnormal) on normal images", "Normal images", "lower", "image",
           columns=("max_prob",), subset="normals", bounds=UNIT),
    Metric("pr_auc", "Pixel PR-AUC", "Soft outputs", "higher", "run",
           run_value=_run_metric("pixel_pr_auc", "pr_auc", "average_precision"), bounds=UNIT),
    Metric("roc_auc", "Pixel ROC-AUC", "Soft outputs", "higher", "run",
           run_value=_run_metric("pixel_roc_auc", "roc_auc"), bounds=UNIT),
    Metric("ece", "Calibration error (ECE)", "Soft outputs", "lower", "run", "{:.4f}",
           run_value=_run_metric("ece", "expected_calibration_error", "calibration_error"), bounds=UNIT),
    Metric("kernel_init", "Kernel score at init (worst layer)", "Checkerboard", "lower", "run",
           run_value=_kernel_init, bounds=UNIT),
    Metric("phase_mean_init", "Phase-mean of the logit margin at init", "Checkerboard", "lower", "run",
           run_value=lambda run: lookup(flat_metrics(run.checkerboard_init), "map.phase_mean", "phase_mean"),
           bounds=UNIT),
    Metric("phase_mean_margin_trained", "Phase-mean of the logit margin trained", "Checkerboard", "lower", "image",
           columns=("phase_mean_margin",), bounds=UNIT),
    Metric("phase_mean_trained", "Phase-mean of P(abnormal) trained", "Checkerboard", "lower", "image",
           columns=("phase_mean",), bounds=UNIT),
    Metric("aliasing_init", "Aliasing fraction at init", "Checkerboard", "lower", "run", "{:.4f}",
           run_value=lambda run: lookup(flat_metrics(run.checkerboard_init), "map.aliasing_fraction", "aliasing_fraction"),
           bounds=UNIT),
    Metric("aliasing_trained", "Aliasing fraction trained", "Checkerboard", "lower", "image", "{:.4f}",
           columns=("aliasing_fraction",), bounds=UNIT),
    Metric("params_m", "Parameters (M)", "Cost", "lower", "exact", "{:.2f}",
           run_value=lambda run: _number(run.config.get("params"), 1e6), bounds=POSITIVE),
    Metric("gflops", "GFLOPs / image", "Cost", "lower", "exact", "{:.2f}",
           run_value=lambda run: _number(run.config.get("flops"), 1e9), bounds=POSITIVE),
    Metric("sec_per_epoch", "Seconds / epoch", "Cost", "lower", "run", "{:.1f}",
           run_value=lambda run: _number(run.timing.get("mean_seconds_per_epoch")), bounds=POSITIVE),
    Metric("train_img_per_s", "Training images / s", "Cost", "higher", "run", "{:.1f}",
           run_value=lambda run: _number(run.timing.get("train_images_per_second")), bounds=POSITIVE),
    Metric("infer_img_per_s", "Inference images / s", "Cost", "higher", "run", "{:.1f}",
           run_value=_run_metric("inference.images_per_second", "images_per_second"), bounds=POSITIVE),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}
PAIRED_KEYS = ("dice_per_image", "dice_pooled", "dice_pooled_all", "neg_fp_rate", "neg_mean_prob",
               "phase_mean_margin_trained", "phase_mean_trained")
VERDICT_KEYS = ("dice_per_image", "dice_pooled", "dice_pooled_all", "neg_fp_rate", "neg_mean_prob", "pr_auc", "ece",
                "phase_mean_margin_trained", "phase_mean_trained", "kernel_init", "params_m", "gflops", "sec_per_epoch")
BAR_KEYS = ("dice_per_image", "dice_pooled", "neg_fp_rate", "neg_mean_prob", "pr_auc", "ece")


# ---------------------------------------------------------------- aggregation

DEFAULT_PRIMARY = ("neg_fp_rate", "dice_per_image", "phase_mean_trained")  # the article's three questions


def check_primary(keys: Sequence[str] | None) -> tuple[str, ...]:
    """The primary metrics an experiment names (DEFAULT_PRIMARY when it names none): known, varying metrics."""
    if keys is None:
        return DEFAULT_PRIMARY
    keys = tuple(keys)
    unknown = [k for k in keys if k not in METRIC_BY_KEY]
    if unknown:
        raise MammosegError(f"unknown primary metric {', '.join(map(repr, unknown))}; known: {', '.join(METRIC_BY_KEY)}")
    fixed = [k for k in keys if METRIC_BY_KEY[k].source == "exact"]
    if fixed:
        raise MammosegError(f"primary metric {', '.join(map(repr, fixed))} does not vary between seeds; "
                            "nothing to test")
    if not keys:
        raise MammosegError("primary_metrics is empty: name at least one metric")
    return keys


def run_learned(run: Run) -> bool | None:
    """The run's learning gate from its evaluation (None for an evaluation written before the gate)."""
    gate = run.metrics.get(GATE_KEY)
    return bool(gate["learned"]) if isinstance(gate, dict) and "learned" in gate else None


@dataclass
class Cell:
    """One arm's value of one metric: seed mean ± sd, the value of each run, and the interval shown:
    over seeds ("seeds"), over one run's test images ("images": descriptive only) or none ("exact")."""

    mean: float
    sd: float
    interval: Interval
    per_run: np.ndarray
    over: str

    @property
    def seed_interval(self) -> Interval:
        """The interval a comparison may rest on: never one over a single run's images."""
        return self.interval if self.over in ("seeds", "exact") else Interval(self.interval.estimate, math.nan, math.nan)


@dataclass
class Arm:
    name: str
    runs: list[Run]
    ids: list[str] = field(default_factory=list)
    table: dict[str, np.ndarray] = field(default_factory=dict)  # per-image column -> [runs counted, images]
    cells: dict[str, Cell] = field(default_factory=dict)
    paired: dict[str, Interval] = field(default_factory=dict)  # arm − baseline, per metric
    adjusted: dict[str, float] = field(default_factory=dict)  # Holm-adjusted p of each primary difference

    @property
    def variant(self) -> str:
        return self.runs[0].variant

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    @property
    def failed(self) -> list[Run]:
        """Runs the learning gate rejected."""
        return [r for r in self.runs if run_learned(r) is False]

    @property
    def learned(self) -> bool:
        return len(self.failed) < len(self.runs)

    @property
    def counted(self) -> list[Run]:
        """The runs its numbers come from: those that learned, or all of them when none did (shown, never compared)."""
        return [r for r in self.runs if run_learned(r) is not False] or self.runs


def _image_matrices(runs: list[Run]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Per-image columns as [runs, images] arrays over the union of example ids (NaN where a run lacks an image)."""
    frames = []
    for run in runs:
        frame = run.per_image.drop_duplicates("example_id").set_index("example_id")
        frame["predicted_positive"] = _predicted_positive(frame, run.image_size)
        frame["normal"] = (frame["kind"] == "normal").astype(float) if "kind" in frame.columns else 0.0
        frames.append(frame)
    ids = sorted(set().union(*(f.index for f in frames)))
    columns = set.intersection(*(set(c for c in f.columns if pd.api.types.is_numeric_dtype(f[c])) for f in frames))
    return ids, {c: np.stack([f[c].reindex(ids).to_numpy(float) for f in frames]) for c in sorted(columns)}


def _subset_mask(table: dict[str, np.ndarray], subset: str) -> np.ndarray:
    """Images of a subset: negatives have an empty truth mask (the article's failure is what a model says
    about them), positives a non-empty one; normals are the normal mammograms (kind normal), counted
    apart from the negatives; all keeps every image."""
    empty = np.all(np.nan_to_num(table["tp"] + table["fn"]) <= 0, axis=0)
    normal = np.any(np.nan_to_num(table["normal"]) > 0, axis=0) if "normal" in table else np.zeros_like(empty)
    return {"all": np.ones_like(empty), "negatives": empty & ~normal, "positives": ~empty, "normals": normal}[subset]


def _per_run_image_values(metric: Metric, table: dict[str, np.ndarray], keep: np.ndarray | None = None) -> np.ndarray:
    """An image metric of each run (rows of the [runs, images] columns), on the metric's subset of the images
    selected by `keep`."""
    n_runs = next(iter(table.values())).shape[0]
    if not set(metric.columns) <= set(table):
        return np.full(n_runs, np.nan)
    mask = _subset_mask(table, metric.subset) & (True if keep is None else keep)
    if not mask.any():
        return np.full(n_runs, np.nan)
    cols = [table[c][:, mask] for c in metric.columns]
    if metric.pooled:
        return np.array([stats.pooled_ci(*(c[r] for c in cols), metric.pooled, resample=False).estimate
                         for r in range(n_runs)])
    return np.array([stats.nanmean_ci(cols[0][r], resample=False).estimate for r in range(n_runs)])


def _one_run_image_interval(metric: Metric, table: dict[str, np.ndarray]) -> Interval:
    """A single run's image metric with its bootstrap interval over its test images (descriptive)."""
    if not set(metric.columns) <= set(table):
        return NAN_INTERVAL
    keep = _subset_mask(table, metric.subset)
    cols = [table[c][0, keep] for c in metric.columns]
    if cols[0].size == 0:
        return NAN_INTERVAL
    if metric.pooled:
        return stats.pooled_ci(*cols, metric.pooled)
    return stats.nanmean_ci(cols[0])


def _sd(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.size >= 2 else math.nan


def _arm_cells(arm: Arm) -> None:
    runs = arm.counted
    arm.ids, arm.table = _image_matrices(runs)
    for metric in METRICS:
        if metric.source == "image":
            per_run = _per_run_image_values(metric, arm.table)
        else:
            per_run = np.array([metric.run_value(run) for run in runs])  # type: ignore[misc]
        finite = per_run[np.isfinite(per_run)]
        mean = float(finite.mean()) if finite.size else math.nan
        if metric.source == "exact":
            interval, over = Interval(mean, mean, mean), "exact"
        elif metric.source == "image" and len(runs) == 1:
            interval, over = _one_run_image_interval(metric, arm.table), "images"
        else:
            interval, over = stats.seed_interval(per_run, metric.bounds), "seeds"
        arm.cells[metric.key] = Cell(mean, _sd(per_run), interval, per_run, over)


def _compared_keys(primary: Sequence[str]) -> tuple[str, ...]:
    """Metrics whose difference against the baseline is computed: the primary ones, then the usual paired set."""
    return tuple(dict.fromkeys([*primary, *PAIRED_KEYS]))


def _paired(arm: Arm, baseline: Arm, keys: Sequence[str]) -> None:
    """Differences arm − baseline of the runs' means, image metrics on the images both were evaluated on."""
    common = set(arm.ids) & set(baseline.ids)
    keep_a = np.array([i in common for i in arm.ids], dtype=bool)
    keep_b = np.array([i in common for i in baseline.ids], dtype=bool)
    for key in keys:
        metric = METRIC_BY_KEY[key]
        if not (arm.learned and baseline.learned):
            arm.paired[key] = NAN_INTERVAL
        elif metric.source == "image":
            arm.paired[key] = stats.difference(_per_run_image_values(metric, arm.table, keep_a),
                                               _per_run_image_values(metric, baseline.table, keep_b), metric.bounds)
        else:
            arm.paired[key] = stats.difference(arm.cells[key].per_run, baseline.cells[key].per_run, metric.bounds)


def _group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs by arm; an arm name shared by runs of different designs is split by design, so seeds
    of different networks are never pooled."""
    by_name: dict[str, list[Run]] = {}
    for run in runs:
        by_name.setdefault(run.arm, []).append(run)
    grouped: dict[str, list[Run]] = {}
    for name, members in by_name.items():
        designs = {r.design for r in members}
        for run in members:
            grouped.setdefault(name if len(designs) == 1 else f"{name} ({run.design})", []).append(run)
    return grouped


def _arm_sort_key(arm: Arm) -> tuple[int, int, str]:
    """The article's order of variants, then transpose kernel, then name."""
    run = arm.runs[0]
    order = ARTICLE_ORDER.index(run.variant) if run.variant in ARTICLE_ORDER else len(ARTICLE_ORDER)
    return (order, run.transpose_kernel, arm.name)


def build_arms(runs: list[Run], baseline: str | None,
               primary: Sequence[str] = DEFAULT_PRIMARY) -> tuple[list[Arm], Arm | None]:
    """Group runs into arms, compute every cell, the differences against the baseline, and Holm's adjusted
    p-values over the family of primary differences (every primary metric of every compared arm)."""
    arms = sorted((Arm(name, sorted(members, key=lambda r: (r.seed is None, r.seed or 0)))
                   for name, members in _group_runs(runs).items()), key=_arm_sort_key)
    for arm in arms:
        _arm_cells(arm)
    base = _pick_baseline(arms, baseline)
    if base is not None:
        family = [(arm, key) for arm in arms if arm is not base for key in primary]
        for arm in arms:
            if arm is not base:
                _paired(arm, base, _compared_keys(primary))
        for (arm, key), p in zip(family, stats.holm([arm.paired[key].p_value for arm, key in family])):
            arm.adjusted[key] = p
    return arms, base


def _pick_baseline(arms: list[Arm], baseline: str | None) -> Arm | None:
    """The arm named `baseline`, else the only arm of that variant; by default dilated_resize if present."""
    wanted = baseline or DEFAULT_BASELINE
    named = [a for a in arms if a.name == wanted] or [a for a in arms if a.variant == wanted]
    if len(named) == 1:
        return named[0]
    if baseline is None:
        return None
    if len(named) > 1:
        raise MammosegError(f"baseline {baseline!r} matches several arms ({', '.join(a.name for a in named)}); "
                            "give the arm name")
    raise MammosegError(f"baseline {baseline!r} is not among the compared arms: {', '.join(a.name for a in arms)}")


# ---------------------------------------------------------------- verdict


def _fmt(metric: Metric, value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    text = metric.fmt.format(value)
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _fmt_interval(metric: Metric, interval: Interval) -> str:
    if not interval.defined:
        return _fmt(metric, interval.estimate)
    if metric.source == "exact":
        return _fmt(metric, interval.estimate)
    return f"{_fmt(metric, interval.estimate)} [{_fmt(metric, interval.low)}, {_fmt(metric, interval.high)}]"


def _fmt_p(p: float) -> str:
    return "n/a" if not math.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


@dataclass(frozen=True)
class Ranking:
    """How one metric ranks the arms by their intervals over seeds: status "best" (one arm clears all
    others), "group" (several arms tie but clear all the rest), "tie", "unranked" (no interval over
    seeds to judge by) or "none" (fewer than two arms have the number). Exploratory: no correction for
    the many metrics ranked, so a lead is a lead, not a claim."""

    status: str
    leaders: tuple[str, ...]
    sentence: str


def rank(metric: Metric, intervals: dict[str, Interval]) -> Ranking:
    """Name a leader only if its interval over seeds clears every other arm's interval."""
    present = {name: iv for name, iv in intervals.items() if math.isfinite(iv.estimate)}
    head = f"Exploratory, {metric.label}"
    if len(present) < 2:
        return Ranking("none", (), f"{head}: fewer than two compared arms have this number; nothing to compare.")
    sign = -1.0 if metric.better == "higher" else 1.0
    order = sorted(present, key=lambda name: sign * present[name].estimate)
    best = order[0]
    if not all(iv.defined for iv in present.values()):
        return Ranking("unranked", (best,), (
            f"{head}: not ranked — an arm with one seed has no interval over seeds "
            f"(point leader {best}, {_fmt(metric, present[best].estimate)})."))
    tied = [name for name in order if present[name].overlaps(present[best])]
    direction = "higher" if metric.better == "higher" else "lower"
    if metric.source == "exact" and len(tied) > 1:
        return Ranking("tie", tuple(tied), f"{head}: {', '.join(tied)} are equal "
                                           f"({_fmt(metric, present[best].estimate)}).")
    if len(tied) == 1 and metric.source == "exact":
        return Ranking("best", (best,), (
            f"{head} ({direction} is better): {best}, {_fmt(metric, present[best].estimate)} vs next {order[1]} "
            f"{_fmt(metric, present[order[1]].estimate)} (a property of the design, the same for every seed)."))
    if len(tied) == 1:
        runner = order[1]
        return Ranking("best", (best,), (
            f"{head} ({direction} is better): {best} leads, {_fmt_interval(metric, present[best])} vs next "
            f"{runner} {_fmt_interval(metric, present[runner])}; the 95% intervals do not overlap "
            f"(a lead to check, not a claim)."))
    rest = [name for name in order if name not in tied]
    separated = bool(rest) and all(not present[r].overlaps(present[t]) for r in rest for t in tied)
    tail = f" All of them lead {', '.join(rest)} (a lead to check, not a claim)." if separated else ""
    return Ranking("group" if separated else "tie", tuple(tied), (
        f"{head} ({direction} is better): no clear difference between {', '.join(tied)} "
        f"(their 95% intervals overlap; point leader {best}).{tail}"))


def _rank_arms(metric: Metric, arms: list[Arm]) -> Ranking:
    """Ranking of the arms that learned, by their intervals over seeds."""
    return rank(metric, {arm.name: arm.cells[metric.key].seed_interval for arm in arms if arm.learned})


def _claimed(arm: Arm, key: str) -> bool:
    return arm.adjusted.get(key, math.nan) < ALPHA


def _claim_words(metric: Metric, arm: str, baseline: str, diff: Interval) -> str:
    """'A has a lower X than B' for a difference A − B."""
    return f"{arm} has a {'higher' if diff.estimate > 0 else 'lower'} {metric.label} than {baseline}"


def primary_sentence(metric: Metric, arm: Arm, baseline: Arm, n_family: int) -> str:
    """A primary comparison in words: a claim only when its Holm-adjusted p-value is below 5%."""
    diff = arm.paired.get(metric.key, NAN_INTERVAL)
    text = f"Primary, {metric.label}: {arm.name} − {baseline.name}: {_fmt_interval(metric, diff)}"
    if not (arm.learned and baseline.learned):
        return f"{text} — not compared (a run that did not learn is left out of every claim)."
    if not diff.defined:
        one_seed = min(len(arm.counted), len(baseline.counted)) < 2
        why = "one seed: seed variation unknown" if one_seed else "every run of both arms agrees: no spread to judge by"
        return f"{text} — not estimable ({why})."
    p, adjusted = _fmt_p(diff.p_value), _fmt_p(arm.adjusted.get(metric.key, math.nan))
    stated = f"p = {p}, Holm-adjusted over {n_family} primary comparisons {adjusted}"
    if _claimed(arm, metric.key):
        better = (diff.estimate > 0) == (metric.better == "higher")
        return (f"{text}, {stated} — **{_claim_words(metric, arm.name, baseline.name, diff)}** "
                f"({'better' if better else 'worse'}).")
    return f"{text}, {stated} — no claim."


def at_a_glance(arms: list[Arm], base: Arm | None, primary: Sequence[str]) -> str:
    """One sentence: what is claimed on the primary metrics, and why nothing is where nothing is."""
    failed = [a.name for a in arms if not a.learned]
    parts = []
    if failed:
        parts.append(f"{', '.join(failed)} did not learn and {'is' if len(failed) == 1 else 'are'} left out")
    labels = ", ".join(METRIC_BY_KEY[k].label for k in primary)
    learned = [a for a in arms if a.learned]
    if learned and all(len(a.counted) == 1 for a in learned):
        parts.append("one seed per arm: seed variation cannot be estimated, so no claim about designs is made")
    elif base is None:
        parts.append("no baseline arm: no comparison is made")
    elif not base.learned:
        parts.append(f"the baseline {base.name} did not learn: no comparison is made")
    else:
        claims = [_claim_words(METRIC_BY_KEY[k], a.name, base.name, a.paired[k])
                  for a in arms if a is not base for k in primary if _claimed(a, k)]
        parts += [f"**{c}**" for c in claims] or [f"no difference from {base.name} is claimed on the primary "
                                                  f"metrics ({labels})"]
    return "At a glance: " + "; ".join(parts) + "."


def verdict(arms: list[Arm], base: Arm | None, primary: Sequence[str] = DEFAULT_PRIMARY) -> list[str]:
    lines = [at_a_glance(arms, base, primary)]
    for arm in arms:
        if arm.failed:
            seeds = ", ".join(str(r.seed) for r in arm.failed)
            scope = "the whole arm is" if not arm.learned else "those runs are"
            lines.append(f"Did not learn: {arm.name} (seed {seeds}) — {scope} left out of every claim.")
    if any(arm.failed for arm in arms):
        lines.append(f"Learning gate: {GATE_RULE}.")
    if base is not None:
        family = sum(math.isfinite(a.paired.get(k, NAN_INTERVAL).p_value) for a in arms if a is not base for k in primary)
        for key in primary:
            lines += [primary_sentence(METRIC_BY_KEY[key], arm, base, family) for arm in arms if arm is not base]
    lines += [_rank_arms(METRIC_BY_KEY[key], arms).sentence for key in VERDICT_KEYS if key not in primary]
    return lines


# ---------------------------------------------------------------- figures


def _figures(arms: list[Arm]) -> list[tuple[str, str, bytes]]:
    """(file stem, caption, PNG) for every figure the data allows."""
    from mammoseg.reporting import figures

    out: list[tuple[str, str, bytes]] = []
    curves = {}
    for arm in arms:
        histories = [r.history for r in arm.counted if r.history is not None and "epoch" in r.history]
        if histories:
            cols = [c for c in ("loss", "val_loss") if all(c in h for h in histories)]
            curves[arm.name] = pd.concat(histories).groupby("epoch")[cols].mean().reset_index()
    if curves:
        out.append(("learning_curves", "Training and validation loss per epoch, mean over seeds.",
                    figures.learning_curves(curves)))
    bars = [(METRIC_BY_KEY[k].label, METRIC_BY_KEY[k].better, {a.name: a.cells[k].interval for a in arms})
            for k in BAR_KEYS]
    out.append(("metrics", "Main metrics per arm with 95% intervals: Student t over the arm's seeds; for an arm with "
                "one seed, a bootstrap over that run's test images (descriptive only). An arm that did not learn is "
                "shown with the numbers of its runs. The arrow in each title says which direction is better.",
                figures.metric_bars(bars)))
    examples = _shared_examples(arms)
    if examples:
        out.append(("examples", "The same positive and negative test images through every arm (first seed of each): "
                    "input, truth, soft P(abnormal), hard prediction (P > 0.5).", figures.example_grid(examples)))
    spectra: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for group in ("all", "negatives"):
        for arm in arms:
            found = [r.spectra[group] for r in arm.counted if group in r.spectra]
            if found:
                freqs = found[0][0]
                power = np.nanmean([np.interp(freqs, f, p) for f, p in found], axis=0)
                spectra.setdefault(group, {})[arm.name] = (freqs, power)
    if spectra:
        panels = " and over the negative images alone" if "negatives" in spectra else ""
        out.append(("spectra", "Radially averaged power spectrum of the output probability maps (mean over test images "
                    f"and seeds), over {'all images' if 'all' in spectra else ''}{panels}. Dashed and dotted lines: aliasing "
                    "frequencies of stride-2 upsampling (0.5 cycles/pixel on the axes, 0.707 on the diagonal) and of "
                    "stacked stride-2 transposes (0.25, 0.125).", figures.power_spectra(spectra, ALIASING_FREQUENCIES)))
    pairs = [(METRIC_BY_KEY[i].label.replace(" at init", ""), {a.name: (a.cells[i].interval, a.cells[t].interval) for a in arms})
             for i, t in (("phase_mean_init", "phase_mean_margin_trained"),)]
    if any(math.isfinite(v[0].estimate) or math.isfinite(v[1].estimate) for _, d in pairs for v in d.values()):
        out.append(("checkerboard", "Phase-mean checkerboard score of the output logit margin (l1 − l0, a monotone "
                    "map of P(abnormal) that does not saturate) before training (validation preview images, "
                    "checkerboard_init.json) and after training (test images, mean over images); lower is better, "
                    "0 = no phase pattern.", figures.checkerboard_bars(pairs)))
    return out


def _shared_examples(arms: list[Arm], per_kind: int = 2) -> list[dict]:
    """Up to `per_kind` positive and negative examples whose ids every arm's first run saved."""
    sources = []
    for arm in arms:
        run = next((r for r in arm.counted if r.examples is not None and "example_id" in r.examples), None)
        if run is None:
            return []
        ids = [str(i) for i in run.examples["example_id"]]  # type: ignore[index]
        sources.append((arm.name, run.examples, {i: n for n, i in enumerate(ids)}))
    common = [i for i in sources[0][2] if all(i in s[2] for s in sources)]
    first = sources[0][1]
    chosen: list[str] = []
    for want_positive in (True, False):
        picked = [i for i in common if bool(np.asarray(first["mask"][sources[0][2][i]]).any()) == want_positive]
        chosen += picked[:per_kind]
    examples = []
    for example_id in chosen:
        index = sources[0][2][example_id]
        examples.append({
            "example_id": example_id,
            "image": np.squeeze(first["image"][index]),
            "mask": np.squeeze(first["mask"][index]),
            "probs": {name: np.squeeze(data["prob"][pos[example_id]]).astype(np.float32) for name, data, pos in sources},
        })
    return examples


# ---------------------------------------------------------------- writing


CONVENTIONS = [
    "**Dice per image**: Dice of the abnormal class computed on each image, then averaged (NaN where truth and "
    "prediction are both empty, left out of the mean: nnU-Net convention). Reported on the positive images (truth "
    "not empty), where it measures segmentation; negatives are judged by the false-positive measures.",
    "**Dice pooled**: one confusion matrix summed over the images, then Dice; large lesions weigh more. "
    "\"(all images)\" adds the negatives, so every false-positive pixel on them counts against it.",
    f"**Negative image**: an image whose truth mask is empty. It counts as a **false positive** when more than "
    f"S²/{AUTHOR_PIXEL_DIVISOR} of its pixels have P(abnormal) > 0.5 (the article's rule; 546 pixels at 640×640).",
    "**Normal image**: a whole mammogram without abnormality from another collection (`prepare --normals`), "
    "judged by the same rule in rows of its own and not counted among the negative images (tiles of CBIS-DDSM "
    "images away from every abnormality); the rows are left out when no arm saw a normal image.",
    "**Intervals**: 95% Student-t intervals over seeds. A design claim must hold for another training run, so the "
    "unit is the run: each run gives one number (its mean over the test images, or its pooled Dice), and an arm's "
    "interval is t over those numbers (df = seeds − 1), cut to the metric's range (the true value lies inside it, "
    "so cutting loses no coverage). Every run sees the same test images, so their difficulty is in "
    "every run alike: the intervals are about the designs on this test set. With one seed the seed variation "
    "cannot be estimated: the interval shown (marked †) is a bootstrap over that run's test images, which "
    "describes the run's precision and supports no claim. Calibrated by simulation (benchmarks/calibration.py): "
    "a claim where there is no difference 3-7% of the time at the nominal 5%, for 2-5 seeds, seed variation from "
    "none to as large as the image noise, per-image and pooled metrics. The ± is the standard deviation over seeds.",
    "**Differences against the baseline**: arm − baseline of the runs' means (on the images both were evaluated on, "
    "matched by example id), with a two-sample Student t interval over the runs of both arms (pooled seed variance, "
    "df = seeds of both − 2) and its p-value; the interval is cut to the range a difference can take.",
    "**Checkerboard scores**: kernel score = std/|mean| of the per-phase sums of a transposed kernel's taps "
    "(0 = a constant input cannot produce a checkerboard); phase-mean score = std of the 2×2 sub-grid means over "
    "the map's std, on the logit margin l1 − l0 (comparable before and after training: P(abnormal) saturates) "
    "and on P(abnormal) itself (what a reader sees); aliasing fraction = share of the map's AC spectral energy at "
    "the stride-2 aliasing bins.",
    "**Verdict rule**: claims are made only on the experiment's primary metrics (by default the article's "
    "questions: false-positive rate on negative images, Dice per image, phase-mean checkerboard score of the "
    "trained P(abnormal); `primary_metrics` in the experiment config): a difference from the baseline is claimed "
    "when its p-value, Holm-adjusted over every primary metric of every compared arm, is below 0.05, so the chance "
    "of any false claim in the report stays at 5%. Every other metric is exploratory: a lead (95% intervals over "
    "seeds that do not overlap) is something to check, not a claim. With one seed per arm nothing is claimed.",
    f"**Learning gate**: {GATE_RULE}. A run that fails it did not learn: it is shown, marked, and left out of every "
    "claim and every arm's numbers (an arm all of whose runs failed is shown with their numbers, never compared).",
]


def _table_rows(arms: list[Arm], metrics: list[Metric]) -> tuple[list[str], list[list[str]], dict[str, str]]:
    header = ["Arm", "Seeds"] + [m.label + (" ↑" if m.better == "higher" else " ↓") for m in metrics]
    rows = []
    winners = {}
    for metric in metrics:
        ranking = _rank_arms(metric, arms)
        if ranking.status == "best":
            winners[metric.key] = ranking.leaders[0]
    for arm in arms:
        row = [_arm_label(arm), _seed_count(arm)]
        for metric in metrics:
            cell = arm.cells[metric.key]
            text = _fmt(metric, cell.mean)
            if math.isfinite(cell.sd):
                text += f" ± {_fmt(metric, cell.sd)}"
            if metric.source != "exact" and cell.interval.defined:
                text += f" [{_fmt(metric, cell.interval.low)}, {_fmt(metric, cell.interval.high)}]"
                text += "†" if cell.over == "images" else ""
            if winners.get(metric.key) == arm.name:
                text = f"**{text}**"
            row.append(text)
        rows.append(row)
    return header, rows, winners


def _arm_label(arm: Arm) -> str:
    return arm.name if arm.learned else f"{arm.name} (did not learn)"


def _seed_count(arm: Arm) -> str:
    """Runs behind the arm's numbers, and how many did not learn."""
    if arm.failed and arm.learned:
        return f"{len(arm.counted)} (+{len(arm.failed)} did not learn)"
    return str(len(arm.runs))


def _groups(arms: list[Arm]) -> list[tuple[str, list[Metric]]]:
    """Metric tables by group; the normal-image rows only when some arm was evaluated on normal images."""
    with_normals = any(_subset_mask(arm.table, "normals").any() for arm in arms)
    groups: dict[str, list[Metric]] = {}
    for metric in METRICS:
        if metric.subset != "normals" or with_normals:
            groups.setdefault(metric.group, []).append(metric)
    return list(groups.items())


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
    notes.append("PR-AUC, ROC-AUC and calibration error need every pixel's probability, which per_image.csv does not "
                 "hold: they are per-run values from metrics.json, summarised over seeds.")
    if base is None:
        notes.append(f"No baseline arm ({DEFAULT_BASELINE} absent and none given with --baseline): "
                     "differences are not computed and nothing is claimed.")
    n_images = {a.name: len(a.ids) for a in arms}
    notes.append(f"Split: {split}; images per arm: " + ", ".join(f"{k} {v}" for k, v in n_images.items()) + ".")
    return notes


def _difference_table(arms: list[Arm], base: Arm, primary: Sequence[str]) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and, per compared arm, (text, claimed) per metric: difference [95% interval], with the
    Holm-adjusted p-value for a primary metric; other metrics are marked exploratory."""
    keys = _compared_keys(primary)
    header = ["Arm"] + [METRIC_BY_KEY[k].label + (" (primary)" if k in primary else " (exploratory)") for k in keys]
    rows = []
    for arm in arms:
        if arm is base:
            continue
        row = [(_arm_label(arm), False)]
        for key in keys:
            text = _fmt_interval(METRIC_BY_KEY[key], arm.paired[key])
            if key in primary and math.isfinite(arm.adjusted.get(key, math.nan)):
                text += f", p_Holm {_fmt_p(arm.adjusted[key])}"
            row.append((text, _claimed(arm, key)))
        rows.append(row)
    return header, rows


DIFFERENCES_NOTE = ("Arm − baseline, difference of the runs' means with its 95% Student-t interval over the runs of "
                    "both arms; for a primary metric, the p-value Holm-adjusted over all primary comparisons "
                    "(bold: claimed, adjusted p < 0.05). Exploratory columns make no claim.")


def _markdown(arms, base, split, lines, notes, figure_files, primary) -> str:
    md = ["# Upsampling comparison", "",
          f"Arms: {', '.join(a.name for a in arms)}; baseline: {base.name if base else 'none'}; split: {split}.", "",
          "## Verdict", ""]
    md += [f"- {line}" for line in lines] + ["", "## Results", ""]
    for group, metrics in _groups(arms):
        header, rows, _ = _table_rows(arms, metrics)
        md += [f"### {group}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    if base is not None and len(arms) > 1:
        header, rows = _difference_table(arms, base, primary)
        md += [f"## Differences against {base.name}", "", DIFFERENCES_NOTE, "", "| " + " | ".join(header) + " |",
               "|" + "---|" * len(header)]
        md += ["| " + " | ".join(f"**{t}**" if claimed else t for t, claimed in row) + " |" for row in rows] + [""]
    md += ["## Figures", ""]
    for stem, caption, _ in figure_files:
        md += [f"![{stem}](figures/{stem}.png)", "", caption, ""]
    md += ["## Conventions", ""] + [f"- {c}" for c in CONVENTIONS] + ["", "## Notes", ""] + [f"- {n}" for n in notes]
    md += ["", "## Runs", ""] + [f"- {a.name}: " + ", ".join(str(r.path) for r in a.runs) for a in arms]
    return "\n".join(md) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1400px;
color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:2px solid #444}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:0.88em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
td.best{background:#e3f4e1;font-weight:bold}
ul.verdict li{margin:0.3em 0}.notes{color:#555}p.glance{font-size:1.1em;font-weight:600}
.scroll{overflow-x:auto;max-width:100%}details summary{cursor:pointer;color:#444}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{color:#444;font-size:0.9em}
"""


def _html_text(text: str) -> str:
    """Escape, then render the **bold** spans the shared sentences use."""
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _html_verdict(lines: list[str]) -> list[str]:
    """The answer first: the at-a-glance line, then the primary comparisons; the exploratory leads
    folded away, since they are things to check rather than claims."""
    glance = [line for line in lines if line.startswith("At a glance")]
    exploratory = [line for line in lines if line.startswith("Exploratory")]
    rest = [line for line in lines if line not in glance and line not in exploratory]
    h = [f"<p class=\"glance\">{_html_text(line)}</p>" for line in glance]
    h += ["<ul class=\"verdict\">"] + [f"<li>{_html_text(line)}</li>" for line in rest] + ["</ul>"]
    if exploratory:
        h += [f"<details><summary>Exploratory metrics: {len(exploratory)} lines, leads to check, not claims</summary>",
              "<ul class=\"verdict\">"] + [f"<li>{_html_text(line)}</li>" for line in exploratory] + ["</ul></details>"]
    return h


def _html(arms, base, split, lines, notes, figure_files, primary) -> str:
    h = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
         "<title>Upsampling comparison</title>", f"<style>{CSS}</style></head><body>",
         "<h1>Upsampling comparison</h1>",
         f"<p>Arms: {html.escape(', '.join(a.name for a in arms))}; baseline: "
         f"{html.escape(base.name if base else 'none')}; split: {html.escape(split)}.</p>",
         "<h2>Verdict</h2>"]
    h += _html_verdict(lines) + ["<h2>Results</h2>"]
    for group, metrics in _groups(arms):
        header, rows, winners = _table_rows(arms, metrics)
        h += [f"<h3>{html.escape(group)}</h3>", "<div class=\"scroll\"><table class=\"results\"><thead><tr>"
              + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr></thead><tbody>"]
        for arm, row in zip(arms, rows):
            cells = [f"<td>{html.escape(row[0])}</td>", f"<td>{row[1]}</td>"]
            for metric, text in zip(metrics, row[2:]):
                cls = " class=\"best\"" if winners.get(metric.key) == arm.name else ""
                cells.append(f"<td{cls}>{html.escape(text.strip('*'))}</td>")
            h.append("<tr>" + "".join(cells) + "</tr>")
        h.append("</tbody></table></div>")
    if base is not None and len(arms) > 1:
        header, rows = _difference_table(arms, base, primary)
        h += [f"<h2>Differences against {html.escape(base.name)}</h2>", f"<p>{html.escape(DIFFERENCES_NOTE)}</p>",
              "<div class=\"scroll\"><table class=\"paired\"><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header)
              + "</tr></thead><tbody>"]
        best = ' class="best"'
        for row in rows:
            h.append("<tr>" + "".join(f"<td{best if claimed else ''}>{html.escape(text)}</td>"
                                      for text, claimed in row) + "</tr>")
        h.append("</tbody></table></div>")
    h.append("<h2>Figures</h2>")
    for stem, caption, png in figure_files:
        data = base64.b64encode(png).decode("ascii")
        h.append(f"<figure id=\"{stem}\"><img alt=\"{stem}\" src=\"data:image/png;base64,{data}\">"
                 f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    h += ["<h2>Conventions</h2>", "<ul>"] + [f"<li>{_html_text(c)}</li>" for c in CONVENTIONS] + ["</ul>"]
    h += ["<h2>Notes</h2>", "<ul class=\"notes\">"] + [f"<li>{_html_text(n)}</li>" for n in notes] + ["</ul>"]
    h += ["<h2>Runs</h2>", "<ul>"] + [
        f"<li>{html.escape(a.name)}: {html.escape(', '.join(str(r.path) for r in a.runs))}</li>" for a in arms]
    h += ["</ul>", "</body></html>"]
    return "\n".join(h) + "\n"


def summary_columns(primary: Sequence[str] = DEFAULT_PRIMARY) -> list[str]:
    """Every column of summary.csv, in order."""
    columns = ["arm", "variant", "transpose_kernel", "n_seeds", "seeds", "seeds_not_learned", "n_images"]
    for metric in METRICS:
        columns += [f"{metric.key}_mean", f"{metric.key}_sd", f"{metric.key}_ci_low", f"{metric.key}_ci_high"]
    for key in _compared_keys(primary):
        columns += [f"{key}_diff", f"{key}_diff_ci_low", f"{key}_diff_ci_high", f"{key}_diff_p"]
        columns += [f"{key}_diff_p_holm"] if key in primary else []
    return columns


def _summary_csv(arms: list[Arm], primary: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(summary_columns(primary))
    for arm in arms:
        row: list[object] = [arm.name, arm.variant, arm.runs[0].transpose_kernel, len(arm.counted),
                             " ".join(str(r.seed) for r in arm.counted), " ".join(str(r.seed) for r in arm.failed),
                             len(arm.ids)]
        for metric in METRICS:
            cell = arm.cells[metric.key]
            row += [cell.mean, cell.sd, cell.interval.low, cell.interval.high]
        for key in _compared_keys(primary):
            diff = arm.paired.get(key, NAN_INTERVAL)
            row += [diff.estimate, diff.low, diff.high, diff.p_value]
            row += [arm.adjusted.get(key, math.nan)] if key in primary else []
        writer.writerow(["" if isinstance(v, float) and not math.isfinite(v) else v for v in row])
    return buffer.getvalue()


def write_report(run_dirs: list[Path], out_dir: Path, baseline: str | None = None, split: str = "test",
                 primary: Sequence[str] | None = None) -> Path:
    """Compare the runs and write report.md, a self-contained report.html and summary.csv; returns the HTML path.
    `primary`: the metrics claims are made on (DEFAULT_PRIMARY when None)."""
    if not run_dirs:
        raise MammosegError("no runs to compare")
    primary = check_primary(primary)
    start = time.perf_counter()
    runs = [load_run(path, split) for path in run_dirs]
    arms, base = build_arms(runs, baseline, primary)
    lines = verdict(arms, base, primary)
    notes = _notes(arms, base, split)
    figure_files = _figures(arms)
    out_dir = Path(out_dir)
    for stem, _, png in figure_files:
        write_bytes(out_dir / "figures" / f"{stem}.png", png)
    write_text(out_dir / "summary.csv", _summary_csv(arms, primary))
    write_text(out_dir / "report.md", _markdown(arms, base, split, lines, notes, figure_files, primary))
    html_path = out_dir / "report.html"
    write_text(html_path, _html(arms, base, split, lines, notes, figure_files, primary))
    logger.info("report of %d runs in %d arms written in %.1f s: %s", len(runs), len(arms),
                time.perf_counter() - start, html_path)
    return html_path
