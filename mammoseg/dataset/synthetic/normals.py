"""Synthetic normal mammograms in the formats other collections ship them in, for `prepare --normals`.

CBIS-DDSM has no normal image; real ones come from DDSM's normal volumes, MIAS or INbreast, each in
its own format and naming. `write_normals` renders breasts without lesions (the same anatomy as the
synthetic CBIS-DDSM images) and stores them, one format per patient in turn, as:

  dicom  NORMAL_<p>_<side>_<view>.dcm           16-bit Secondary Capture; the woman is in PatientID
  png    A_<p>_1.<SIDE>_<VIEW>.png              16-bit PNG, DDSM normal-volume names (case A_<p>_1)
  pgm    mdb<NNN>.pgm                           8-bit square PGM, MIAS names (mdb001 + mdb002 = one woman)
  tiff   <id>_<16 hex>_MG_<L|R>_<CC|ML>_ANON.tif  16-bit TIFF, INbreast names (the hex is the woman)

Each patient has two images (both views of one breast; MIAS: both breasts). The folder's
`synth_normals.json` lists each file's patient; it is not an image and readers do not need it.

With `style` digital they are full-field digital mammograms (`digital.py`: background, burnt-in text,
paddle edge, line artefacts), in the formats a digital collection ships: DICOM with its bits stored and,
for some, MONOCHROME1 (stored inverted), 16-bit PNG and TIFF; MIAS's 8-bit film PGM is not among them.
"""

from __future__ import annotations

import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammoseg.core.atomic import write_bytes, write_json
from mammoseg.dataset.synthetic.formats import ImageFile, write_dicom_file
from mammoseg.dataset.synthetic.digital import render_digital_case
from mammoseg.dataset.synthetic.plan import (DIGITAL_BITS, DIGITAL_MONOCHROME1, FULL_DESCRIPTION, STYLES, UID_ROOT, Case,
                                             image_shape)
from mammoseg.dataset.synthetic.render import render_case
from mammoseg.core.errors import InputError
from mammoseg.core.progress import Progress

NORMALS_DIR = "normals"
FORMATS = ("dicom", "png", "pgm", "tiff")
DIGITAL_FORMATS = ("dicom", "png", "tiff")
TRUTH_FILE = "synth_normals.json"
IMAGES_PER_PATIENT = 2


@dataclass(frozen=True)
class NormalsSummary:
    """What `write_normals` wrote."""

    root: Path
    images: int
    patients: int
    by_format: dict[str, int]


def write_normals(out: str | Path, *, count: int, seed: int = 0, image_size: int = 1024,
                  overwrite: bool = False, style: str = "film") -> NormalsSummary:
    """Write `count` normal mammograms to the folder `out` in mixed formats, film or digital (`style`); same
    bytes for the same seed."""
    if count < 1:
        raise InputError(str(count), "--normals must be at least 1")
    if style not in STYLES:
        raise InputError(style, f"unknown style; choose one of {', '.join(STYLES)}")
    formats = DIGITAL_FORMATS if style == "digital" else FORMATS
    digital = np.random.default_rng([seed, 0xD161, 0x4E4F524D])  # its own draws: film output keeps its bytes
    root = Path(out)
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise InputError(root, "is not empty; choose an empty folder or pass --overwrite")
        if not (root / TRUTH_FILE).is_file():
            raise InputError(root, f"is not empty and has no {TRUTH_FILE}: --overwrite only replaces normals that "
                                   "`mammoseg synth` wrote")
        shutil.rmtree(root)
    rng = np.random.default_rng([seed, 0x4E4F524D])
    files: list[dict[str, str]] = []
    mias = 0
    with Progress(count, "synth normals", unit="image") as bar:
        for index in range(count):
            p, k = divmod(index, IMAGES_PER_PATIENT)
            fmt = formats[p % len(formats)]
            if k == 0:
                side = "LEFT" if rng.random() < 0.5 else "RIGHT"
                density = int(rng.choice([1, 2, 3, 4], p=[0.17, 0.4, 0.3, 0.13]))
                hex_id = f"{int(rng.integers(2**63)):016x}"
            if fmt == "pgm":  # MIAS: one view (MLO) of each breast
                image_side, view = ("LEFT", "RIGHT")[k], "MLO"
            else:
                image_side, view = side, ("CC", "MLO")[k]
            rows, cols = image_shape(rng, image_size, False)
            case = Case(index=index, patient_id=f"N_{p:05d}", kind="mass", split="train", side=image_side, view=view,
                        density=density, study_uid="", series_uid="", sop_uid="", rows=rows, cols=cols,
                        render_seed=int(rng.integers(2**31)))
            if style == "digital":
                case.style = style
                case.bits_stored = int(digital.choice(list(DIGITAL_BITS), p=list(DIGITAL_BITS.values())))
                case.monochrome1 = bool(digital.random() < DIGITAL_MONOCHROME1)
                pixels = render_digital_case(case).pixels
            else:
                pixels = render_case(case).pixels
            if fmt == "dicom":
                name = f"NORMAL_{p:04d}_{image_side[0]}_{view}.dcm"
                patient = f"NORMAL_{p:04d}"
                uids = [f"{UID_ROOT}9{zlib.crc32(f'{seed}-{index}-{n}'.encode()):010d}{n}" for n in range(3)]
                stored = ((1 << case.bits_stored) - 1 - pixels).astype(pixels.dtype) if case.monochrome1 else pixels
                write_dicom_file(root / name, ImageFile(
                    "full", patient, uids[0], uids[1], uids[2], 0, FULL_DESCRIPTION, stored,
                    "MONOCHROME1" if case.monochrome1 else "MONOCHROME2", side=image_side,
                    bits_stored=case.bits_stored if style == "digital" else 0))
            elif fmt == "png":
                name, patient = f"A_{p:04d}_1.{image_side}_{view}.png", f"A_{p:04d}_1"
                _write_raster(root / name, pixels)
            elif fmt == "pgm":
                mias += 1
                name, patient = f"mdb{mias:03d}.pgm", f"mias-{(mias + 1) // 2:03d}"
                _write_raster(root / name, _square((pixels >> 8).astype(np.uint8), image_side))
            else:
                view_name = "ML" if view == "MLO" else view
                name, patient = f"{50990000 + index}_{hex_id}_MG_{image_side[0]}_{view_name}_ANON.tif", hex_id
                _write_raster(root / name, pixels)
            files.append({"file": name, "format": fmt, "patient": patient})
            bar.update()
    options: dict[str, object] = {"count": count, "seed": seed, "image_size": image_size}
    if style != "film":  # film folders keep the bytes they always had
        options["style"] = style
    write_json(root / TRUTH_FILE, {"format_version": 1, "options": options, "files": files})
    by_format = {fmt: sum(1 for f in files if f["format"] == fmt) for fmt in formats}
    return NormalsSummary(root, len(files), len({f["patient"] for f in files}), by_format)


def _square(pixels: np.ndarray, side: str) -> np.ndarray:
    """A MIAS-like square film: the breast image padded with background away from the chest wall."""
    rows, cols = pixels.shape
    pad = max(0, rows - cols)
    return np.pad(pixels, ((0, 0), (pad, 0) if side == "RIGHT" else (0, pad)))


def _write_raster(path: Path, pixels: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(path.suffix, pixels)
    if not ok:
        raise RuntimeError(f"encoding {path.suffix} failed for {path}")
    write_bytes(path, buf.tobytes())
