"""Every metric the project reports, each declared once (`declaration.declare`), in the report's order.

Equivalence margins (the difference on the metric's own scale below which two designs count as the
same, for the equivalence tests) are given where a claim uses the metric. Each is about the smallest
difference a reader of the article would act on, not a statistical quantity:
* rates and shares of images (FP rate, images flagged): 0.10, one image in ten;
* false positives per image at the operating point: 0.25, the finest rate the FROC reports;
* lesion sensitivities and the CPM: 0.05, five lesions in a hundred;
* the share of false-positive pixels on bright tissue: 0.05, against a chance level of ⅓;
* the false-positive area: 0.002, a fifth of a percent of the image (87 px at 256, the author's
  S²/750 rule is 0.13%);
* Dice: 0.05, under the spread of published CBIS-DDSM results (0.75–0.82 per image, docs/design.md §5);
* PR-AUC 0.02 and calibration (ECE, Brier) 0.01: a tenth of the gap soft and hard maps show;
* checkerboard scores: 0.05 on their 0-1 scale.
"""

from __future__ import annotations

import math
from typing import Any

from mammoseg.metrics import detection
from mammoseg.metrics.checkerboard import phase_mean_score
from mammoseg.metrics.declaration import (METRIC_BY_KEY, ImageMaps, Metric, UnknownMetric, declare, forget,
                                          image_columns, image_metric_value, in_subset, metrics, per_image_columns)
from mammoseg.metrics.segmentation import brightness_correlation
from mammoseg.metrics.speed import HISTORY_COLUMNS, WITHIN_BEST, time_to_quality
from mammoseg.metrics.stats import POSITIVE, UNIT

__all__ = ["METRIC_BY_KEY", "ImageMaps", "Metric", "UnknownMetric", "declare", "forget", "hard_map", "image_columns",
           "image_metric_value", "in_subset", "metrics", "per_image_columns"]
CORRELATION = (-1.0, 1.0)


def hard_map(run: Any, what: str) -> float:
    """The hard prediction (P > 0.5) scored as if it were a probability map, over every test pixel, to
    set beside the soft map's PR-AUC and calibration (the article's hard max against softmax probabilities).

    "ap": the average precision of a two-level score, recall·precision + (1 − recall)·prevalence (its PR
    curve has one point besides (1, prevalence)); "ece": the calibration error of 0/1 probabilities,
    which is the pixel error rate (FP + FN) / N, and so is their Brier score."""
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


def _kernel_init(run: Any) -> float:
    """Worst transposed layer's kernel phase imbalance at initialisation (0 = no checkerboard possible)."""
    scores = [v for v in (run.checkerboard_init.get("kernel") or {}).values()
              if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)]
    return max(scores) if scores else math.nan


def _time_to_quality(run: Any, what: str) -> float:
    """Epochs ("epoch") or training seconds ("train_seconds") until the run's validation loss first came
    within `speed.WITHIN_BEST` of its best; NaN without a history that says."""
    history = run.history
    if history is None or not set(HISTORY_COLUMNS) <= set(history.columns) or not len(history):
        return math.nan
    try:
        reached = time_to_quality(*(history[c].tolist() for c in HISTORY_COLUMNS))
    except ValueError:
        return math.nan
    value = reached.epoch if what == "epoch" else reached.train_seconds
    return math.nan if value is None else float(value)


def _image(key: str, label: str, group: str, better: str, subset: str = "all", **kw: Any) -> Metric:
    return declare(Metric(key, label, group, better, "image", subset, **kw))


def _run(key: str, label: str, group: str, better: str, **kw: Any) -> Metric:
    return declare(Metric(key, label, group, better, kw.pop("source", "run"), **kw))


def _fp_candidates(maps: ImageMaps) -> float:
    """False-positive candidates at the run's operating point (NaN where validation chose none)."""
    return maps.detections.false_positives(maps.threshold) if math.isfinite(maps.threshold) else math.nan


