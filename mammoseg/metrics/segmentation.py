"""Segmentation metrics with their conventions named (docs/design.md §5), computed by streaming over batches.

Conventions used throughout:

* The abnormal class is class 1; a pixel is predicted abnormal when P(abnormal) > 0.5, which is what the
  argmax of a two-class softmax gives (a tie at exactly 0.5 goes to class 0, as argmax does).
* A *positive image* has at least one abnormal pixel in its mask; a *negative image* has none. A *normal
  image* (kind `normal`: a whole mammogram without abnormality from another collection) is reported on
  its own, apart from the negatives (tiles of CBIS-DDSM images away from every abnormality).
* Per-image Dice/IoU follow nnU-Net: NaN when truth and prediction are both empty, averaged with nanmean.
  Pooled Dice/IoU come from one confusion matrix summed over all pixels of the images concerned.
* The author's image-level rule: an image is predicted positive when more than S²/750 of its pixels
  (H·W/750 for a non-square map; 546 at 640x640) are above 0.5.
* Pixel ROC-AUC and PR-AUC rank pixels by the logit margin l1 − l0 (the log-odds of P(abnormal); by
  P(abnormal) itself when no margin is given), streamed into histograms whose bins follow the float32
  number line: 2^(9 + AUC_MANTISSA_BITS) bins, each a relative width of 2^-AUC_MANTISSA_BITS (5e-4),
  over the whole float32 range. Every value inside one bin is treated as one tied score, so the result
  is the exact AUC up to ties within 0.05% of a score, in constant memory (16 MB) however many pixels
  are seen. Equal bins on P(abnormal) would not do: a confident model puts most negatives below
  P = 1e-4, where they would all tie.
* Expected calibration error: 15 equal-width bins of P(abnormal); ECE = Σ_b (n_b / N) · |mean p_b − mean y_b|
  (the calibration of the abnormal-class probability, not of the top-label confidence). Brier score: the
  mean of (p − y)² over pixels.
* Prior-corrected calibration: a loss that weighs abnormal pixels w times multiplies the odds the network
  learns by w, so P > 0.5 means a calibrated posterior above only 1/(1+w). ECE and Brier are also computed
  on sigmoid(margin − ln w), the probability an unweighted softmax would give, so that soft against hard
  compares what the softmax gives and not what the weighting did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mammoseg.core.conventions import AUTHOR_PIXEL_DIVISOR, abnormal_probability, author_pixel_threshold
from mammoseg.metrics.declaration import NORMAL_KIND, in_subset

AUC_MANTISSA_BITS = 11
ECE_BINS = 15


def brightness_correlation(image: np.ndarray, prob: np.ndarray) -> float:
    """Pearson correlation of P(abnormal) with the input's intensity over the image's non-background pixels.

    The article's failure on images without abnormality: a map that "highlights the parts of the input
    with higher pixel values". Pixels at the image's minimum (the background a crop of the breast keeps)
    are left out, so the breast's outline alone cannot make the correlation. NaN when either is constant.
    """
    image = np.asarray(image, dtype=np.float64)
    prob = np.asarray(prob, dtype=np.float64)
    keep = image > image.min()
    x, y = image[keep], prob[keep]
    if x.size < 2 or x.std() == 0.0 or y.std() == 0.0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def dice_iou(tp: float, fp: float, fn: float) -> tuple[float, float]:
    """Dice and IoU of the abnormal class from confusion counts; NaN for both when truth and prediction are empty."""
    if tp + fp + fn == 0:
        return math.nan, math.nan
    return 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)


def precision_recall_f1(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """Pixel precision/recall/F1 of the abnormal class; NaN where the denominator is zero."""
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    return precision, recall, f1


def ordered_score_bins(scores: np.ndarray, mantissa_bits: int = AUC_MANTISSA_BITS) -> np.ndarray:
    """Histogram bin of each score: float32 values in their numeric order, 2^(9 + mantissa_bits) bins.

    The float32 bit pattern, with the sign handled so that integer order is numeric order, keeps
    its sign, exponent and leading `mantissa_bits` mantissa bits: bins are 2^-mantissa_bits wide
    relative to the value at every normal magnitude (denormals, below 1.2e-38, share a few bins), out to
    the infinities. -0.0 and 0.0 share a bin.
    """
    x = np.asarray(scores, dtype=np.float32).ravel() + np.float32(0.0)  # -0.0 + 0.0 is 0.0
    if np.isnan(x).any():
        raise ValueError("scores contain NaN")
    bits = x.view(np.uint32)
    key = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
    return (key >> np.uint32(23 - mantissa_bits)).astype(np.int64)


def roc_auc_from_histograms(pos_hist: np.ndarray, neg_hist: np.ndarray) -> float:
    """ROC-AUC = P(score_pos > score_neg) + ½ P(tie), where each histogram bin is one tied score.

    NaN when either class is absent.
    """
    pos = np.asarray(pos_hist, dtype=np.float64)
    neg = np.asarray(neg_hist, dtype=np.float64)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    neg_below = np.cumsum(neg) - neg
    return float((pos * (neg_below + 0.5 * neg)).sum() / (n_pos * n_neg))


def average_precision_from_histograms(pos_hist: np.ndarray, neg_hist: np.ndarray) -> float:
    """PR-AUC as average precision: Σ_k (R_k − R_{k−1}) · P_k over thresholds from the highest bin down.

    Each non-empty bin is one threshold (its pixels are tied), the step-wise definition that does not
    interpolate between operating points. NaN when there are no positive pixels.
    """
    pos = np.asarray(pos_hist, dtype=np.float64)[::-1]
    neg = np.asarray(neg_hist, dtype=np.float64)[::-1]
    n_pos = pos.sum()
    if n_pos == 0:
        return math.nan
    tp = np.cumsum(pos)
    fp = np.cumsum(neg)
    seen = (pos + neg) > 0
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    return float((pos[seen] / n_pos * precision[seen]).sum())


def roc_auc_exact(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact ROC-AUC (Mann–Whitney U with tied ranks averaged) for modest numbers of scores, e.g. one per image."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    mean_rank = first_rank + (counts - 1) / 2.0
    ranks = mean_rank[inverse]
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def expected_calibration_error(counts: np.ndarray, sum_prob: np.ndarray, sum_label: np.ndarray) -> float:
    """ECE from per-bin pixel counts, summed probabilities and summed labels."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return math.nan
    filled = counts > 0
    gap = np.abs(sum_prob[filled] - sum_label[filled]) / counts[filled]
    return float((counts[filled] / total * gap).sum())


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or np.all(np.isnan(arr)):
        return math.nan
    return float(np.nanmean(arr))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


