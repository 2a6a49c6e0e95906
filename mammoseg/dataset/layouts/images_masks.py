"""Plain `images/` and `masks/` folders, what most public mammography sets become once converted
(like nnU-Net's imagesTr/labelsTr): `images/NAME.ext` and `masks/NAME.ext` with the same stem, in
PNG, TIFF, JPEG, PGM or DICOM, 8- or 16-bit, any size and aspect ratio.

- Any non-zero mask pixel is abnormal, whatever its value (255, 1, or 2 as some sets store it).
- An image with no mask file, or with an all-zero mask, is a normal image.
- A mask of another size than its image leaves the image out with a reason naming both sizes;
  a mask is never resized.
- An optional `patients.csv` (columns `image,patient`; `image` the file name or its stem) groups
  images by woman; without it, or for an image it does not list, each image is its own patient.
The manifest says `annotation` = `outline`: the masks outline the abnormalities.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mammoseg.core.errors import InputError, Skip
from mammoseg.dataset.layouts import Layout, Plan
from mammoseg.dataset.layouts.normals import NORMAL_SUFFIXES, safe_keys

if TYPE_CHECKING:
    from mammoseg.dataset.examples import PrepareOptions

logger = logging.getLogger("mammoseg.dataset")

IMAGES, MASKS, PATIENTS = "images", "masks", "patients.csv"
LESION_KIND, LESION_PATHOLOGY = "lesion", "UNKNOWN"
"""The abnormality type and pathology of a mask: the folders say neither."""


def detect(root: Path) -> bool:
    return (root / IMAGES).is_dir() and (root / MASKS).is_dir()


def plan(root: Path, options: PrepareOptions, skips: list[Skip]) -> Plan:
    """One job per image, its mask (if any) as its one abnormality; split left to `prepare`."""
    from mammoseg.dataset.examples import Abnormality, ImageJob

    if not detect(root):
        raise InputError(root, f"expected the folders {IMAGES}/ and {MASKS}/ here")
    images = _by_stem(root / IMAGES, skips)
    masks = _by_stem(root / MASKS, skips)
    patients = read_patients(root / PATIENTS) if (root / PATIENTS).is_file() else {}
    for stem in sorted(set(masks) - set(images)):
        skips.append(Skip(stem, f"{MASKS}/{masks[stem].name}", f"mask without an image of the same name in {IMAGES}/; left out"))
    if not images:
        raise InputError(root / IMAGES, f"no images here (looked for {', '.join(NORMAL_SUFFIXES)})")
    stems = sorted(images)
    jobs = []
    for stem, key in zip(stems, safe_keys(stems, prefix="")):
        image = images[stem]
        mask = masks.get(stem)
        truth = (Abnormality(1, LESION_KIND, LESION_PATHOLOGY, mask_file=str(mask)),) if mask is not None else ()
        patient = patients.get(image.name) or patients.get(stem) or key
        jobs.append(ImageJob(key, patient, "", "", str(image), truth, (("annotation", "outline"),)))
    listed = set(patients) - {i.name for i in images.values()} - set(images)
    if listed:
        logger.warning("%s names %d image(s) not in %s/, e.g. %s", root / PATIENTS, len(listed), IMAGES, sorted(listed)[0])
    logger.info("images/masks: %d images, %d with a mask file", len(jobs), sum(not j.normal for j in jobs))
    return Plan(jobs)


def _by_stem(folder: Path, skips: list[Skip]) -> dict[str, Path]:
    """The image files directly in `folder` by stem; a stem two files share is ambiguous, and both
    are left out with the reason."""
    if not folder.is_dir():
        return {}
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in NORMAL_SUFFIXES:
            found.setdefault(path.stem, []).append(path)
    for stem, paths in found.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            skips.append(Skip(stem, f"{folder.name}/{paths[0].name}", f"{len(paths)} files named {stem} in {folder.name}/ ({names}); left out"))
    return {stem: paths[0] for stem, paths in found.items() if len(paths) == 1}


def read_patients(path: Path) -> dict[str, str]:
    """image -> patient from patients.csv; InputError naming the file for a missing column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            columns = [c.strip() for c in reader.fieldnames or []]
            if "image" not in columns or "patient" not in columns:
                raise InputError(path, f"expected the columns image,patient, found {','.join(columns) or 'none'}")
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"not a readable CSV ({exc})") from exc
    return {row["image"]: row["patient"] for row in rows if row.get("image") and row.get("patient")}


LAYOUT = Layout("images-masks", "images/ and masks/ folders with the same file stems (optional patients.csv)",
                detect, plan, order=20)
