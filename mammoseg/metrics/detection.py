"""Lesion-level detection, the measure mammography CAD is judged by (docs/design.md §5): candidates, hits,
FROC, CPM, an operating point chosen on validation, and what a map flags at that point.

* **Candidates**: the peaks of the logit margin (connected sets of (2r+1)²-window maxima, r = side/32,
  with something lower within the window; a plateau is one peak, at its pixel nearest its centre),
  strongest first, none within r of a stronger one, at most MAX_CANDIDATES an image. A candidate's
  score is its peak margin.
* **Hit**: a candidate whose peak lies inside a lesion (a connected component of the truth mask,
  8-connected; for a circle-annotated image, inside the disc about the component's centroid that holds all
  its pixels: the mask's disc itself, also where a tile clips it or two discs join, so a circle annotation,
  a generous outline by nature, never misses a peak the mask holds).
  A lesion counts once, by its best candidate; further candidates inside a lesion already found are
  neither hits nor false positives (LUNA16); every other candidate is a false positive.
* **FROC**: sensitivity (lesions found / lesions) against mean false positives per image over every
  image scored (abnormal images, negative tiles and normal mammograms alike), as the score threshold
  falls. Sensitivity at a rate is the best one whose mean FP per image stays at or below it. CPM:
  the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 FP per image. Where an image's candidates were cut
  at MAX_CANDIDATES, the curve stops above the highest cut score, so every point it shows is exact.
* **Operating point**: the highest margin threshold at which the validation split's sensitivity reaches
  TARGET_SENSITIVITY, applied to the test images. There an image is flagged when its peak margin
  reaches the threshold; its false-positive area is the share of its pixels outside the truth at or
  above it; `bright_fp_share` is the share of those pixels, inside the breast (above the input's
  minimum), that lie in the brightest third of the breast by input intensity: ⅓ by chance, 1 for a
  map that follows bright tissue, NaN when there is no false-positive pixel (no burden). The share sees
  where the false positives fall, not how many there are; `bright_fp_area`, the share of the image's
  pixels that are false positives on the brightest third, sees both: 0 for a map with no false positive
  however it correlates with the input (a near-flat map), large for one that lights bright tissue.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

PEAK_RADIUS_FRACTION = 1 / 32
MAX_CANDIDATES = 100
FROC_RATES = (0.25, 0.5, 1.0, 2.0, 4.0)
CPM_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
TARGET_SENSITIVITY = 0.8


def peak_radius(side: int) -> int:
    """Suppression radius of candidates: side/32 (4 px at 128, 8 at 256, 20 at 640), at least 1."""
    return max(1, int(round(side * PEAK_RADIUS_FRACTION)))


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean (H, W) mask: labels 1..n (0 outside) and n."""
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3), dtype=bool))
    return labels, int(n)


