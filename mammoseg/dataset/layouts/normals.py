"""A folder of normal mammograms from other collections (DDSM normals, MIAS, INbreast, ...), as
`prepare --normals DIR` takes it: finding them and telling which images belong to one woman.

CBIS-DDSM has no image without an abnormality, so the article's central failure, false positives on
normal mammograms, can only be measured on images from elsewhere. They come as a folder of files in
whatever format their collection uses; `prepare --normals DIR` takes every file below DIR whose
suffix is one of `NORMAL_SUFFIXES` (or that has no suffix: DICOM files often have none), skipping
hidden files. Images are split by patient so that no woman is on both sides of the split; the
patient is, in this order:

1. the DICOM `PatientID`, stored only as a hash (a value shared by more than
   `MAX_IMAGES_PER_PATIENT` files is an anonymiser's placeholder, not a woman, and is ignored);
2. a filename rule of a known collection (`FILENAME_RULES`): MIAS `mdbNNN` images come in
   left/right pairs of one woman (mdb001 + mdb002, mdb003 + mdb004, ...); DDSM
   `A_0002_1.LEFT_CC` names its case `A_0002_1`; INbreast `<file id>_<patient hash>_MG_...`
   names the patient in its second field;
3. otherwise the file itself.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from mammoseg.core.errors import InputError, Skip
from mammoseg.core.progress import track
from mammoseg.dataset.dicom import RASTER_SUFFIXES, read_patient_id
from mammoseg.dataset.layouts import Layout, Plan

if TYPE_CHECKING:
    from mammoseg.dataset.examples import PrepareOptions

logger = logging.getLogger("mammoseg.dataset")

DICOM_SUFFIXES = (".dcm", ".dicom")
NORMAL_SUFFIXES = (*DICOM_SUFFIXES, *RASTER_SUFFIXES)
MAX_IMAGES_PER_PATIENT = 12
"""More images than one woman has (two exams of four views, and then some)."""
KEY_PREFIX = "Normal_"

FILENAME_RULES: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    ("mias", re.compile(r"^mdb(\d{3})", re.IGNORECASE), lambda m: f"{(int(m.group(1)) + 1) // 2:03d}"),
    ("ddsm", re.compile(r"^([A-D]_\d{4}_1)\.(LEFT|RIGHT)_(CC|MLO)", re.IGNORECASE), lambda m: m.group(1).upper()),
    ("inbreast", re.compile(r"^\d+_([0-9a-f]{16})_MG_", re.IGNORECASE), lambda m: m.group(1).lower()),
)
"""(collection, pattern on the file name, patient from the match)."""


@dataclass(frozen=True)
class NormalImage:
    """One normal mammogram: its example key (unique, safe in file names), patient and file."""

    key: str
    patient_id: str
    file: Path
    relative: str  # path below the normals folder


def patient_from_name(name: str) -> str | None:
    """The patient a known collection's file name encodes (see `FILENAME_RULES`), else None."""
    for collection, pattern, patient in FILENAME_RULES:
        match = pattern.match(name)
        if match:
            return f"{collection}-{patient(match)}"
    return None


def find_normal_images(folder: str | Path) -> list[NormalImage]:
    """Every candidate image below `folder` with its patient, in path order. Files are not opened
    beyond a DICOM header here: an unreadable one is reported when its pixels are read."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "normals folder is not a folder")
    try:
        files = sorted(
            p for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            and (p.suffix.lower() in NORMAL_SUFFIXES or not p.suffix)
        )  # fmt: skip
    except OSError as exc:
        raise InputError(getattr(exc, "filename", None) or folder, f"cannot list the normals folder ({exc.strerror or exc})") from exc
    if not files:
        raise InputError(folder, f"no images below this folder (looked for {', '.join(NORMAL_SUFFIXES)} and suffix-less DICOM)")
    header_ids = {
        path: read_patient_id(path)
        for path in track([p for p in files if p.suffix.lower() not in RASTER_SUFFIXES], "reading normals' headers", unit="file")
    }  # fmt: skip
    shared = {value for value, n in Counter(v for v in header_ids.values() if v).items() if n > MAX_IMAGES_PER_PATIENT}
    if shared:
        logger.warning("%s: %d PatientID value(s) shared by more than %d files ignored (not one woman each)",
                       folder, len(shared), MAX_IMAGES_PER_PATIENT)
    keys = safe_keys([p.relative_to(folder).as_posix() for p in files])
    images = []
    for path, key in zip(files, keys):
        header = header_ids.get(path)
        if header and header not in shared:
            patient = "dicom-" + hashlib.sha256(header.encode("utf-8")).hexdigest()[:12]
        else:
            patient = patient_from_name(path.name) or f"file-{key[len(KEY_PREFIX):]}"
        images.append(NormalImage(key, patient, path, path.relative_to(folder).as_posix()))
    return images


def safe_keys(relatives: list[str], prefix: str = KEY_PREFIX) -> list[str]:
    """Example keys from relative paths: characters other than letters, digits, '.', '-' and '_'
    become '_' (keys name preview files); a key two paths share gets a checksum of its path."""
    keys = [prefix + re.sub(r"[^A-Za-z0-9._-]", "_", rel) for rel in relatives]
    taken = Counter(keys)
    return [f"{key}-{zlib.crc32(rel.encode()):08x}" if taken[key] > 1 else key for key, rel in zip(keys, relatives)]


def plan(root: Path, options: PrepareOptions, skips: list[Skip]) -> Plan:
    """Every image below `root` as a normal image (no abnormality), split left to `prepare`."""
    from mammoseg.dataset.examples import ImageJob

    return Plan([ImageJob(n.key, n.patient_id, "", "", str(n.file), ()) for n in find_normal_images(root)])


LAYOUT = Layout("normals", "a folder of normal mammograms only (DICOM, PNG, JPEG, TIFF, PGM), as --normals takes it",
                None, plan, order=90)  # any folder of images would look like one: chosen by name only