def _flagged(maps: ImageMaps) -> float:
    """1 when the image's peak margin reaches the operating point: something on it would be shown."""
    return float(maps.margin.max() >= maps.threshold) if math.isfinite(maps.threshold) else math.nan


# ---------------------------------------------------------------- segmentation (positives), P > 0.5
_image("dice_per_image", "Dice per image (positives)", "Segmentation", "higher", "positives", columns=("dice",),
       bounds=UNIT, equivalence_margin=0.05)
_image("dice_pooled", "Dice pooled (positives)", "Segmentation", "higher", "positives", columns=("tp", "fp", "fn"),
       pooled="dice", bounds=UNIT, equivalence_margin=0.05)
_image("iou_per_image", "IoU per image (positives)", "Segmentation", "higher", "positives", columns=("iou",),
       bounds=UNIT)
_image("iou_pooled", "IoU pooled (positives)", "Segmentation", "higher", "positives", columns=("tp", "fp", "fn"),
       pooled="iou", bounds=UNIT)
_image("dice_pooled_all", "Dice pooled (all images)", "Segmentation", "higher", columns=("tp", "fp", "fn"),
       pooled="dice", bounds=UNIT)
# ---------------------------------------------------------------- images without an abnormality
_image("neg_fp_rate", "FP rate on negative images", "Negative images", "lower", "negatives",  # the author's rule
       columns=("predicted_positive",), bounds=UNIT, equivalence_margin=0.10)
_image("neg_mean_prob", "Mean P(abnormal) on negatives", "Negative images", "lower", "negatives",
       columns=("mean_prob",), bounds=UNIT)
_image("neg_max_prob", "Max P(abnormal) on negatives", "Negative images", "lower", "negatives",
       columns=("max_prob",), bounds=UNIT)
_image("neg_frac_above_05", "Pixels > 0.5 on negatives", "Negative images", "lower", "negatives",
       columns=("frac_above_05",), bounds=UNIT, fmt="{:.4f}")
_image("normal_fp_rate", "FP rate on normal images", "Normal images", "lower", "normals",
       columns=("predicted_positive",), bounds=UNIT, equivalence_margin=0.10)
_image("normal_mean_prob", "Mean P(abnormal) on normal images", "Normal images", "lower", "normals",
       columns=("mean_prob",), bounds=UNIT)
_image("normal_max_prob", "Max P(abnormal) on normal images", "Normal images", "lower", "normals",
       columns=("max_prob",), bounds=UNIT)
_image("neg_bright_corr", "P(abnormal) ~ brightness on negatives", "Negative images", "lower", "negatives",
       column="bright_corr", per_image=lambda m: brightness_correlation(m.image, m.prob), bounds=CORRELATION)
_image("normal_bright_corr", "P(abnormal) ~ brightness on normal images", "Normal images", "lower", "normals",
       columns=("bright_corr",), bounds=CORRELATION)
# ---------------------------------------------------------------- at the operating point chosen on validation
_image("neg_fp_per_tile_op", "FPs per negative tile at the validation operating point", "Negative images", "lower",
       "negatives", column="fp_candidates_op", per_image=_fp_candidates, bounds=POSITIVE, equivalence_margin=0.25)
_image("normal_fp_per_image_op", "FPs per normal mammogram at the validation operating point", "Normal images",
       "lower", "normals", columns=("fp_candidates_op",), bounds=POSITIVE, equivalence_margin=0.25)
_image("neg_flagged_op", "Negative tiles flagged at the operating point", "Negative images", "lower", "negatives",
       column="flagged_op", per_image=_flagged, bounds=UNIT, equivalence_margin=0.10)
_image("normal_flagged_op", "Normal mammograms flagged at the operating point", "Normal images", "lower", "normals",
       columns=("flagged_op",), bounds=UNIT, equivalence_margin=0.10)
_image("neg_fp_area_op", "FP area on negatives at the operating point", "Negative images", "lower", "negatives",
       column="fp_area_op", per_image=lambda m: detection.fp_area(m.margin, m.mask, m.threshold), bounds=UNIT,
       fmt="{:.4f}", equivalence_margin=0.002)
