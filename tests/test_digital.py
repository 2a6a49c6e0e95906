"""Digital-style synthetic mammograms (`synth --style digital`): the files as a digital system writes
them, and the breast detector held to the film's bar on them: the whole breast found, no lesion
pixel blanked, burnt-in text left out, over many seeds."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from mammoseg.core.errors import InputError
from mammoseg.dataset import preprocess
from mammoseg.dataset.dicom import read_pixels
from mammoseg.dataset.synthetic import generate
from mammoseg.dataset.synthetic.digital import render_digital_case
from mammoseg.dataset.synthetic.formats import case_images, write_dicom
from mammoseg.dataset.synthetic.plan import make_plan

SEEDS = range(20)  # two images each


def _box_iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    rows = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    cols = max(0, min(a[3], b[3]) - max(a[2], b[2]))
    inter = rows * cols
    return inter / ((a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - inter)


def test_breast_found_whole_and_no_lesion_blanked_over_many_seeds(tmp_path: Path) -> None:
    """Each image goes through its DICOM file (MONOCHROME1 inverted, 12-16 bits stored) as `prepare`
    reads it. The detection may take in the breast's one-pixel soft edge and the stub of a line
    that touches it, little else."""
    traits: Counter[str] = Counter()
    failures = []
    for seed in SEEDS:
        for case in make_plan(2, seed, 256, False, "digital"):
            rendered = render_digital_case(case)
            full = case_images(case, rendered.pixels, [], [])[0]
            write_dicom(tmp_path / "image.dcm", full)
            pixels = read_pixels(tmp_path / "image.dcm")
            analysis = preprocess.analyse(pixels, case.side)
            size = pixels.shape[::-1]
            found = cv2.resize(analysis.breast, size, interpolation=cv2.INTER_NEAREST).astype(bool)
            kept = cv2.resize(preprocess.kept_region(analysis), size, interpolation=cv2.INTER_NEAREST).astype(bool)
            truth = rendered.breast
            rim = cv2.dilate(truth.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            covered = (found & truth).sum() / truth.sum()
            extra = (found & ~rim).sum() / truth.sum()
            blanked = sum(int((lesion.mask.astype(bool) & ~kept).sum()) for lesion in rendered.lesions)
            geometry = preprocess.Geometry(*pixels.shape, flip=analysis.flip, box=analysis.box, size=1)
            iou = _box_iou(geometry.original_box(), rendered.breast_box)
            text = max((found[y0:y1, x0:x1].mean() for y0, y1, x0, x1 in rendered.label_boxes), default=0.0)
            if (covered < 0.98 or blanked or extra > 0.08 or iou < 0.9 or text > 0.05
                    or analysis.flip != (case.side == "RIGHT")):
                failures.append(f"seed {seed} {case.subject}: covers {covered:.1%}, {extra:.1%} more, "
                                f"{blanked} lesion px blanked, box IoU {iou:.2f}, text {text:.0%} "
                                f"({rendered.artefacts})")
            traits.update([str(rendered.artefacts["background"]), f"{case.bits_stored} bits",
                           "MONOCHROME1" if case.monochrome1 else "MONOCHROME2"])
            traits["lines"] += bool(rendered.artefacts["line_columns"])
    assert not failures, "\n".join(failures)
    for trait in ("white", "black", "12 bits", "14 bits", "16 bits", "MONOCHROME1", "MONOCHROME2", "lines"):
        assert traits[trait] >= 2, traits  # every trait was met, more than once


def test_synth_digital_tree(tmp_path: Path) -> None:
    """The same patients and lesions as the film tree of the seed, in CBIS-DDSM's files, with a
    digital detector's aspect, bits stored and photometric interpretations."""
    generate(tmp_path / "film", cases=6, seed=1, image_size=192)
    generate(tmp_path / "digital", cases=6, seed=1, image_size=192, style="digital")
    film = json.loads((tmp_path / "film" / "synth_truth.json").read_text())
    digital = json.loads((tmp_path / "digital" / "synth_truth.json").read_text())
    assert "style" not in film["options"] and digital["options"]["style"] == "digital"
    key = ("subject", "split", "side", "view")
    assert [[c[k] for k in key] for c in film["cases"]] == [[c[k] for k in key] for c in digital["cases"]]
    for case in digital["cases"]:
        ds = pydicom.dcmread(tmp_path / "digital" / case["file"])
        assert ds.BitsStored in (12, 14, 16) and ds.HighBit == ds.BitsStored - 1, case["subject"]
        assert ds.PhotometricInterpretation == case["photometric"]
        assert 1.2 <= ds.Rows / ds.Columns <= 1.3
        assert int(ds.pixel_array.max()) < 1 << ds.BitsStored
        pixels = read_pixels(tmp_path / "digital" / case["file"])
        background = pixels[~_breast_and_text(pixels.shape, case)]
        top = (1 << ds.BitsStored) - 1
        if case["artefacts"]["background"] == "white":  # as displayed, whatever the file stores
            assert (background == top).mean() > 0.9, case["subject"]
        else:
            assert np.median(background) < 0.05 * top, case["subject"]
    with pytest.raises(InputError, match="unknown style"):
        generate(tmp_path / "other", cases=2, style="ultrasound")


def _breast_and_text(shape: tuple[int, int], case: dict) -> np.ndarray:
    """The truth's breast box and text boxes, which the background leaves out."""
    out = np.zeros(shape, bool)
    for y0, y1, x0, x1 in [case["breast_box"], *case["labels"]]:
        out[y0:y1, x0:x1] = True
    return out
