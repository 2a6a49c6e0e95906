import math

import numpy as np
import pytest

from mammoseg.metrics import segmentation as M


def brute_auc(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    total = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return total / (len(pos) * len(neg))


def brute_ap(scores, labels):
    """Average precision: one step per distinct threshold, from the highest down."""
    scores, labels = np.asarray(scores), np.asarray(labels, bool)
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(scores.tolist()), reverse=True):
        pred = scores >= t
        tp = np.sum(pred & labels)
        recall = tp / labels.sum()
        ap += (recall - prev_recall) * tp / pred.sum()
        prev_recall = recall
    return ap


def exact_ap(scores, labels):
    """`brute_ap` for many scores: distinct values grouped with np.unique, highest first."""
    labels = np.asarray(labels, bool)
    _, group = np.unique(-np.asarray(scores, np.float64), return_inverse=True)
    positives, seen = np.bincount(group, weights=labels), np.bincount(group)
    return float((positives / labels.sum() * np.cumsum(positives) / np.cumsum(seen)).sum())


def test_dice_iou_hand_cases():
    assert M.dice_iou(2, 1, 1) == (4 / 6, 2 / 4)
    d, i = M.dice_iou(0, 0, 0)
    assert math.isnan(d) and math.isnan(i)
    assert M.dice_iou(0, 3, 0) == (0.0, 0.0)
    p, r, f = M.precision_recall_f1(3, 1, 2)
    assert (p, r) == (0.75, 0.6) and f == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert math.isnan(M.precision_recall_f1(0, 0, 4)[0])


def test_image_stats_and_author_rule():
    prob = np.zeros((30, 25), np.float32)  # 750 pixels: threshold is "more than 1 pixel"
    mask = np.zeros((30, 25), np.uint8)
    prob[0, 0] = 0.9
    s = M.image_stats(prob, mask)
    assert (s.tp, s.fp, s.fn, s.tn) == (0, 1, 0, 749) and not s.predicted_positive and s.dice == 0.0
    prob[0, 1] = 0.6
    assert M.image_stats(prob, mask).predicted_positive
    prob[0, 2] = 0.5  # exactly 0.5 is not above the threshold (argmax tie goes to class 0)
    assert M.image_stats(prob, mask).fp == 2
    empty = M.image_stats(np.zeros((4, 4)), np.zeros((4, 4)))
    assert math.isnan(empty.dice) and math.isnan(empty.iou)


def test_per_image_vs_pooled_and_negatives():
    acc = M.SegmentationAccumulator()
    truth_a = np.zeros((10, 10)); truth_a[:5, :5] = 1         # 25 px, predicted perfectly
    truth_b = np.zeros((10, 10)); truth_b[0, 0] = 1           # 1 px, missed
    prob_a = truth_a * 0.9
    prob_b = np.zeros((10, 10))
    prob_neg = np.zeros((10, 10)); prob_neg[9, 9] = 0.7       # one false-positive pixel
    prob_empty = np.full((10, 10), 0.1)                       # negative, nothing predicted: Dice NaN
    acc.update(np.stack([prob_a, prob_b]), np.stack([truth_a, truth_b])[..., None])
    acc.update(np.stack([prob_neg, prob_empty]), np.zeros((2, 10, 10)))
    s = acc.summary()
    assert s["n_positive_images"] == 2 and s["n_negative_images"] == 2
    assert s["dice_per_image_positives"] == pytest.approx(0.5)           # (1 + 0) / 2
    assert s["dice_pooled_positives"] == pytest.approx(50 / 51)          # 2*25 / (50 + 0 + 1)
    assert s["iou_pooled_positives"] == pytest.approx(25 / 26)
    assert s["dice_per_image_all"] == pytest.approx(1 / 3)               # (1 + 0 + 0 + NaN) nanmean
    assert s["dice_pooled_all"] == pytest.approx(50 / 52)
    assert s["pixel_precision_pooled"] == pytest.approx(25 / 26)
    assert s["pixel_recall_pooled"] == pytest.approx(25 / 26)
    # 100 px images: the author's threshold is 100/750 -> one pixel above 0.5 already counts
    assert s["negatives_fp_rate_author"] == 0.5
    assert s["negatives_fp_rate_maxprob"] == 0.5
    assert s["negatives_max_prob"] == pytest.approx(0.7)
    assert s["negatives_mean_max_prob"] == pytest.approx(0.4)
    assert s["negatives_frac_above_05"] == pytest.approx(0.005)
    assert s["negatives_mean_prob"] == pytest.approx((0.007 + 0.1) / 2)
    # image level: scores 0.9, 0.0 (pos) vs 0.7, 0.1 (neg): 2 of 4 pairs won
    assert s["image_roc_auc_maxprob"] == pytest.approx(0.5)


def test_pixel_aucs_match_brute_force():
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.3
    # scores on a coarse grid: many exact ties, no two distinct values in one bin
    scores = (np.floor(np.clip(rng.normal(0.4 + 0.3 * labels, 0.2), 0, 0.999) * 20) + 0.5) / 20
    acc = M.SegmentationAccumulator()
    acc.update(scores.reshape(3, 10, 10), labels.reshape(3, 10, 10))
    s = acc.summary()
    assert s["pixel_roc_auc"] == pytest.approx(brute_auc(scores, labels), abs=1e-12)
    assert s["pixel_pr_auc"] == pytest.approx(brute_ap(scores, labels), abs=1e-12)
    assert M.roc_auc_exact(scores, labels) == pytest.approx(brute_auc(scores, labels), abs=1e-12)
    assert math.isnan(M.roc_auc_from_histograms(np.zeros(4), np.ones(4)))