_image("normal_fp_area_op", "FP area on normal images at the operating point", "Normal images", "lower", "normals",
       columns=("fp_area_op",), bounds=UNIT, fmt="{:.4f}", equivalence_margin=0.002)
_image("neg_bright_fp_share_op", "FP pixels on the brightest third, negatives (chance 0.333)", "Negative images",
       "lower", "negatives", column="bright_fp_share_op", bounds=UNIT, equivalence_margin=0.05,
       per_image=lambda m: detection.bright_fp_share(m.image, m.margin, m.mask, m.threshold))
_image("normal_bright_fp_share_op", "FP pixels on the brightest third, normal images (chance 0.333)",
       "Normal images", "lower", "normals", columns=("bright_fp_share_op",), bounds=UNIT, equivalence_margin=0.05)
_image("neg_bright_fp_area_op", "FP area on the brightest third, negatives", "Negative images", "lower",
       "negatives", column="bright_fp_area_op", bounds=UNIT, fmt="{:.4f}", equivalence_margin=0.002,
       per_image=lambda m: detection.bright_fp_area(m.image, m.margin, m.mask, m.threshold))
_image("normal_bright_fp_area_op", "FP area on the brightest third, normal images", "Normal images", "lower",
       "normals", columns=("bright_fp_area_op",), bounds=UNIT, fmt="{:.4f}", equivalence_margin=0.002)
# ---------------------------------------------------------------- lesion detection (FROC over every test image)
for _rate in detection.FROC_RATES:
    _run(f"froc_{_rate:g}fp", f"Lesion sensitivity at {_rate:g} FP/image", "Lesion detection", "higher",
         path=f"metrics:detection.sensitivity_at_{_rate:g}fp", bounds=UNIT, equivalence_margin=0.05)
_run("froc_cpm", "FROC CPM (1/8-8 FP/image)", "Lesion detection", "higher", path="metrics:detection.cpm",
     bounds=UNIT, equivalence_margin=0.05)
_run("op_target", "Validation lesion sensitivity the operating point targets", "Lesion detection", "higher",
     path="metrics:detection.operating_point.target_sensitivity", bounds=UNIT)
_run("op_sensitivity", "Lesion sensitivity at the validation operating point", "Lesion detection", "higher",
     path="metrics:detection.operating_point.sensitivity", bounds=UNIT, equivalence_margin=0.05)
_run("soft_sens_at_hard_fp", "Soft map's lesion sensitivity at the hard map's FP/image", "Lesion detection",
     "higher", path="metrics:detection.soft_at_hard_fp", bounds=UNIT, equivalence_margin=0.05)
_run("hard_sensitivity", "Hard map's lesion sensitivity (P > 0.5 regions)", "Lesion detection", "higher",
     path="metrics:detection.hard.sensitivity", bounds=UNIT, equivalence_margin=0.05)
# ---------------------------------------------------------------- soft outputs against the hard map
_run("pr_auc", "Pixel PR-AUC", "Soft outputs", "higher", path="metrics:pixel_pr_auc", bounds=UNIT,
     equivalence_margin=0.02)
_run("roc_auc", "Pixel ROC-AUC", "Soft outputs", "higher", path="metrics:pixel_roc_auc", bounds=UNIT)
_run("ece", "Calibration error (ECE)", "Soft outputs", "lower", path="metrics:ece", bounds=UNIT, fmt="{:.4f}",
     equivalence_margin=0.01)
_run("hard_pr_auc", "Pixel PR-AUC of the hard map", "Soft outputs", "higher", value=lambda run: hard_map(run, "ap"),
     bounds=UNIT)
_run("hard_ece", "Calibration error of the hard map", "Soft outputs", "lower", value=lambda run: hard_map(run, "ece"),
     bounds=UNIT, fmt="{:.4f}")
