"""Plain images/ + masks/ folders: any non-zero mask pixel abnormal, missing or empty masks normal,
sizes never silently changed, patients from patients.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cbis_factory import breast_image, write_dicom
from mammoseg.core.errors import Skip
from mammoseg.dataset import layouts
from mammoseg.dataset.examples import PrepareOptions
from mammoseg.dataset.layouts.images_masks import plan


def _pair(root: Path, name: str, shape: tuple[int, int], *, mask: str = "box", value: int = 2, suffix: str = ".png",
          seed: int = 0) -> None:
    """images/NAME (16-bit) and, unless `mask` is 'none', masks/NAME.png: a box of `value`, all
    zeros ('zero'), or a box in a mask a few pixels too small ('small')."""
    import cv2

    image = breast_image(*shape, np.random.default_rng(seed))
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    if suffix == ".dcm":
        write_dicom(root / "images" / f"{name}.dcm", image)
    else:
        cv2.imwrite(str(root / "images" / f"{name}{suffix}"), image)
    if mask == "none":
        return
    h, w = shape if mask != "small" else (shape[0] - 3, shape[1])
    pixels = np.zeros((h, w), np.uint8)
    if mask != "zero":
        pixels[h // 2 : h // 2 + h // 8, w // 5 : w // 5 + w // 6] = value
    cv2.imwrite(str(root / "masks" / f"{name}.png"), pixels)


@pytest.fixture()
def pairs(tmp_path: Path) -> Path:
    root = tmp_path / "pairs"
    _pair(root, "a_cc", (171, 97), seed=1)  # odd size, 16-bit, mask value 2
    _pair(root, "a_mlo", (203, 131), value=255, suffix=".tif", seed=2)
    _pair(root, "b cc", (160, 160), mask="none", seed=3)  # no mask: normal; a space in the name
    _pair(root, "c_cc", (150, 110), mask="zero", seed=4)  # all-zero mask: normal
    _pair(root, "d_cc", (150, 110), mask="small", seed=5)  # wrong-size mask
    _pair(root, "e_cc", (180, 120), value=1, suffix=".dcm", seed=6)
    (root / "masks" / "orphan.png").write_bytes((root / "masks" / "a_cc.png").read_bytes())
    (root / "patients.csv").write_text("image,patient\na_cc.png,woman-a\na_mlo,woman-a\n")
    return root


def test_plan_reads_names_masks_and_patients(pairs: Path) -> None:
    assert layouts.detect(pairs).name == "images-masks"
    skips: list[Skip] = []
    jobs = {j.image_key: j for j in plan(pairs, PrepareOptions(), skips).jobs}
    assert sorted(jobs) == ["a_cc", "a_mlo", "b_cc", "c_cc", "d_cc", "e_cc"]
    assert jobs["a_cc"].patient_id == jobs["a_mlo"].patient_id == "woman-a"
    assert jobs["b_cc"].patient_id == "b_cc" and jobs["b_cc"].normal
    assert not jobs["c_cc"].normal  # an all-zero mask is found normal when read
    assert [s.source for s in skips] == ["orphan"]


def test_prepare_keeps_sizes_honest(pairs: Path, tmp_path: Path) -> None:
    from mammoseg.dataset.prepare import prepare

    out = tmp_path / "prepared"
    result = prepare(pairs, out, PrepareOptions(image_size=64, val_fraction=0.0), folds=2)
    assert result.images == 5
    rows = []
    for fold in (1, 2):
        rows += [r for r in csv.DictReader(open(out / f"fold-{fold}" / "manifest.csv")) if r["split"] == "test"]
    images = {r["source_image"]: r for r in rows if r["kind"] in ("whole", "normal")}
    assert sorted(images) == ["a_cc", "a_mlo", "b_cc", "c_cc", "e_cc"]
    assert {k: images[k]["kind"] for k in images} == {"a_cc": "whole", "a_mlo": "whole", "b_cc": "normal",
                                                      "c_cc": "normal", "e_cc": "whole"}
    assert images["a_cc"]["fold"] == images["a_mlo"]["fold"]
    assert all(float(images[k]["positive_fraction"]) > 0 for k in ("a_cc", "a_mlo", "e_cc"))
    assert {r["annotation"] for r in rows} == {"outline"}
    report = {r["source"]: r for r in csv.DictReader(open(out / "fold-1" / "prepare_report.csv"))}
    assert "mask is 147x110 pixels but its image d_cc.png is 150x110; masks are never resized" in report["d_cc"]["reason"]
    assert report["d_cc"]["file"] == "masks/d_cc.png"


@pytest.mark.shared
def test_the_real_pairs(tmp_path: Path, shared_root: Path) -> None:
    """Two real CBIS-DDSM views saved with mask value 2: both prepared as abnormal."""
    from mammoseg.dataset.prepare import prepare

    root = shared_root / "real-pairs"
    if not (root / "images").is_dir():
        pytest.skip(f"{root} is absent: the real image/mask pairs cannot be read")
    assert layouts.detect(root).name == "images-masks"
    prepare(root, tmp_path / "out", PrepareOptions(image_size=64, val_fraction=0.0), test_only=True)
    rows = [r for r in csv.DictReader(open(tmp_path / "out" / "manifest.csv")) if r["kind"] in ("whole", "normal")]
    assert len(rows) == 2 and {r["kind"] for r in rows} == {"whole"} and {r["split"] for r in rows} == {"test"}
    assert all(float(r["positive_fraction"]) > 0 for r in rows)


def test_a_dataset_for_external_validation_tests_every_image(pairs: Path, tmp_path: Path) -> None:
    """--test-only: every prepared image (abnormal and normal) in the test split, and folds refused."""
    from mammoseg.core.errors import MammosegError
    from mammoseg.dataset.prepare import prepare

    out = tmp_path / "external"
    result = prepare(pairs, out, PrepareOptions(image_size=32, val_fraction=0.2), test_only=True)
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert {r["split"] for r in rows} == {"test"} and result.images == 5
    assert result.counts["train"] == result.counts["val"] == {"whole": 0, "positive": 0, "negative": 0, "normal": 0}
    with pytest.raises(MammosegError, match="cannot be cut into --folds"):
        prepare(pairs, tmp_path / "other", PrepareOptions(image_size=32), test_only=True, folds=2)
