"""Synthetic mammograms in CBIS-DDSM's own on-disk formats.

The real collection (163 GB) cannot be shipped, so `generate` writes a stand-in that every reader
takes through its real code path: the four description CSVs byte-compatible with the official
ones, Secondary Capture DICOMs (or the Kaggle JPEG copy) in one of three folder layouts, and a few
of the real files' defects. What was planted where goes to `synth_truth.json` at the root, never
into the CSVs, so tests can check that readers find and handle each defect.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammoseg.core.atomic import write_bytes, write_json
from mammoseg.dataset.synthetic.formats import (ImageFile, case_images, description_csv, dicom_info, nbia_metadata,
                                             write_dicom_file, write_jpeg)
from mammoseg.dataset.synthetic.digital import render_digital_case
from mammoseg.dataset.synthetic.layouts import SYNTH_LAYOUTS
from mammoseg.dataset.synthetic.normals import NORMALS_DIR
from mammoseg.dataset.synthetic.plan import CSV_NAMES, STYLES, Case, make_plan, quirks_of
from mammoseg.dataset.synthetic.render import render_case
from mammoseg.core.errors import InputError
from mammoseg.core.progress import Progress

TRUTH_FILE = "synth_truth.json"
GENERATED = ("CBIS-DDSM", "csv", "jpeg", "metadata.csv", TRUTH_FILE, NORMALS_DIR, *CSV_NAMES.values())
logger = logging.getLogger("mammoseg.synth")


@dataclass
class SynthSummary:
    """What `generate` wrote, for the command's report line and for benchmarks."""

    root: Path
    cases: int
    abnormalities: int
    files: int
    bytes: int
    seconds: float


def generate(out: str | Path, *, cases: int = 100, seed: int = 0, image_size: int = 1024, full_size: bool = False,
             layout: str = "nbia", workers: int = 1, overwrite: bool = False, style: str = "film") -> SynthSummary:
    """Write a synthetic CBIS-DDSM tree of `cases` full mammograms to `out`; same bytes for the same seed.
    `style` digital draws full-field digital mammograms (`digital.py`) in the same files."""
    if layout not in SYNTH_LAYOUTS:
        raise InputError(layout, f"unknown layout; choose one of {', '.join(SYNTH_LAYOUTS)}")
    if style not in STYLES:
        raise InputError(style, f"unknown style; choose one of {', '.join(STYLES)}")
    if cases < 1:
        raise InputError(str(cases), "--cases must be at least 1")
    if not full_size and image_size < 128:
        raise InputError(str(image_size), "--image-size must be at least 128 pixels")
    root = Path(out)
    _prepare_root(root, overwrite)
    start = time.perf_counter()
    plan = make_plan(cases, seed, image_size, full_size, style)
    options = {"cases": cases, "seed": seed, "image_size": None if full_size else image_size,
               "full_size": full_size, "layout": layout}
    if style != "film":  # film trees keep the bytes they always had
        options["style"] = style
    write_json(root / TRUTH_FILE, {"format_version": 1, "complete": False, "options": options})

    truths: list[dict[str, Any]] = []
    written: list[tuple[ImageFile, int]] = []
    with Progress(len(plan), "synth", unit="case") as bar:
        for truth, files in _run(plan, root, layout, workers):
            truths.append(truth)
            written.extend(files)
            bar.update()

    for (kind, split), name in CSV_NAMES.items():
        csv_dir = root / "csv" if layout == "kaggle-jpeg" else root
        write_bytes(csv_dir / name, description_csv(kind, [c for c in plan if (c.kind, c.split) == (kind, split)]))
    quirks = quirks_of(plan)
    if layout == "nbia":
        write_bytes(root / "metadata.csv", nbia_metadata(written))
    elif layout == "kaggle-jpeg":
        blanks = _blank_descriptions(written)
        write_bytes(root / "csv" / "dicom_info.csv", dicom_info([(f, f.sop_uid in blanks) for f, _ in written]))
        quirks["kaggle_empty_series_description"] = sorted(f.path(layout) for f, _ in written if f.sop_uid in blanks)
    n_files = len(written)
    total = sum(size for _, size in written)
    write_json(root / TRUTH_FILE, {
        "format_version": 1, "complete": True, "options": options,
        "images_root": "jpeg" if layout == "kaggle-jpeg" else "CBIS-DDSM",
        "quirks": quirks, "cases": sorted(truths, key=lambda t: t["index"])})
    seconds = time.perf_counter() - start
    return SynthSummary(root=root, cases=len(plan), abnormalities=sum(len(c.abnormalities) for c in plan),
                        files=n_files, bytes=total, seconds=seconds)


