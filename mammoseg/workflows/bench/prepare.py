"""Prepare throughput: whole-image preparation on one core against a bare pydicom read."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mammoseg.core.errors import InputError
from mammoseg.workflows.bench.options import BenchOptions


def bench_prepare(options: BenchOptions) -> dict[str, Any]:
    """One core's throughput of whole-image preparation (read, find the breast, crop, resize, window,
    encode a record) against a bare pydicom read and decode of the same files."""
    import pydicom

    from mammoseg.dataset import preprocess
    from mammoseg.dataset.dicom import read_pixels
    from mammoseg.dataset.shards import serialize_example

    assert options.dicom_dir is not None
    if not options.dicom_dir.is_dir():
        raise InputError(options.dicom_dir, "no such folder")
    files = sorted(options.dicom_dir.rglob("*.dcm"), key=lambda p: (-p.stat().st_size, str(p)))[: options.prepare_images]
    if not files:
        raise InputError(options.dicom_dir, "no .dcm files under this folder")
    for path in files:  # same page-cache state for both measurements
        path.read_bytes()

    start = time.perf_counter()
    pixels_read = 0
    for path in files:
        pixels_read += pydicom.dcmread(path).pixel_array.size
    bare = time.perf_counter() - start

    start = time.perf_counter()
    zeros = np.zeros((options.image_size, options.image_size), np.uint8)
    for path in files:
        image, _ = preprocess.prepare_full_image(read_pixels(path), options.image_size)
        serialize_example(image, zeros, example_id=path.stem, kind="whole", patient_id="bench",
                          abnormality_type="none", pathology="NONE", positive_fraction=0.0)  # fmt: skip
    prepared = time.perf_counter() - start
    return {
        "dicom_dir": str(options.dicom_dir),
        "files": len(files),
        "mean_megapixels": pixels_read / len(files) / 1e6,
        "image_size": options.image_size,
        "bare_read_images_per_second": len(files) / bare,
        "prepare_images_per_second": len(files) / prepared,
        "prepare_vs_bare_read": bare / prepared,
        "method": "one process; largest .dcm files first; bare = pydicom.dcmread(...).pixel_array; prepare = "
                  "read_pixels + prepare_full_image + serialize_example of the whole image, as for a normal "
                  "mammogram (an image with abnormalities also stores its breast at working resolution; "
                  "benchmarks/performance/bench_prepare.py times the whole command)",
    }  # fmt: skip