@dataclass
class ImageStats:
    """Everything per image that the summaries need: confusion counts and the probability statistics."""

    positive: bool
    tp: int
    fp: int
    fn: int
    tn: int
    max_prob: float
    mean_prob: float
    frac_above_05: float
    predicted_positive: bool
    normal: bool = False  # a normal mammogram (kind `normal`), counted apart from the negatives

    @property
    def dice(self) -> float:
        return dice_iou(self.tp, self.fp, self.fn)[0]

    @property
    def iou(self) -> float:
        return dice_iou(self.tp, self.fp, self.fn)[1]

    def as_row(self) -> dict[str, Any]:
        return {"dice": self.dice, "iou": self.iou, "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
                "max_prob": self.max_prob, "mean_prob": self.mean_prob, "frac_above_05": self.frac_above_05,
                "predicted_positive": self.predicted_positive}


def image_stats(prob: np.ndarray, mask: np.ndarray) -> ImageStats:
    """Statistics of one probability map `prob` (H, W) against its binary `mask` (H, W)."""
    prob = np.asarray(prob, dtype=np.float32)
    truth = np.asarray(mask) > 0.5
    pred = prob > 0.5
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    tn = int(truth.size - tp - fp - fn)
    above = tp + fp
    return ImageStats(
        positive=bool(truth.any()), tp=tp, fp=fp, fn=fn, tn=tn,
        max_prob=float(prob.max()), mean_prob=float(prob.mean(dtype=np.float64)),
        frac_above_05=above / truth.size,
        predicted_positive=above > author_pixel_threshold(*truth.shape),
    )


