"""Lesion-level detection on hand-made maps with known answers: candidates, the hit rule, FROC and CPM,
the operating point, and the magnitude-aware "follows the input" measure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mammoseg.metrics import detection as D
from mammoseg.metrics.catalog import ImageMaps, image_columns

SIDE = 64


def _two_lesions() -> tuple[np.ndarray, np.ndarray]:
    """Lesion 0: a disc at (10, 10); lesion 1: a square 36..46. Peaks: one in lesion 0 (5), two in
    lesion 1 (3 and 2), two in the background (4 and 1); a flat 0 elsewhere."""
    mask = np.zeros((SIDE, SIDE), bool)
    rr, cc = np.ogrid[:SIDE, :SIDE]
    mask |= (rr - 10) ** 2 + (cc - 10) ** 2 <= 9
    mask[36:47, 36:47] = True
    margin = np.zeros((SIDE, SIDE))
    for (r, c), v in {(10, 10): 5.0, (25, 50): 4.0, (38, 38): 3.0, (44, 44): 2.0, (55, 5): 1.0}.items():
        margin[r, c] = v
    return margin, mask


def test_components_are_eight_connected():
    mask = np.zeros((6, 6), bool)
    mask[0, 0] = mask[1, 1] = True  # diagonal neighbours: one lesion
    mask[4, 4] = True
    labels, n = D.label_components(mask)
    assert n == 2 and labels[0, 0] == labels[1, 1] != labels[4, 4]


def test_candidates_are_peaks_scored_by_their_height_and_flat_regions_give_none():
    margin, _ = _two_lesions()
    positions, scores, cut = D.find_candidates(margin, radius=2)
    assert scores.tolist() == [5.0, 4.0, 3.0, 2.0, 1.0] and cut == -math.inf
    assert positions.tolist() == [[10, 10], [25, 50], [38, 38], [44, 44], [55, 5]]
    assert len(D.find_candidates(np.full((SIDE, SIDE), 3.0))[1]) == 0  # flat: nothing stands out
    twin = np.zeros((SIDE, SIDE))
    twin[20, 20] = twin[20, 21] = 2.0  # a plateau of two pixels is one candidate
    assert len(D.find_candidates(twin, radius=2)[1]) == 1


def test_a_plateau_is_one_candidate_at_its_centre_inside_the_lesion_it_covers():
    mask = np.zeros((SIDE, SIDE), bool)
    mask[28:37, 28:37] = True  # a 9x9 lesion
    margin = np.full((SIDE, SIDE), -2.0)
    margin[20:45, 20:45] = 0.5  # saturated over the lesion and 8 px beyond on every side
    margin[5, 5] = 0.1  # a lower peak elsewhere
    positions, scores, _ = D.find_candidates(margin, radius=2)
    assert scores.tolist() == [0.5, 0.1] and positions.tolist() == [[32, 32], [5, 5]]
    found = D.detect(margin, mask)
    assert found.lesion.tolist() == [0, -1] and found.lesions_found(0.5) == 1
    ring = np.full((SIDE, SIDE), -2.0)
    ring[20:45, 20:45] = 0.5
    ring[30:35, 30:35] = -2.0  # a hollow plateau: the candidate stays on it, at the pixel nearest its centre
    (r, c), = D.find_candidates(ring, radius=2)[0].tolist()
    assert ring[r, c] == 0.5 and abs(r - 32) + abs(c - 32) <= 5


def test_hit_rule_counts_each_lesion_once_and_every_other_candidate_as_false():
    margin, mask = _two_lesions()
    found = D.detect(margin, mask)
    assert found.n_lesions == 2 and found.lesion.tolist() == [0, -1, 1, 1, -1]
    assert found.false_positives(0.5) == 2 and found.lesions_found(0.5) == 2
    assert found.false_positives(3.5) == 1 and found.lesions_found(3.5) == 1
    curve = D.froc([found])
    assert curve.thresholds.tolist() == [5.0, 4.0, 3.0, 1.0]  # the second peak in lesion 1 is neither hit nor FP
    assert curve.sensitivity.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert curve.fp_per_image.tolist() == [0.0, 1.0, 1.0, 2.0]
    assert curve.sensitivity_at(0.25) == 0.5 and curve.sensitivity_at(1.0) == 1.0
    assert curve.threshold_for(0.8) == 3.0 and math.isnan(D.froc([D.detect(margin, 0 * mask)]).threshold_for(0.8))


def test_froc_over_images_counts_false_positives_per_image_and_the_cpm():
    margin, mask = _two_lesions()
    empty = np.zeros((SIDE, SIDE))
    empty[30, 30] = 4.5  # a normal image with one false positive above every hit but the best
    curve = D.froc([D.detect(margin, mask), D.detect(empty, np.zeros_like(mask)), D.detect(empty * 0, 0 * mask)])
    assert curve.n_images == 3 and curve.n_lesions == 2
    # thresholds 5, 4.5, 4, 3, 1: FP per image 0, 1/3, 2/3, 2/3, 1; sensitivity .5 .5 .5 1 1
    assert curve.sensitivity_at(0.5) == 0.5 and curve.sensitivity_at(2 / 3) == 1.0
    expected = np.mean([0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0])  # at 1/8, 1/4, 1/2, 1, 2, 4, 8
    assert curve.cpm() == pytest.approx(expected)
    assert D.froc_summary(curve)["sensitivity_at_0.25fp"] == 0.5


def test_a_curve_stops_where_an_image_was_cut(monkeypatch):
    monkeypatch.setattr(D, "MAX_CANDIDATES", 2)
    margin, mask = _two_lesions()
    found = D.detect(margin, mask)
    assert found.cut == 3.0 and len(found.scores) == 2
    assert D.froc([found]).thresholds.tolist() == [5.0, 4.0]  # below 3 this image's candidates are unknown


def test_circle_annotations_hit_inside_the_disc():
    mask = np.zeros((SIDE, SIDE), bool)
    mask[15:25, 15:25] = True  # its disc: centre (19.5, 19.5), through the corner pixels (radius 6.4 + 0.5)
    beside = np.array([[19, 25], [15, 15], [30, 30]])  # just right of the square, its corner, far away
    assert D.match_candidates(beside, mask)[0].tolist() == [-1, 0, -1]
    assert D.match_candidates(beside, mask, circle=True)[0].tolist() == [0, 0, -1]
    clipped = np.zeros((SIDE, SIDE), bool)
    rr, cc = np.ogrid[:SIDE, :SIDE]
    clipped |= (rr - 2) ** 2 + (cc - 30) ** 2 <= 36  # a disc cut by the tile's top edge
    inside = np.argwhere(clipped)
    assert (D.match_candidates(inside, clipped, circle=True)[0] == 0).all()  # every pixel of the mask is a hit


def test_the_hard_map_as_a_detector_one_candidate_per_region():
    _, mask = _two_lesions()
    margin = np.full((SIDE, SIDE), -3.0)
    margin[8:13, 8:13] = 1.0  # over lesion 0
    margin[50:55, 50:55] = 2.0  # on nothing
    found = D.hard_detect(margin, mask)
    assert found.lesion.tolist() == [0, -1] and found.lesions_found(0.5) == 1 and found.false_positives(0.5) == 1


def _breast() -> tuple[np.ndarray, np.ndarray]:
    """An input brightening left to right, background (its minimum) in the first 8 columns, one lesion."""
    image = np.tile(np.linspace(0.2, 1.0, SIDE), (SIDE, 1))
    image[:, :8] = 0.0
    mask = np.zeros((SIDE, SIDE), bool)
    mask[30:36, 20:26] = True
    return image, mask


def _blur(image: np.ndarray) -> np.ndarray:
    kernel = np.ones(9) / 9
    rows = np.apply_along_axis(lambda r: np.convolve(r, kernel, "same"), 1, image)
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, "same"), 0, rows)


def _at_operating_point(image, margin, mask, threshold=0.0) -> dict[str, float]:
    prob = 1 / (1 + np.exp(-margin))
    return image_columns(ImageMaps(image, prob, margin, mask, "negative", threshold))


def test_follows_the_input_sees_magnitude():
    image, mask = _breast()
    flat = _at_operating_point(image, np.full((SIDE, SIDE), -4.0), mask)  # harmless near-flat map
    assert flat["fp_area_op"] == 0.0 and math.isnan(flat["bright_fp_share_op"])
    assert flat["fp_candidates_op"] == 0 and flat["flagged_op"] == 0.0
    blurred = _blur(image)
    follows = _at_operating_point(image, 20 * (blurred - np.quantile(blurred, 0.8)), mask)
    assert follows["bright_fp_share_op"] > 0.9 and follows["fp_area_op"] > 0.1 and follows["flagged_op"] == 1.0
    lesions_only = _at_operating_point(image, np.where(mask, 5.0, -5.0), mask)
    assert lesions_only["fp_area_op"] == 0.0 and lesions_only["fp_candidates_op"] == 0
    noise = _at_operating_point(image, np.random.default_rng(0).normal(-1.0, 1.0, (SIDE, SIDE)), mask)
    assert noise["bright_fp_share_op"] == pytest.approx(1 / 3, abs=0.05)  # chance
    unset = _at_operating_point(image, blurred, mask, threshold=math.nan)
    assert all(math.isnan(unset[k]) for k in ("fp_area_op", "bright_fp_share_op", "fp_candidates_op", "flagged_op"))