def test_score_bins_follow_the_number_line():
    values = np.array([-np.inf, -1e30, -14.0, -1.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 1.0, 14.0, 3e38, np.inf])
    bins = M.ordered_score_bins(values)
    assert (np.diff(bins[:5]) > 0).all() and bins[5] == bins[6] and (np.diff(bins[6:]) > 0).all()
    assert bins[4] < bins[5] and bins.min() >= 0 and bins.max() < 1 << (9 + M.AUC_MANTISSA_BITS)
    # width 2^-11 relative to the power of two below: [14, 14 + 8/2048) is one bin
    assert M.ordered_score_bins(np.array([14.0, 14.0039, 14.004])).tolist() == [bins[10], bins[10], bins[10] + 1]
    with pytest.raises(ValueError, match="NaN"):
        M.ordered_score_bins(np.array([np.nan]))


@pytest.mark.parametrize("neg_logit,pos_logit,pos_sd", [(-14.0, -11.0, 3.0), (-25.0, -12.0, 8.0), (-9.0, 9.0, 6.0)])
def test_pixel_aucs_of_confident_models_are_exact(neg_logit, pos_logit, pos_sd):
    """Most negatives far below P = 1e-4 (logit -9.2), where equal bins on P(abnormal) tie them all."""
    rng = np.random.default_rng(1)
    n = 40 * 32 * 32
    labels = rng.random(n) < 0.1
    margin = np.where(labels, rng.normal(pos_logit, pos_sd, n), rng.normal(neg_logit, 1.5, n))
    prob = (1.0 / (1.0 + np.exp(-margin))).astype(np.float32)
    acc = M.SegmentationAccumulator()
    for part in np.split(np.arange(n), 4):  # streamed in batches
        acc.update(prob[part].reshape(-1, 32, 32), labels[part].reshape(-1, 32, 32), margin[part].reshape(-1, 32, 32))
    s = acc.summary()
    assert s["pixel_roc_auc"] == pytest.approx(M.roc_auc_exact(margin, labels), abs=0.002)
    assert s["pixel_pr_auc"] == pytest.approx(exact_ap(margin, labels), abs=0.002)
    assert exact_ap(margin[:300], labels[:300]) == pytest.approx(brute_ap(margin[:300], labels[:300]), abs=1e-12)
    if neg_logit == -14.0:
        # the former 10,000 equal bins on P(abnormal) tie every pixel below 1e-4
        coarse = np.minimum((prob * 10_000).astype(int), 9_999)
        pos, neg = np.bincount(coarse[labels], minlength=10_000), np.bincount(coarse[~labels], minlength=10_000)
        assert M.roc_auc_from_histograms(pos, neg) < M.roc_auc_exact(margin, labels) - 0.05


def test_ece_hand_example():
    acc = M.SegmentationAccumulator(ece_bins=2)
    # bin [0, .5): p = .2, .2, labels 0, 1 -> |0.2 - 0.5| ; bin [.5, 1]: p = .9, .7 labels 1, 1 -> |0.8 - 1|
    acc.update(np.array([[[0.2, 0.2, 0.9, 0.7]]]), np.array([[[0, 1, 1, 1]]]))
    assert acc.summary()["ece"] == pytest.approx(0.5 * 0.3 + 0.5 * 0.2)
    assert math.isnan(M.expected_calibration_error(np.zeros(3), np.zeros(3), np.zeros(3)))


def test_brier_and_prior_corrected_calibration():
    margin = np.array([[[-2.0, 0.5, 3.0, 1.0]]])
    labels = np.array([[[0, 0, 1, 1]]])
    prob = 1 / (1 + np.exp(-margin))
    plain = M.SegmentationAccumulator(ece_bins=2)
    plain.update(prob, labels, margin)
    summary = plain.summary()
    assert summary["brier"] == pytest.approx(np.mean((prob - labels) ** 2))
    assert summary["ece_prior_corrected"] == pytest.approx(summary["ece"])  # w = 1: nothing to correct
    weighted = M.SegmentationAccumulator(prior_shift=np.log(18.0), ece_bins=2)
    weighted.update(prob, labels, margin)
    corrected = 1 / (1 + 18.0 * np.exp(-margin))  # odds divided by w
    result = weighted.summary()
    assert result["brier_prior_corrected"] == pytest.approx(np.mean((corrected - labels) ** 2))
    assert result["ece"] == summary["ece"] and result["brier"] == summary["brier"]  # the plain ones unchanged
    # bins of the corrected map: [0, .5) holds pixels 0, 1, 3 (labels 0, 0, 1), [.5, 1] pixel 2 (label 1)
    low = abs(corrected[0, 0, [0, 1, 3]].mean() - 1 / 3)
    assert result["ece_prior_corrected"] == pytest.approx(0.75 * low + 0.25 * abs(corrected[0, 0, 2] - 1))