@dataclass
class SegmentationAccumulator:
    """Streams batches of probability maps and masks; keeps per-image rows and fixed-size histograms only.
    `prior_shift` is ln w of the loss's positive weight w, taken off the margin for the prior-corrected
    calibration."""

    prior_shift: float = 0.0
    auc_mantissa_bits: int = AUC_MANTISSA_BITS
    ece_bins: int = ECE_BINS
    images: list[ImageStats] = field(default_factory=list)
    pos_hist: np.ndarray = field(init=False)
    neg_hist: np.ndarray = field(init=False)
    ece_count: np.ndarray = field(init=False)
    ece_prob: np.ndarray = field(init=False)
    ece_label: np.ndarray = field(init=False)
    corrected: np.ndarray = field(init=False)  # prior-corrected ECE sums: count, prob, label per bin
    brier: np.ndarray = field(init=False)  # Σ (p − y)², raw and prior-corrected

    def __post_init__(self) -> None:
        n_bins = 1 << (9 + self.auc_mantissa_bits)
        self.pos_hist = np.zeros(n_bins, dtype=np.int64)
        self.neg_hist = np.zeros(n_bins, dtype=np.int64)
        self.ece_count = np.zeros(self.ece_bins, dtype=np.int64)
        self.ece_prob = np.zeros(self.ece_bins, dtype=np.float64)
        self.ece_label = np.zeros(self.ece_bins, dtype=np.float64)
        self.corrected = np.zeros((3, self.ece_bins), dtype=np.float64)
        self.brier = np.zeros(2, dtype=np.float64)

    def update(self, prob: np.ndarray, mask: np.ndarray, margin: np.ndarray | None = None,
               kinds: Sequence[str] | None = None) -> list[ImageStats]:
        """Add a batch: `prob` and `mask` of shape (B, H, W) (a trailing channel of 1 is dropped).

        `margin`, the logit margin l1 − l0 of the same pixels, ranks them for the AUCs; without it
        P(abnormal) does, which saturates in float32 for confident pixels near 1. `kinds`, the
        examples' kinds, tells the normal images apart.
        """
        prob = np.asarray(prob, dtype=np.float32)
        mask = np.asarray(mask)
        if prob.ndim == 4:
            prob = prob[..., 0]
        if mask.ndim == 4:
            mask = mask[..., 0]
        truth = mask > 0.5
        flat_p, flat_t = prob.ravel(), truth.ravel()
        idx = ordered_score_bins(flat_p if margin is None else margin, self.auc_mantissa_bits)
        if idx.size != flat_t.size:
            raise ValueError(f"margin has {idx.size} values for {flat_t.size} pixels")
        self.pos_hist += np.bincount(idx[flat_t], minlength=self.pos_hist.size)
        self.neg_hist += np.bincount(idx[~flat_t], minlength=self.neg_hist.size)
        eidx = np.minimum((flat_p * self.ece_bins).astype(np.int64), self.ece_bins - 1)
        self.ece_count += np.bincount(eidx, minlength=self.ece_bins)
        self.ece_prob += np.bincount(eidx, weights=flat_p, minlength=self.ece_bins)
        labels = flat_t.astype(np.float64)
        self.ece_label += np.bincount(eidx, weights=labels, minlength=self.ece_bins)
        self._add_prior_corrected(flat_p, labels, margin)
        stats = [image_stats(p, t) for p, t in zip(prob, truth)]
        for s, kind in zip(stats, kinds if kinds is not None else []):
            s.normal = kind == NORMAL_KIND
        self.images.extend(stats)
        return stats

    def _add_prior_corrected(self, prob: np.ndarray, labels: np.ndarray, margin: np.ndarray | None) -> None:
        """Brier sums, and the calibration bins of sigmoid(margin − ln w)."""
        if margin is None:
            with np.errstate(divide="ignore"):
                margin = np.log(prob.astype(np.float64)) - np.log1p(-prob.astype(np.float64))
        corrected = abnormal_probability(np.asarray(margin, np.float64).ravel() - self.prior_shift)
        self.brier += (np.sum((prob - labels) ** 2), np.sum((corrected - labels) ** 2))
        bins = np.minimum((corrected * self.ece_bins).astype(np.int64), self.ece_bins - 1)
        for row, weights in enumerate((None, corrected, labels)):
            self.corrected[row] += np.bincount(bins, weights=weights, minlength=self.ece_bins)

    def _subset(self, subset: str) -> list[ImageStats]:
        return [s for s in self.images if in_subset(subset, s.positive, s.normal)]

    def summary(self) -> dict[str, Any]:
        """All metrics, named by convention (per_image vs pooled, positives vs negatives vs all)."""
        pos, neg, normals = self._subset("positives"), self._subset("negatives"), self._subset("normals")
        out: dict[str, Any] = {
            "n_images": len(self.images), "n_positive_images": len(pos), "n_negative_images": len(neg),
            "conventions": {
                "positive_image": "mask has at least one abnormal pixel",
                "hard_prediction": "P(abnormal) > 0.5 (argmax of the two-class softmax)",
                "per_image": "nnU-Net: NaN when truth and prediction are both empty; nanmean",
                "pooled": "one confusion matrix summed over the images concerned",
                "author_image_rule": f"predicted positive when more than H*W/{AUTHOR_PIXEL_DIVISOR} pixels "
                                     "are above 0.5",
                "pixel_auc": "pixels ranked by the logit margin l1 - l0 in float32-ordered bins of relative width "
                             f"2^-{self.auc_mantissa_bits}; a bin is one tied score",
                "ece": f"{self.ece_bins} equal-width bins of P(abnormal); weighted |mean p - mean y|",
                "prior_corrected": "ECE and Brier of sigmoid(margin - prior_shift), prior_shift = ln w of the "
                                   "loss's positive weight w",
            },
        }
        for group, items in (("positives", pos), ("all", self.images)):
            tp = sum(s.tp for s in items)
            fp = sum(s.fp for s in items)
            fn = sum(s.fn for s in items)
            dice, iou = dice_iou(tp, fp, fn)
            out[f"dice_per_image_{group}"] = _nanmean([s.dice for s in items])
            out[f"iou_per_image_{group}"] = _nanmean([s.iou for s in items])
            out[f"dice_pooled_{group}"] = dice
            out[f"iou_pooled_{group}"] = iou
        tp = sum(s.tp for s in self.images)
        fp = sum(s.fp for s in self.images)
        fn = sum(s.fn for s in self.images)
        precision, recall, f1 = precision_recall_f1(tp, fp, fn)
        n_pixels = int(self.ece_count.sum())
        out.update({
            "pixel_precision_pooled": precision, "pixel_recall_pooled": recall, "pixel_f1_pooled": f1,
            "pixel_roc_auc": roc_auc_from_histograms(self.pos_hist, self.neg_hist),
            "pixel_pr_auc": average_precision_from_histograms(self.pos_hist, self.neg_hist),
            "pixel_positive_rate": float(self.pos_hist.sum() / max(1, self.pos_hist.sum() + self.neg_hist.sum())),
            "ece": expected_calibration_error(self.ece_count, self.ece_prob, self.ece_label),
            "brier": float(self.brier[0] / n_pixels) if n_pixels else math.nan,
            "ece_prior_corrected": expected_calibration_error(*self.corrected),
            "brier_prior_corrected": float(self.brier[1] / n_pixels) if n_pixels else math.nan,
            "prior_shift": self.prior_shift,
            "negatives_fp_rate_author": _mean([float(s.predicted_positive) for s in neg]),
            "negatives_fp_rate_maxprob": _mean([float(s.max_prob > 0.5) for s in neg]),
            "negatives_mean_prob": _mean([s.mean_prob for s in neg]),
            "negatives_mean_max_prob": _mean([s.max_prob for s in neg]),
            "negatives_max_prob": max((s.max_prob for s in neg), default=math.nan),
            "negatives_frac_above_05": _mean([s.frac_above_05 for s in neg]),
            "positives_detected_author": _mean([float(s.predicted_positive) for s in pos]),
            "image_roc_auc_maxprob": roc_auc_exact([s.max_prob for s in self.images],
                                                   [s.positive for s in self.images]),
        })
        if normals:
            out["conventions"]["normal_image"] = ("kind normal: a whole mammogram without abnormality from another "
                                                  "collection; not among the negatives")
            out.update({
                "n_normal_images": len(normals),
                "normals_fp_rate_author": _mean([float(s.predicted_positive) for s in normals]),
                "normals_fp_rate_maxprob": _mean([float(s.max_prob > 0.5) for s in normals]),
                "normals_mean_prob": _mean([s.mean_prob for s in normals]),
                "normals_mean_max_prob": _mean([s.max_prob for s in normals]),
                "normals_max_prob": max(s.max_prob for s in normals),
                "normals_frac_above_05": _mean([s.frac_above_05 for s in normals]),
            })
        return out
