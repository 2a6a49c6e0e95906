"""The comparison report: which upsampling design wins, on what, and how sure we are.

Runs are grouped into arms (variant + transpose kernel); seeds are repeated runs of an arm. Every
number is shown as mean ± sd over seeds with a 95% bootstrap interval over seeds and images (both
vary between replications: the training run and the test set's sample), and arms are compared with
paired differences on the same images. The verdict is generated from those intervals and refuses to
rank arms whose intervals overlap.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mammoseg.analysis import stats
from mammoseg.analysis.runs import Run, flat_metrics, load_run, lookup
from mammoseg.analysis.stats import NAN_INTERVAL, Interval
from mammoseg.atomic import write_bytes, write_text
from mammoseg.errors import MammosegError

logger = logging.getLogger("mammoseg.report")

DEFAULT_BASELINE = "dilated_resize"
ARTICLE_ORDER = ("fcn_skips", "fcn_bottleneck", "fcn_resize_mid", "dilated_transpose", "dilated_resize")
FP_PIXEL_DIVISOR = 750
ALIASING_FREQUENCIES = (0.5, 0.707, 0.25, 0.125)  # stride 2: (pi, 0) and (pi, pi); stacked: 1/4, 1/8


# ---------------------------------------------------------------- metric definitions


@dataclass(frozen=True)
class Metric:
    """One reported number. `image` metrics come from per-image rows (bootstrap CI over seeds and images);
    `run` metrics exist only per run (interval over seeds); `exact` ones do not vary (no interval)."""

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


def _predicted_positive(table: pd.DataFrame, image_size: int | None) -> np.ndarray:
    """The article's image-level call: more than S²/750 pixels above 0.5 (from evaluation when it says)."""
    if "predicted_positive" in table.columns:
        return table["predicted_positive"].to_numpy(float)
    if image_size is None:
        return np.full(len(table), np.nan)
    return ((table["tp"] + table["fp"]) > image_size**2 / FP_PIXEL_DIVISOR).to_numpy(float)


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
           subset="positives"),
    Metric("dice_pooled", "Dice pooled (positives)", "Segmentation", "higher", "image",
           columns=("tp", "fp", "fn"), pooled="dice", subset="positives"),
    Metric("iou_per_image", "IoU per image (positives)", "Segmentation", "higher", "image", columns=("iou",),
           subset="positives"),
    Metric("iou_pooled", "IoU pooled (positives)", "Segmentation", "higher", "image",
           columns=("tp", "fp", "fn"), pooled="iou", subset="positives"),
    Metric("dice_pooled_all", "Dice pooled (all images)", "Segmentation", "higher", "image",
           columns=("tp", "fp", "fn"), pooled="dice"),
    Metric("neg_fp_rate", "FP rate on negative images", "Negative images", "lower", "image",
           columns=("predicted_positive",), subset="negatives"),
    Metric("neg_mean_prob", "Mean P(abnormal) on negatives", "Negative images", "lower", "image",
           columns=("mean_prob",), subset="negatives"),
    Metric("neg_max_prob", "Max P(abnormal) on negatives", "Negative images", "lower", "image",
           columns=("max_prob",), subset="negatives"),
    Metric("neg_frac_above_05", "Pixels > 0.5 on negatives", "Negative images", "lower", "image", "{:.4f}",
           columns=("frac_above_05",), subset="negatives"),
    Metric("normal_fp_rate", "FP rate on normal images", "Normal images", "lower", "image",
           columns=("predicted_positive",), subset="normals"),
    Metric("normal_mean_prob", "Mean P(abnormal) on normal images", "Normal images", "lower", "image",
           columns=("mean_prob",), subset="normals"),
    Metric("normal_max_prob", "Max P(abnormal) on normal images", "Normal images", "lower", "image",
           columns=("max_prob",), subset="normals"),
    Metric("pr_auc", "Pixel PR-AUC", "Soft outputs", "higher", "run",
           run_value=_run_metric("pixel_pr_auc", "pr_auc", "average_precision")),
    Metric("roc_auc", "Pixel ROC-AUC", "Soft outputs", "higher", "run",
           run_value=_run_metric("pixel_roc_auc", "roc_auc")),
    Metric("ece", "Calibration error (ECE)", "Soft outputs", "lower", "run", "{:.4f}",
           run_value=_run_metric("ece", "expected_calibration_error", "calibration_error")),
    Metric("kernel_init", "Kernel score at init (worst layer)", "Checkerboard", "lower", "run",
           run_value=_kernel_init),
    Metric("phase_mean_init", "Phase-mean of the logit margin at init", "Checkerboard", "lower", "run",
           run_value=lambda run: lookup(flat_metrics(run.checkerboard_init), "map.phase_mean", "phase_mean")),
    Metric("phase_mean_margin_trained", "Phase-mean of the logit margin trained", "Checkerboard", "lower", "image",
           columns=("phase_mean_margin",)),
    Metric("phase_mean_trained", "Phase-mean of P(abnormal) trained", "Checkerboard", "lower", "image",
           columns=("phase_mean",)),
    Metric("aliasing_init", "Aliasing fraction at init", "Checkerboard", "lower", "run", "{:.4f}",
           run_value=lambda run: lookup(flat_metrics(run.checkerboard_init), "map.aliasing_fraction", "aliasing_fraction")),
    Metric("aliasing_trained", "Aliasing fraction trained", "Checkerboard", "lower", "image", "{:.4f}",
           columns=("aliasing_fraction",)),
    Metric("params_m", "Parameters (M)", "Cost", "lower", "exact", "{:.2f}",
           run_value=lambda run: _number(run.config.get("params"), 1e6)),
    Metric("gflops", "GFLOPs / image", "Cost", "lower", "exact", "{:.2f}",
           run_value=lambda run: _number(run.config.get("flops"), 1e9)),
    Metric("sec_per_epoch", "Seconds / epoch", "Cost", "lower", "run", "{:.1f}",
           run_value=lambda run: _number(run.timing.get("mean_seconds_per_epoch"))),
    Metric("train_img_per_s", "Training images / s", "Cost", "higher", "run", "{:.1f}",
           run_value=lambda run: _number(run.timing.get("train_images_per_second"))),
    Metric("infer_img_per_s", "Inference images / s", "Cost", "higher", "run", "{:.1f}",
           run_value=_run_metric("inference.images_per_second", "images_per_second")),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}