def _prepare_root(root: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless it holds an earlier synthetic tree and `overwrite` is set."""
    if root.exists() and not root.is_dir():
        raise InputError(root, "exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise InputError(root, "is not empty; choose an empty folder or pass --overwrite to replace an "
                                   "earlier synthetic tree")
        if not (root / TRUTH_FILE).is_file():
            raise InputError(root, f"is not empty and has no {TRUTH_FILE}: --overwrite only replaces a tree "
                                   "that `mammoseg synth` wrote")
        for name in GENERATED:
            path = root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(root, f"cannot create the folder ({exc.strerror or exc})") from exc


def _run(plan: list[Case], root: Path, layout: str,
         workers: int) -> Iterator[tuple[dict[str, Any], list[tuple[ImageFile, int]]]]:
    """Render and write the cases, in parallel processes when `workers` > 1 (same output either way)."""
    if workers <= 1:
        for case in plan:
            yield _make_case(case, root, layout)
        return
    with ProcessPoolExecutor(max_workers=min(workers, os.cpu_count() or 1)) as pool:
        yield from pool.map(_make_case, plan, [root] * len(plan), [layout] * len(plan))


def _make_case(case: Case, root: Path, layout: str) -> tuple[dict[str, Any], list[tuple[ImageFile, int]]]:
    """Render one full image, write its files in `layout`, and describe what was planted."""
    rendered = render_digital_case(case) if case.style == "digital" else render_case(case)
    masks = [lesion.mask for lesion in rendered.lesions]
    crops = [rendered.pixels[y0:y1, x0:x1].copy() for y0, y1, x0, x1 in (l.crop_box for l in rendered.lesions)]
    files = case_images(case, rendered.pixels, masks, crops)
    write = write_jpeg if layout == "kaggle-jpeg" else write_dicom_file
    sizes = [write(root / f.path(layout), f) for f in files]
    by_content = {(f.subject, f.content): f.path(layout) for f in files}
    truth = {
        "index": case.index, "subject": case.subject, "patient_id": case.patient_id,
        "abnormality_type": case.kind, "split": case.split, "side": case.side, "view": case.view,
        "density": case.density, "rows": case.rows, "cols": case.cols,
        "photometric": "MONOCHROME1" if case.monochrome1 else "MONOCHROME2",
        "series_uid": case.series_uid, "file": by_content[(case.subject, "full")],
        "dense_islands": rendered.dense_islands, "labels": rendered.label_boxes, "bands": rendered.band_boxes,
        "breast_box": list(rendered.breast_box), "breast_pixels": int(rendered.breast.sum()),
        "abnormalities": [{
            "abnormality_id": a.abnormality_id, "roi_subject": a.roi_subject,
            "descriptors": [a.descriptor_a, a.descriptor_b], "pathology": a.pathology,
            "crop_file": by_content[(a.roi_subject, "crop")], "mask_file": by_content[(a.roi_subject, "mask")],
            "crop_box": list(lesion.crop_box), "mask_pixels": int((lesion.mask > 0).sum()),
            "swapped": a.swapped, "split_series": a.split_series,
            "mask_size_delta": list(a.mask_size_delta) if a.mask_size_delta else None,
        } for a, lesion in zip(case.abnormalities, rendered.lesions)],
    }
    if rendered.artefacts:
        truth["artefacts"] = rendered.artefacts
    # Pixel arrays stay in the worker: the parent only needs names, UIDs and sizes.
    for f in files:
        f.pixels = None
    return truth, list(zip(files, sizes))


def _blank_descriptions(written: list[tuple[ImageFile, int]]) -> set[str]:
    """SOP UIDs whose Kaggle `SeriesDescription` is empty: ~4% of ROI images, at least one."""
    roi = [f for f, _ in written if f.content != "full"]
    blanks = {f.sop_uid for f in roi if int(f.sop_uid[-4:]) % 25 == 0}
    if roi and not blanks:
        blanks.add(roi[0].sop_uid)
    return blanks