_run("ece_prior", "ECE of the prior-corrected map (margin − ln w)", "Soft outputs", "lower",
     path="metrics:ece_prior_corrected", bounds=UNIT, fmt="{:.4f}", equivalence_margin=0.01)
_run("brier_prior", "Brier score of the prior-corrected map", "Soft outputs", "lower",
     path="metrics:brier_prior_corrected", bounds=UNIT, fmt="{:.4f}", equivalence_margin=0.01)
_run("hard_brier", "Brier score of the hard map (its error rate)", "Soft outputs", "lower",
     value=lambda run: hard_map(run, "ece"), bounds=UNIT, fmt="{:.4f}")
# ---------------------------------------------------------------- checkerboard
_run("kernel_init", "Kernel score at init (worst layer)", "Checkerboard", "lower", value=_kernel_init, bounds=UNIT)
_run("phase_mean_init", "Phase-mean of the logit margin at init", "Checkerboard", "lower",
     path="checkerboard_init:map.phase_mean", bounds=UNIT, equivalence_margin=0.05)
_image("phase_mean_margin_trained", "Phase-mean of the logit margin trained", "Checkerboard", "lower",
       column="phase_mean_margin", bounds=UNIT, equivalence_margin=0.05,
       per_image=lambda m: phase_mean_score(m.margin))
_image("phase_mean_trained", "Phase-mean of P(abnormal) trained", "Checkerboard", "lower", column="phase_mean",
       per_image=lambda m: m.map_scores["phase_mean"], bounds=UNIT, equivalence_margin=0.05)
_run("aliasing_init", "Aliasing fraction at init", "Checkerboard", "lower",
     path="checkerboard_init:map.aliasing_fraction", bounds=UNIT, fmt="{:.4f}")
_image("aliasing_trained", "Aliasing fraction trained", "Checkerboard", "lower", column="aliasing_fraction",
       per_image=lambda m: m.map_scores["aliasing_fraction"], bounds=UNIT, fmt="{:.4f}")
for _where in ("decoder", "output"):
    for _stage, _when in (("init", "at init"), ("trained", "trained")):
        _run(f"{'decoder' if _where == 'decoder' else 'output_upsampling'}_{_stage}",
             f"First upsampling, {_where}, {_when}", "Checkerboard", "lower",
             path=f"metrics:checkerboard.upsampling.{_stage}.{_where}", bounds=UNIT, equivalence_margin=0.05)
# ---------------------------------------------------------------- cost
_run("params_m", "Parameters (M)", "Cost", "lower", source="exact", path="config:params", scale=1e6,
     bounds=POSITIVE, fmt="{:.2f}")
_run("gflops", "GFLOPs / image", "Cost", "lower", source="exact", path="config:flops", scale=1e9, bounds=POSITIVE,
     fmt="{:.2f}")
_run("sec_per_epoch", "Seconds / epoch", "Cost", "lower", path="timing:mean_seconds_per_epoch", bounds=POSITIVE,
     fmt="{:.1f}")
_run("train_img_per_s", "Training images / s", "Cost", "higher", path="timing:train_images_per_second",
     bounds=POSITIVE, fmt="{:.1f}")
_run("epochs_to_quality", f"Epochs to within {WITHIN_BEST:.0%} of the best validation loss", "Cost", "lower",
     value=lambda run: _time_to_quality(run, "epoch"), bounds=POSITIVE, fmt="{:.1f}")
_run("seconds_to_quality", f"Training seconds to within {WITHIN_BEST:.0%} of the best validation loss (machine load included)",
     "Cost", "lower", value=lambda run: _time_to_quality(run, "train_seconds"), bounds=POSITIVE, fmt="{:.0f}")
_run("infer_img_per_s", "Inference images / s", "Cost", "higher", path="metrics:inference.images_per_second",
     bounds=POSITIVE, fmt="{:.1f}")
TIMED = ("sec_per_epoch", "train_img_per_s", "seconds_to_quality", "infer_img_per_s")
"""The metrics read off a clock: they differ between two runs of the same computation (machine load)."""