PAIRED_KEYS = ("dice_per_image", "dice_pooled", "dice_pooled_all", "neg_fp_rate", "neg_mean_prob",
               "phase_mean_margin_trained", "phase_mean_trained")
VERDICT_KEYS = ("dice_per_image", "dice_pooled", "dice_pooled_all", "neg_fp_rate", "neg_mean_prob", "pr_auc", "ece",
                "phase_mean_margin_trained", "phase_mean_trained", "kernel_init", "params_m", "gflops", "sec_per_epoch")
BAR_KEYS = ("dice_per_image", "dice_pooled", "neg_fp_rate", "neg_mean_prob", "pr_auc", "ece")


# ---------------------------------------------------------------- aggregation


@dataclass
class Cell:
    """One arm's value of one metric: seed mean ± sd, and the interval the verdict uses."""

    mean: float
    sd: float
    interval: Interval


@dataclass
class Arm:
    name: str
    runs: list[Run]
    ids: list[str] = field(default_factory=list)
    table: dict[str, np.ndarray] = field(default_factory=dict)  # per-image column -> [seeds, images]
    cells: dict[str, Cell] = field(default_factory=dict)
    paired: dict[str, Interval] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        return self.runs[0].variant

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]


def _image_matrices(runs: list[Run]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Per-image columns as [seeds, images] arrays over the union of example ids (NaN where a run
    lacks an image), so every bootstrap resample can draw the same images for all seeds."""
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


def _image_interval(metric: Metric, table: dict[str, np.ndarray], resample: bool) -> Interval:
    """An image metric from [seeds, images] columns; with `resample`, its bootstrap interval over seeds and images."""
    if not set(metric.columns) <= set(table):
        return NAN_INTERVAL
    keep = _subset_mask(table, metric.subset)
    cols = [table[c][:, keep] for c in metric.columns]
    if cols[0].shape[1] == 0:
        return NAN_INTERVAL
    if metric.pooled:
        return stats.pooled_ci(*cols, metric.pooled, resample=resample)
    return stats.nanmean_ci(cols[0], resample=resample)


def _sd(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.size >= 2 else math.nan


def _arm_cells(arm: Arm) -> None:
    arm.ids, arm.table = _image_matrices(arm.runs)
    for metric in METRICS:
        if metric.source == "image":
            per_run = np.array([
                _image_interval(metric, {c: v[s : s + 1] for c, v in arm.table.items()}, resample=False).estimate
                for s in range(len(arm.runs))
            ])
            interval = _image_interval(metric, arm.table, resample=True)
        else:
            per_run = np.array([metric.run_value(run) for run in arm.runs])  # type: ignore[misc]
            finite = per_run[np.isfinite(per_run)]
            if metric.source == "exact":
                value = float(finite.mean()) if finite.size else math.nan
                interval = Interval(value, value, value)
            else:
                interval = stats.seed_interval(per_run)
        finite = per_run[np.isfinite(per_run)]
        mean = float(finite.mean()) if finite.size else math.nan
        arm.cells[metric.key] = Cell(mean, _sd(per_run), interval)


def _paired(arm: Arm, baseline: Arm) -> None:
    """Differences arm - baseline on the images both were evaluated on, each resample shared."""
    common = sorted(set(arm.ids) & set(baseline.ids))
    pos_a = {i: n for n, i in enumerate(arm.ids)}
    pos_b = {i: n for n, i in enumerate(baseline.ids)}
    index_a = np.array([pos_a[i] for i in common], dtype=int)
    index_b = np.array([pos_b[i] for i in common], dtype=int)
    masks = {subset: _subset_mask(baseline.table, subset)[index_b] for subset in ("all", "positives", "negatives")}
    for key in PAIRED_KEYS:
        metric = METRIC_BY_KEY[key]
        if not common or not (set(metric.columns) <= set(arm.table) & set(baseline.table)):
            arm.paired[key] = NAN_INTERVAL
            continue
        keep = masks[metric.subset]
        cols_a = [arm.table[c][:, index_a[keep]] for c in metric.columns]
        cols_b = [baseline.table[c][:, index_b[keep]] for c in metric.columns]
        if not keep.any():
            arm.paired[key] = NAN_INTERVAL
        elif metric.pooled:
            arm.paired[key] = stats.paired_pooled_diff_ci(tuple(cols_a), tuple(cols_b), metric.pooled)
        else:
            arm.paired[key] = stats.paired_nanmean_diff_ci(cols_a[0], cols_b[0])


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


def build_arms(runs: list[Run], baseline: str | None) -> tuple[list[Arm], Arm | None]:
    """Group runs into arms, compute every cell, and the paired differences against the baseline."""
    arms = sorted((Arm(name, sorted(members, key=lambda r: (r.seed is None, r.seed or 0)))
                   for name, members in _group_runs(runs).items()), key=_arm_sort_key)
    for arm in arms:
        _arm_cells(arm)
    base = _pick_baseline(arms, baseline)
    if base is not None:
        for arm in arms:
            if arm is not base:
                _paired(arm, base)
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


@dataclass(frozen=True)
class Ranking:
    """How one metric ranks the arms: status "best" (one arm clears all others), "group" (several arms
    tie but clear all the rest), "tie", "unranked" (no interval to judge by) or "none" (fewer than two
    arms have the number). `caveat` qualifies a claim whose intervals miss the seed variation."""

    status: str
    leaders: tuple[str, ...]
    sentence: str
    caveat: str = ""


def _one_seed_caveat(names: Collection[str], single_seed: Collection[str]) -> str:
    """Why a claim on image-level intervals may not hold: a single-seed arm's interval cannot include
    the run-to-run variation, which can exceed the gap between arms ("" when every arm has seeds)."""
    lone = [name for name in names if name in single_seed]
    if not lone:
        return ""
    if len(lone) == len(names):
        return "one seed: seed variation not included"
    return f"one seed for {', '.join(lone)}: seed variation not included"


def rank(metric: Metric, intervals: dict[str, Interval], single_seed: Collection[str] = ()) -> Ranking:
    """Name the best arm only if its interval clears every other arm's interval; `single_seed` names
    the arms with one run, whose image-level intervals make any claim provisional."""
    present = {name: iv for name, iv in intervals.items() if math.isfinite(iv.estimate)}
    if len(present) < 2:
        return Ranking("none", (), f"{metric.label}: fewer than two arms have this number; nothing to compare.")
    sign = -1.0 if metric.better == "higher" else 1.0
    order = sorted(present, key=lambda name: sign * present[name].estimate)
    best = order[0]
    if not present[best].defined:
        return Ranking("unranked", (best,), (
            f"{metric.label}: not ranked — a single seed gives no interval for this run-level number "
            f"(best point value: {best}, {_fmt(metric, present[best].estimate)})."))
    tied = [name for name in order if present[name].overlaps(present[best])]
    direction = "higher" if metric.better == "higher" else "lower"
    if metric.source == "exact" and len(tied) > 1:
        return Ranking("tie", tuple(tied), f"{metric.label}: {', '.join(tied)} are equal "
                                           f"({_fmt(metric, present[best].estimate)}).")
    caveat = _one_seed_caveat(list(present), single_seed) if metric.source == "image" else ""
    note = f" ({caveat})" if caveat else ""
    if len(tied) == 1:
        runner = order[1]
        return Ranking("best", (best,), (
            f"{metric.label} ({direction} is better): **{best}** is best, "
            f"{_fmt_interval(metric, present[best])} vs next {runner} {_fmt_interval(metric, present[runner])}; "
            f"the 95% intervals do not overlap{note}."), caveat)
    rest = [name for name in order if name not in tied]
    separated = bool(rest) and all(not present[r].overlaps(present[t]) for r in rest for t in tied)
    tail = f" All of them are ahead of {', '.join(rest)}{note}." if separated else ""
    return Ranking("group" if separated else "tie", tuple(tied), (
        f"{metric.label} ({direction} is better): no clear difference between {', '.join(tied)} "
        f"(their 95% intervals overlap; point leader {best}).{tail}"), caveat if separated else "")


def rank_metric(metric: Metric, intervals: dict[str, Interval], single_seed: Collection[str] = ()) -> str:
    """The verdict sentence for one metric."""
    return rank(metric, intervals, single_seed).sentence


def _single_seed(arms: list[Arm]) -> set[str]:
    return {arm.name for arm in arms if len(arm.runs) == 1}


def _rank_arms(metric: Metric, arms: list[Arm]) -> Ranking:
    return rank(metric, {arm.name: arm.cells[metric.key].interval for arm in arms}, _single_seed(arms))


def at_a_glance(arms: list[Arm]) -> str:
    """One sentence: which arm clearly wins which verdict metrics, and where nothing can be claimed."""
    wins: dict[str, list[str]] = {}
    ties, unranked, caveats = [], [], []
    for key in VERDICT_KEYS:
        metric = METRIC_BY_KEY[key]
        ranking = _rank_arms(metric, arms)
        if ranking.status in ("best", "group"):
            wins.setdefault(" and ".join(f"**{n}**" for n in ranking.leaders), []).append(metric.label)
            if ranking.caveat and ranking.caveat not in caveats:
                caveats.append(ranking.caveat)
        elif ranking.status == "tie":
            ties.append(metric.label)
        elif ranking.status == "unranked":
            unranked.append(metric.label)
    parts = [f"{names} {'lead together' if ' and ' in names else 'is clearly best'} on {', '.join(labels)}"
             for names, labels in sorted(wins.items(), key=lambda item: -len(item[1]))]
    parts += caveats
    if ties:
        parts.append(f"no clear difference on {', '.join(ties)}")
    if unranked:
        parts.append(f"not ranked for lack of seeds: {', '.join(unranked)}")
    return "At a glance: " + ("; ".join(parts) if parts else "nothing to compare") + "."


def paired_sentence(metric: Metric, arm: str, baseline: str, diff: Interval, caveat: str = "") -> str:
    """A paired comparison in words: a claim only when the interval of the difference excludes zero,
    qualified by `caveat` when an arm's seed variation is not in the interval."""
    text = f"{arm} − {baseline}: {_fmt_interval(metric, diff)}"
    if not diff.defined:
        return f"{text} — not estimable."
    if not diff.excludes(0.0):
        return f"{text} — no clear difference (interval includes 0)."
    better = (diff.estimate > 0) == (metric.better == "higher")
    note = f" ({caveat})" if caveat else ""
    return f"{text} — {arm} is {'better' if better else 'worse'}{note}."


def verdict(arms: list[Arm], base: Arm | None) -> list[str]:
    lines = [at_a_glance(arms)]
    lines += [_rank_arms(METRIC_BY_KEY[key], arms).sentence for key in VERDICT_KEYS]
    if base is not None:
        single_seed = _single_seed(arms)
        for key in ("dice_per_image", "neg_fp_rate"):
            metric = METRIC_BY_KEY[key]
            for arm in arms:
                if arm is not base:
                    caveat = _one_seed_caveat([arm.name, base.name], single_seed)
                    lines.append(f"Paired, {metric.label}: "
                                 + paired_sentence(metric, arm.name, base.name, arm.paired[key], caveat))
    return lines


# ---------------------------------------------------------------- figures


def _figures(arms: list[Arm], base: Arm | None) -> list[tuple[str, str, bytes]]:
    """(file stem, caption, PNG) for every figure the data allows."""
    from mammoseg.analysis import figures

    out: list[tuple[str, str, bytes]] = []
    curves = {}
    for arm in arms:
        histories = [r.history for r in arm.runs if r.history is not None and "epoch" in r.history]
        if histories:
            cols = [c for c in ("loss", "val_loss") if all(c in h for h in histories)]
            curves[arm.name] = pd.concat(histories).groupby("epoch")[cols].mean().reset_index()
    if curves:
        out.append(("learning_curves", "Training and validation loss per epoch, mean over seeds.",
                    figures.learning_curves(curves)))
    bars = [(METRIC_BY_KEY[k].label, METRIC_BY_KEY[k].better, {a.name: a.cells[k].interval for a in arms})
            for k in BAR_KEYS]
    out.append(("metrics", "Main metrics per arm with 95% intervals (bootstrap over seeds and images; "
                "Student-t over seeds for PR-AUC and ECE). The arrow in each title says which direction is better.",
                figures.metric_bars(bars)))
    examples = _shared_examples(arms)
    if examples:
        out.append(("examples", "The same positive and negative test images through every arm (first seed of each): "
                    "input, truth, soft P(abnormal), hard prediction (P > 0.5).", figures.example_grid(examples)))
    spectra: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for group in ("all", "negatives"):
        for arm in arms:
            found = [r.spectra[group] for r in arm.runs if group in r.spectra]
            if found:
                freqs = found[0][0]
                power = np.nanmean([np.interp(freqs, f, p) for f, p in found], axis=0)
                spectra.setdefault(group, {})[arm.name] = (freqs, power)
    if spectra:
        out.append(("spectra", "Radially averaged power spectrum of the output probability maps (mean over test images "
                    "and seeds), over all images and over the negative images alone. Dashed and dotted lines: aliasing "
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
        run = next((r for r in arm.runs if r.examples is not None and "example_id" in r.examples), None)
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
    f"S²/{FP_PIXEL_DIVISOR} of its pixels have P(abnormal) > 0.5 (the article's rule; 546 pixels at 640×640).",
    "**Normal image**: a whole mammogram without abnormality from another collection (`prepare --normals`), "
    "judged by the same rule in rows of its own and not counted among the negative images (tiles of CBIS-DDSM "
    "images away from every abnormality); the rows are left out when no arm saw a normal image.",
    "**Intervals**: 95% percentile bootstrap over seeds and images (2000 resamples, seeded), so an interval holds "
    "both the run-to-run variation and the test set's sampling. Each resample draws the arm's seeds with "
    "replacement and the images with replacement; the statistic is the mean over the drawn seeds of each seed's "
    "value on the drawn images, and the estimate (nothing resampled) equals the mean of the per-run numbers. "
    "Pooled metrics resample the per-image tp/fp/fn sums. With a single seed the seed draw is that seed: the "
    "interval covers the images only, and a claim resting on it says \"one seed: seed variation not included\". "
    "Run-level numbers (PR-AUC, ROC-AUC, calibration error, scores at initialisation, timings) have no per-image "
    "data: their interval is a Student-t interval over seeds. The ± is the standard deviation over seeds.",
    "**Paired differences**: arm − baseline on the images both arms were evaluated on (matched by example id); "
    "each bootstrap resample draws the seeds of each arm independently and the same images for both arms. Image "
    "difficulty cancels in a difference, so a paired interval can exclude 0 where the two arms' own intervals "
    "overlap; seed variation does not cancel, so an arm whose seeds disagree is not called better or worse.",
    "**Checkerboard scores**: kernel score = std/|mean| of the per-phase sums of a transposed kernel's taps "
    "(0 = a constant input cannot produce a checkerboard); phase-mean score = std of the 2×2 sub-grid means over "
    "the map's std, on the logit margin l1 − l0 (comparable before and after training: P(abnormal) saturates) "
    "and on P(abnormal) itself (what a reader sees); aliasing fraction = share of the map's AC spectral energy at "
    "the stride-2 aliasing bins.",
    "**Verdict rule**: an arm is named best only when its 95% interval does not overlap the interval of any other "
    "arm; otherwise the report says there is no clear difference. A claim involving a single-seed arm is "
    "qualified, since its interval does not include the seed variation.",
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
        row = [arm.name, str(len(arm.runs))]
        for metric in metrics:
            cell = arm.cells[metric.key]
            text = _fmt(metric, cell.mean)
            if math.isfinite(cell.sd):
                text += f" ± {_fmt(metric, cell.sd)}"
            if metric.source != "exact" and cell.interval.defined:
                text += f" [{_fmt(metric, cell.interval.low)}, {_fmt(metric, cell.interval.high)}]"
            if winners.get(metric.key) == arm.name:
                text = f"**{text}**"
            row.append(text)
        rows.append(row)
    return header, rows, winners


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
    if all(len(a.runs) == 1 for a in arms):
        notes.append("Every arm has a single seed: the spread over seeds is not estimated (no ± and no interval for "
                     "run-level numbers); intervals over images alone are still shown.")
    elif any(len(a.runs) < 3 for a in arms):
        notes.append("Some arms have fewer than 3 seeds: their spread over seeds is poorly estimated.")
    notes.append("PR-AUC, ROC-AUC and calibration error need every pixel's probability, which per_image.csv does not "
                 "hold: they are per-run values from metrics.json, summarised over seeds.")
    if base is None:
        notes.append(f"No baseline arm ({DEFAULT_BASELINE} absent and none given with --baseline): "
                     "paired differences are not computed.")
    n_images = {a.name: len(a.ids) for a in arms}
    notes.append(f"Split: {split}; images per arm: " + ", ".join(f"{k} {v}" for k, v in n_images.items()) + ".")
    return notes


def _markdown(arms, base, split, lines, notes, figure_files) -> str:
    md = ["# Upsampling comparison", "",
          f"Arms: {', '.join(a.name for a in arms)}; baseline: {base.name if base else 'none'}; split: {split}.", "",
          "## Verdict", ""]
    md += [f"- {line}" for line in lines] + ["", "## Results", ""]
    for group, metrics in _groups(arms):
        header, rows, _ = _table_rows(arms, metrics)
        md += [f"### {group}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    if base is not None and len(arms) > 1:
        md += [f"## Paired differences against {base.name}", "", "| Arm | " +
               " | ".join(METRIC_BY_KEY[k].label for k in PAIRED_KEYS) + " |", "|" + "---|" * (len(PAIRED_KEYS) + 1)]
        for arm in arms:
            if arm is not base:
                md.append(f"| {arm.name} | " + " | ".join(_fmt_interval(METRIC_BY_KEY[k], arm.paired[k]) for k in PAIRED_KEYS) + " |")
        md.append("")
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
ul.verdict li{margin:0.3em 0}.notes{color:#555}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{color:#444;font-size:0.9em}
"""


def _html_text(text: str) -> str:
    """Escape, then render the **bold** spans the shared sentences use."""
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _html(arms, base, split, lines, notes, figure_files) -> str:
    h = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
         "<title>Upsampling comparison</title>", f"<style>{CSS}</style></head><body>",
         "<h1>Upsampling comparison</h1>",
         f"<p>Arms: {html.escape(', '.join(a.name for a in arms))}; baseline: "
         f"{html.escape(base.name if base else 'none')}; split: {html.escape(split)}.</p>",
         "<h2>Verdict</h2>", "<ul class=\"verdict\">"]
    h += [f"<li>{_html_text(line)}</li>" for line in lines] + ["</ul>", "<h2>Results</h2>"]
    for group, metrics in _groups(arms):
        header, rows, winners = _table_rows(arms, metrics)
        h += [f"<h3>{html.escape(group)}</h3>", "<table class=\"results\"><thead><tr>"
              + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr></thead><tbody>"]
        for arm, row in zip(arms, rows):
            cells = [f"<td>{html.escape(row[0])}</td>", f"<td>{row[1]}</td>"]
            for metric, text in zip(metrics, row[2:]):
                cls = " class=\"best\"" if winners.get(metric.key) == arm.name else ""
                cells.append(f"<td{cls}>{html.escape(text.strip('*'))}</td>")
            h.append("<tr>" + "".join(cells) + "</tr>")
        h.append("</tbody></table>")
    if base is not None and len(arms) > 1:
        h += [f"<h2>Paired differences against {html.escape(base.name)}</h2>",
              "<p>Arm − baseline on the same images, 95% bootstrap interval over seeds and images; bold where "
              "the interval excludes 0.</p>",
              "<table class=\"paired\"><thead><tr><th>Arm</th>"
              + "".join(f"<th>{html.escape(METRIC_BY_KEY[k].label)}</th>" for k in PAIRED_KEYS) + "</tr></thead><tbody>"]
        for arm in arms:
            if arm is not base:
                best = ' class="best"'
                cells = "".join(
                    f"<td{best if arm.paired[k].excludes(0.0) else ''}>"
                    f"{html.escape(_fmt_interval(METRIC_BY_KEY[k], arm.paired[k]))}</td>" for k in PAIRED_KEYS)
                h.append(f"<tr><td>{html.escape(arm.name)}</td>{cells}</tr>")
        h.append("</tbody></table>")
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


def summary_columns() -> list[str]:
    """Every column of summary.csv, in order."""
    columns = ["arm", "variant", "transpose_kernel", "n_seeds", "seeds", "n_images"]
    for metric in METRICS:
        columns += [f"{metric.key}_mean", f"{metric.key}_sd", f"{metric.key}_ci_low", f"{metric.key}_ci_high"]
    for key in PAIRED_KEYS:
        columns += [f"{key}_diff", f"{key}_diff_ci_low", f"{key}_diff_ci_high"]
    return columns


def _summary_csv(arms: list[Arm]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(summary_columns())
    for arm in arms:
        row: list[object] = [arm.name, arm.variant, arm.runs[0].transpose_kernel, len(arm.runs),
                             " ".join(str(s) for s in arm.seeds), len(arm.ids)]
        for metric in METRICS:
            cell = arm.cells[metric.key]
            row += [cell.mean, cell.sd, cell.interval.low, cell.interval.high]
        for key in PAIRED_KEYS:
            diff = arm.paired.get(key, NAN_INTERVAL)
            row += [diff.estimate, diff.low, diff.high]
        writer.writerow(["" if isinstance(v, float) and not math.isfinite(v) else v for v in row])
    return buffer.getvalue()


def write_report(run_dirs: list[Path], out_dir: Path, baseline: str | None = None, split: str = "test") -> Path:
    """Compare the runs and write report.md, a self-contained report.html and summary.csv; returns the HTML path."""
    if not run_dirs:
        raise MammosegError("no runs to compare")
    start = time.perf_counter()
    runs = [load_run(path, split) for path in run_dirs]
    arms, base = build_arms(runs, baseline)
    lines = verdict(arms, base)
    notes = _notes(arms, base, split)
    figure_files = _figures(arms, base)
    out_dir = Path(out_dir)
    for stem, _, png in figure_files:
        write_bytes(out_dir / "figures" / f"{stem}.png", png)
    write_text(out_dir / "summary.csv", _summary_csv(arms))
    write_text(out_dir / "report.md", _markdown(arms, base, split, lines, notes, figure_files))
    html_path = out_dir / "report.html"
    write_text(html_path, _html(arms, base, split, lines, notes, figure_files))
    logger.info("report of %d runs in %d arms written in %.1f s: %s", len(runs), len(arms),
                time.perf_counter() - start, html_path)
    return html_path
