"""Lesion detection in an evaluation (docs/design.md §5): the operating point chosen on the validation split,
the candidates of every evaluated image, and their FROC summary.

The operating point is chosen per run, on the validation images, before the evaluated split is scored,
so the threshold never sees the images it is judged on. What is kept of the candidates (their scores and
whether each hit a lesion, per image) is enough to redraw the FROC curves (`detections.npz`, written by `RunDir.write_evaluation`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mammoseg.core.conventions import logit_margin
from mammoseg.metrics import detection
from mammoseg.metrics.detection import ImageDetections

CIRCLE_COLUMN = "annotation"
"""Manifest column that marks circle-annotated lesions (value `circle`); absent: outlines."""
RULE = ("candidates: peaks of the logit margin (a plateau one peak at its centre), none within side/32 of a "
        "stronger one; a hit: the peak lies inside a lesion (8-connected component of the truth mask; its disc for "
        "circle annotations), each lesion counted once, other candidates inside a found lesion ignored, every other candidate a false positive; "
        "FROC over every image of the split; the operating point is the highest margin threshold reaching the "
        "target lesion sensitivity on the validation split, or, where that split never reaches it, its lowest "
        "candidate score")


def circle_annotated(manifest: Any, example_id: str) -> bool:
    """Whether the manifest marks the image's lesions as circles."""
    if CIRCLE_COLUMN not in manifest.columns or example_id not in manifest.index:
        return False
    return str(manifest.loc[example_id, CIRCLE_COLUMN]).strip().lower() == "circle"


def choose_operating_point(model: Any, dataset: Path, size: int, batch_size: int,
                           target: float = detection.TARGET_SENSITIVITY) -> dict[str, Any]:
    """The margin threshold reaching `target` lesion sensitivity on `dataset`'s validation split, with the
    sensitivity and FP per image it has there. A run whose validation curve stops short of the target is held
    at the curve's end, its lowest candidate score: every candidate shown, the most false positives it can
    have, so falling short never flatters a run (`target_reached` false). NaN when that split has no lesion."""
    from mammoseg.dataset.pipeline import make_dataset, read_dataset_info, read_manifest, resize_batches

    manifest = read_manifest(dataset).set_index("example_id")
    found: list[ImageDetections] = []
    if int((manifest["split"] == "val").sum()):
        info = read_dataset_info(dataset)
        ds = make_dataset(dataset, "val", batch_size=batch_size, with_metadata=True, deterministic=True)
        for batch in resize_batches(ds, size, info["image_size"], with_metadata=True):
            margins = logit_margin(model.predict_on_batch(batch["image"].numpy()))
            masks = batch["mask"].numpy()[..., 0]
            for i, example_id in enumerate(batch["example_id"].numpy()):
                found.append(detection.detect(margins[i], masks[i],
                                              circle_annotated(manifest, example_id.decode())))
    curve = detection.froc(found)
    threshold = curve.threshold_for(target)
    reached = math.isfinite(threshold)
    if not reached and curve.thresholds.size:
        threshold = float(curve.thresholds[-1])  # the end of the curve: every candidate shown
    return {"threshold": threshold, "target_sensitivity": target, "target_reached": reached, "split": "val",
            "dataset": str(dataset),
            "val_max_sensitivity": float(curve.sensitivity.max()) if curve.sensitivity.size else math.nan,
            "val_sensitivity": _at(found, threshold, "sensitivity"),
            "val_fp_per_image": _at(found, threshold, "fp"), "val_images": len(found), "val_lesions": curve.n_lesions}


def _at(images: list[ImageDetections], threshold: float, what: str) -> float:
    """Sensitivity or mean FP per image of a set of images at a threshold (NaN without one)."""
    if not math.isfinite(threshold) or not images:
        return math.nan
    if what == "fp":
        return float(np.mean([d.false_positives(threshold) for d in images]))
    lesions = sum(d.n_lesions for d in images)
    return sum(d.lesions_found(threshold) for d in images) / lesions if lesions else math.nan


class DetectionLog:
    """Every evaluated image's candidates (soft map) and its hard map's regions, in evaluation order."""

    def __init__(self) -> None:
        self.soft: list[ImageDetections] = []
        self.hard: list[ImageDetections] = []

    def add(self, soft: ImageDetections, margin: np.ndarray, mask: np.ndarray, circle: bool) -> None:
        self.soft.append(soft)
        self.hard.append(detection.hard_detect(margin, mask, circle))

    def summary(self, operating_point: dict[str, Any]) -> dict[str, Any]:
        """metrics.json's `detection`: FROC sensitivities and CPM, the operating point with the test numbers at
        it, the hard map as a detector, and the soft map's sensitivity at the hard map's FP per image."""
        curve = detection.froc(self.soft)
        hard_fp = _at(self.hard, 0.5, "fp")
        threshold = operating_point["threshold"]
        return {
            **detection.froc_summary(curve), "n_lesions": curve.n_lesions, "n_images": curve.n_images,
            "operating_point": {**operating_point, "sensitivity": _at(self.soft, threshold, "sensitivity"),
                                "fp_per_image": _at(self.soft, threshold, "fp")},
            "hard": {"sensitivity": _at(self.hard, 0.5, "sensitivity"), "fp_per_image": hard_fp},
            "soft_at_hard_fp": curve.sensitivity_at(hard_fp) if math.isfinite(hard_fp) else math.nan,
            "rule": RULE,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """detections.npz: one row per candidate (image index, score, lesion hit or -1), one per image
        (lesions, the score its candidates were cut at)."""
        counts = [len(d.scores) for d in self.soft]
        return {
            "image": np.repeat(np.arange(len(self.soft)), counts).astype(np.int32),
            "score": np.concatenate([d.scores for d in self.soft]) if self.soft else np.zeros(0),
            "lesion": np.concatenate([d.lesion for d in self.soft]).astype(np.int32) if self.soft else np.zeros(0, np.int32),
            "n_lesions": np.array([d.n_lesions for d in self.soft], dtype=np.int32),
            "cut": np.array([d.cut for d in self.soft], dtype=np.float64),
        }


def detections_from_arrays(arrays: dict[str, np.ndarray]) -> list[ImageDetections]:
    """The per-image candidates back from detections.npz (to redraw a run's FROC curve)."""
    image = np.asarray(arrays["image"])
    return [ImageDetections(np.asarray(arrays["score"])[image == k], np.asarray(arrays["lesion"])[image == k],
                            int(n), float(cut))
            for k, (n, cut) in enumerate(zip(arrays["n_lesions"], arrays["cut"]))]