def find_candidates(score: np.ndarray, radius: int | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Candidate peaks of a (H, W) score map: their (row, col) positions as (n, 2), their scores (strongest
    first), and the score of the strongest peak left out by MAX_CANDIDATES (-inf when none was).

    A peak is a connected set of window maxima (one value: two window maxima within a window of each other are
    equal), placed at its pixel nearest its centroid. A plateau, as where a map saturates over a lesion and
    beyond, is then one candidate at its centre rather than a row of candidates along its rim, which may lie
    outside the lesion it covers. A plateau with nothing lower within its window (a flat map) is no peak."""
    score = np.asarray(score, dtype=np.float64)
    radius = peak_radius(max(score.shape)) if radius is None else radius
    window = 2 * radius + 1
    high = ndimage.maximum_filter(score, size=window, mode="constant", cval=-np.inf)
    low = ndimage.minimum_filter(score, size=window, mode="constant", cval=np.inf)
    peaks, n = label_components(score >= high)
    rr, cc = np.nonzero(peaks)
    label = peaks[rr, cc]
    standing = np.zeros(n + 1, dtype=bool)
    standing[label[high[rr, cc] > low[rr, cc]]] = True
    area = np.bincount(label, minlength=n + 1)
    centre_r = np.bincount(label, weights=rr, minlength=n + 1) / np.maximum(area, 1)
    centre_c = np.bincount(label, weights=cc, minlength=n + 1) / np.maximum(area, 1)
    nearest = np.lexsort((np.hypot(rr - centre_r[label], cc - centre_c[label]), label))
    first = nearest[np.r_[True, label[nearest][1:] != label[nearest][:-1]]] if label.size else nearest
    first = first[standing[label[first]]]
    rows, cols = rr[first], cc[first]
    order = np.argsort(-score[rows, cols], kind="stable")
    rows, cols = rows[order], cols[order]
    values = score[rows, cols]
    keep = np.ones(len(values), dtype=bool)
    # Two peaks within the radius of each other hold the same value: only ties need suppressing.
    for i in np.nonzero(values[1:] == values[:-1])[0] + 1:
        j = i - 1
        while j >= 0 and values[j] == values[i]:
            if keep[j] and abs(rows[i] - rows[j]) <= radius and abs(cols[i] - cols[j]) <= radius:
                keep[i] = False
                break
            j -= 1
    rows, cols, values = rows[keep], cols[keep], values[keep]
    cut = float(values[MAX_CANDIDATES]) if len(values) > MAX_CANDIDATES else -math.inf
    rows, cols, values = rows[:MAX_CANDIDATES], cols[:MAX_CANDIDATES], values[:MAX_CANDIDATES]
    return np.stack([rows, cols], axis=1).astype(np.int64), values, cut


def match_candidates(positions: np.ndarray, mask: np.ndarray, circle: bool = False) -> tuple[np.ndarray, int]:
    """The lesion (0-based, -1 for none) each candidate's peak lies in, and the image's number of lesions."""
    labels, n = label_components(np.asarray(mask) > 0.5)
    positions = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    if not circle:
        return labels[positions[:, 0], positions[:, 1]].astype(np.int64) - 1, n
    lesion = np.full(len(positions), -1, dtype=np.int64)
    rr, cc = np.nonzero(labels)
    area = np.bincount(labels[rr, cc], minlength=n + 1)[1:]
    centre_r = np.bincount(labels[rr, cc], weights=rr, minlength=n + 1)[1:] / np.maximum(area, 1)
    centre_c = np.bincount(labels[rr, cc], weights=cc, minlength=n + 1)[1:] / np.maximum(area, 1)
    reach = np.zeros(n)
    np.maximum.at(reach, labels[rr, cc] - 1, np.hypot(rr - centre_r[labels[rr, cc] - 1], cc - centre_c[labels[rr, cc] - 1]))
    for k in range(n - 1, -1, -1):  # the lowest-numbered disc wins where two overlap
        lesion[np.hypot(positions[:, 0] - centre_r[k], positions[:, 1] - centre_c[k]) <= reach[k] + 0.5] = k
    return lesion, n


@dataclass
class ImageDetections:
    """One image's candidates: scores (strongest first), the lesion each hits (-1: none), its number of
    lesions, and the score below which its candidates were cut (-inf when none was)."""

    scores: np.ndarray
    lesion: np.ndarray
    n_lesions: int
    cut: float = -math.inf

    def false_positives(self, threshold: float) -> int:
        return int(np.count_nonzero((self.lesion < 0) & (self.scores >= threshold)))

    def lesions_found(self, threshold: float) -> int:
        return int(np.unique(self.lesion[(self.lesion >= 0) & (self.scores >= threshold)]).size)


def detect(margin: np.ndarray, mask: np.ndarray, circle: bool = False) -> ImageDetections:
    """Candidates of one logit-margin map, matched to the lesions of its truth mask."""
    positions, scores, cut = find_candidates(margin)
    lesion, n = match_candidates(positions, mask, circle)
    return ImageDetections(scores, lesion, n, cut)


def hard_detect(margin: np.ndarray, mask: np.ndarray, circle: bool = False) -> ImageDetections:
    """The hard map (margin > 0) as a detector: each connected region one candidate at its peak, all tied."""
    margin = np.asarray(margin, dtype=np.float64)
    labels, _ = label_components(margin > 0)
    peaks = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        inside = np.where(labels[box] == k, margin[box], -np.inf)
        r, c = np.unravel_index(int(np.argmax(inside)), inside.shape)
        peaks.append((r + box[0].start, c + box[1].start))
    positions = np.asarray(peaks, dtype=np.int64).reshape(-1, 2)
    lesion, n_lesions = match_candidates(positions, mask, circle)
    return ImageDetections(np.ones(len(positions)), lesion, n_lesions)


@dataclass(frozen=True)
class Froc:
    """A FROC curve as the threshold falls: thresholds, sensitivity and mean FP per image at each."""

    thresholds: np.ndarray
    sensitivity: np.ndarray
    fp_per_image: np.ndarray
    n_lesions: int
    n_images: int

    def sensitivity_at(self, rate: float) -> float:
        """The best sensitivity whose mean false positives per image stay at or below `rate`."""
        if self.n_lesions == 0 or self.n_images == 0:
            return math.nan
        within = self.fp_per_image <= rate
        return float(self.sensitivity[within].max()) if within.any() else 0.0

    def cpm(self) -> float:
        """Competition performance metric: mean sensitivity at 1/8 … 8 false positives per image."""
        return float(np.mean([self.sensitivity_at(r) for r in CPM_RATES])) if self.n_lesions else math.nan

    def threshold_for(self, sensitivity: float) -> float:
        """The highest threshold reaching `sensitivity`; NaN when the curve never does."""
        reached = np.nonzero(self.sensitivity >= sensitivity - 1e-12)[0]
        return float(self.thresholds[reached[0]]) if reached.size and self.n_lesions else math.nan


def froc(images: Sequence[ImageDetections]) -> Froc:
    """The FROC curve of a set of images (see the module docstring)."""
    best: list[float] = []
    false: list[np.ndarray] = []
    for image in images:
        for k in range(image.n_lesions):
            hits = image.scores[image.lesion == k]
            best.append(float(hits.max()) if hits.size else -math.inf)
        false.append(image.scores[image.lesion < 0])
    best_scores = np.sort(np.asarray(best, dtype=np.float64))
    fp_scores = np.sort(np.concatenate(false)) if false else np.zeros(0)
    floor = max((image.cut for image in images), default=-math.inf)
    thresholds = np.unique(np.concatenate([best_scores, fp_scores]))[::-1]
    thresholds = thresholds[np.isfinite(thresholds) & (thresholds > floor)]
    n_lesions, n_images = len(best), len(images)
    found = best_scores.size - np.searchsorted(best_scores, thresholds, side="left")
    fps = fp_scores.size - np.searchsorted(fp_scores, thresholds, side="left")
    return Froc(thresholds, found / max(n_lesions, 1), fps / max(n_images, 1), n_lesions, n_images)


def froc_summary(curve: Froc) -> dict[str, float]:
    """Sensitivity at FROC_RATES and the CPM, named by rate (`sensitivity_at_0.25fp`, ..., `cpm`)."""
    out = {f"sensitivity_at_{rate:g}fp": curve.sensitivity_at(rate) for rate in FROC_RATES}
    out["cpm"] = curve.cpm()
    return out


def breast_thirds(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The breast (pixels above the input's minimum) and its brightest third by input intensity."""
    image = np.asarray(image, dtype=np.float64)
    breast = image > image.min()
    if not breast.any():
        return breast, breast
    return breast, breast & (image >= np.quantile(image[breast], 2 / 3))


def fp_area(margin: np.ndarray, mask: np.ndarray, threshold: float) -> float:
    """Share of the image's pixels outside the truth whose margin reaches the threshold."""
    if not math.isfinite(threshold):
        return math.nan
    return float(np.mean((np.asarray(margin) >= threshold) & ~(np.asarray(mask) > 0.5)))


def bright_fp_share(image: np.ndarray, margin: np.ndarray, mask: np.ndarray, threshold: float) -> float:
    """Share of the false-positive pixels inside the breast that lie in its brightest third (chance ⅓);
    NaN without a threshold or without a false-positive pixel."""
    if not math.isfinite(threshold):
        return math.nan
    breast, bright = breast_thirds(image)
    false = (np.asarray(margin) >= threshold) & ~(np.asarray(mask) > 0.5) & breast
    n = int(np.count_nonzero(false))
    return float(np.count_nonzero(false & bright) / n) if n else math.nan


def bright_fp_area(image: np.ndarray, margin: np.ndarray, mask: np.ndarray, threshold: float) -> float:
    """Share of the image's pixels that are false positives on the brightest third of the breast."""
    if not math.isfinite(threshold):
        return math.nan
    _, bright = breast_thirds(image)
    return float(np.mean((np.asarray(margin) >= threshold) & ~(np.asarray(mask) > 0.5) & bright))
