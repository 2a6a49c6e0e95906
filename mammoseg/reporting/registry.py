"""The reported metrics: one registry, so tables, verdict, figures and summary.csv agree on each
number's label, source, better direction and range."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mammoseg.runs.rundir import Run, flat_metrics, lookup
from mammoseg.metrics.stats import POSITIVE, UNBOUNDED, UNIT, Bounds
from mammoseg.core.errors import MammosegError


@dataclass(frozen=True)
class Metric:
    """One reported number. `image` metrics come from per-image rows (one value per run from them);
    `run` metrics exist only per run; `exact` ones do not vary (no interval). `bounds` is the range the
    metric can take, which its intervals keep to. `equivalence_margin` is the difference between two arms
small enough to call them equivalent on this metric (declared before any run; NaN: none declared)."""

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
    equivalence_margin: float = math.nan


CORRELATION: Bounds = (-1.0, 1.0)


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


def hard_map(run: Run, what: str) -> float:
    """The hard prediction (P > 0.5) scored as if it were a probability map, over every test pixel, to
    set beside the soft map's PR-AUC and ECE (the article's hard max against softmax probabilities).

    "ap": the average precision of a two-level score, recall·precision + (1 − recall)·prevalence (its PR
    curve has one point besides (1, prevalence)); "ece": the calibration error of 0/1 probabilities,
    which is the pixel error rate (FP + FN) / N."""
    frame = run.per_image
    if frame is None or not {"tp", "fp", "fn", "tn"} <= set(frame.columns):
        return math.nan
    tp, fp, fn, tn = (float(frame[c].sum()) for c in ("tp", "fp", "fn", "tn"))
    total = tp + fp + fn + tn
    if total == 0 or tp + fn == 0:
        return math.nan
    if what == "ece":
        return (fp + fn) / total
    recall, prevalence = tp / (tp + fn), (tp + fn) / total
    precision = tp / (tp + fp) if tp + fp else 0.0
    return recall * precision + (1.0 - recall) * prevalence


def _upsampling(stage: str, where: str) -> Callable[[Run], float]:
    return lambda run: lookup(flat_metrics(run.metrics), f"checkerboard.upsampling.{stage}.{where}")


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
           columns=("predicted_positive",), subset="negatives", bounds=UNIT, equivalence_margin=0.05),
    Metric("neg_mean_prob", "Mean P(abnormal) on negatives", "Negative images", "lower", "image",
           columns=("mean_prob",), subset="negatives", bounds=UNIT),
    Metric("neg_max_prob", "Max P(abnormal) on negatives", "Negative images", "lower", "image",
           columns=("max_prob",), subset="negatives", bounds=UNIT),
    Metric("neg_frac_above_05", "Pixels > 0.5 on negatives", "Negative images", "lower", "image", "{:.4f}",
           columns=("frac_above_05",), subset="negatives", bounds=UNIT),
    Metric("normal_fp_rate", "FP rate on normal images", "Normal images", "lower", "image",
           columns=("predicted_positive",), subset="normals", bounds=UNIT, equivalence_margin=0.05),
    Metric("normal_mean_prob", "Mean P(abnormal) on normal images", "Normal images", "lower", "image",
           columns=("mean_prob",), subset="normals", bounds=UNIT),
    Metric("normal_max_prob", "Max P(abnormal) on normal images", "Normal images", "lower", "image",
           columns=("max_prob",), subset="normals", bounds=UNIT),
    Metric("neg_bright_corr", "P(abnormal) ~ brightness on negatives", "Negative images", "lower", "image",
           columns=("bright_corr",), subset="negatives", bounds=CORRELATION, equivalence_margin=0.1),
    Metric("normal_bright_corr", "P(abnormal) ~ brightness on normal images", "Normal images", "lower", "image",
           columns=("bright_corr",), subset="normals", bounds=CORRELATION),
    Metric("pr_auc", "Pixel PR-AUC", "Soft outputs", "higher", "run",
           run_value=_run_metric("pixel_pr_auc", "pr_auc", "average_precision"), bounds=UNIT,
           equivalence_margin=0.02),
    Metric("roc_auc", "Pixel ROC-AUC", "Soft outputs", "higher", "run",
           run_value=_run_metric("pixel_roc_auc", "roc_auc"), bounds=UNIT),
    Metric("ece", "Calibration error (ECE)", "Soft outputs", "lower", "run", "{:.4f}",
           run_value=_run_metric("ece", "expected_calibration_error", "calibration_error"), bounds=UNIT,
           equivalence_margin=0.005),
    Metric("hard_pr_auc", "Pixel PR-AUC of the hard map", "Soft outputs", "higher", "run",
           run_value=lambda run: hard_map(run, "ap"), bounds=UNIT, equivalence_margin=0.02),
    Metric("hard_ece", "Calibration error of the hard map", "Soft outputs", "lower", "run", "{:.4f}",
           run_value=lambda run: hard_map(run, "ece"), bounds=UNIT, equivalence_margin=0.005),
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
    Metric("decoder_init", "First upsampling, decoder, at init", "Checkerboard", "lower", "run",
           run_value=_upsampling("init", "decoder"), bounds=UNIT, equivalence_margin=0.05),
    Metric("decoder_trained", "First upsampling, decoder, trained", "Checkerboard", "lower", "run",
           run_value=_upsampling("trained", "decoder"), bounds=UNIT, equivalence_margin=0.05),
    Metric("output_upsampling_init", "First upsampling, output, at init", "Checkerboard", "lower", "run",
           run_value=_upsampling("init", "output"), bounds=UNIT, equivalence_margin=0.05),
    Metric("output_upsampling_trained", "First upsampling, output, trained", "Checkerboard", "lower", "run",
           run_value=_upsampling("trained", "output"), bounds=UNIT, equivalence_margin=0.05),
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


def compared_keys(primary: Sequence[str]) -> tuple[str, ...]:
    """Metrics whose difference against the baseline is computed: the primary ones, then the usual paired set."""
    return tuple(dict.fromkeys([*primary, *PAIRED_KEYS]))
