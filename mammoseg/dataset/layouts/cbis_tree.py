"""What the three CBIS-DDSM layouts (`nbia`, `csv_paths`, `kaggle_jpeg`) share: the description
CSVs read into jobs, and the `Resolver` from a CSV row to the image files of its series.

In every layout a series resolves to all its files; which one is the crop and which the mask is
decided later from the pixels, since the `00000N` numbering in the CSVs is unreliable.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from mammoseg.core.errors import InputError, Skip
from mammoseg.core.progress import track
from mammoseg.dataset.dicom import RASTER_SUFFIXES, read_series_uid

if TYPE_CHECKING:
    import pandas as pd

    from mammoseg.dataset.examples import ImageJob, PrepareOptions
    from mammoseg.dataset.layouts import Plan

logger = logging.getLogger("mammoseg.dataset")

_IMAGE_SUFFIXES = (".dcm", *RASTER_SUFFIXES)


def natural_key(path: Path) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def inside(path: Path, root: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))
    except OSError:
        return False


def series_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()), key=natural_key)


def shallowest(root: Path, name: str) -> Path | None:
    matches = sorted(root.rglob(name), key=lambda p: (len(p.relative_to(root).parts), str(p)))
    return matches[0] if matches else None


@dataclass
class Resolver:
    """Maps a CSV path (and its series UID) to the files of that series under `root`: literally
    below `base` when given, else by the series UID in `series`, indexing the DICOM headers below
    the root when a UID is missing and `scan_headers` is set."""

    layout: str
    root: Path
    base: Path | None = None  # the folder the CSV paths are relative to, where they resolve literally
    series: dict[str, list[Path]] = field(default_factory=dict)  # series UID -> files
    scan_headers: bool = False

    def files(self, csv_path: str, series_uid: str) -> list[Path]:
        """All image files of the series a CSV path points at; [] when it is absent.

        Raises InputError for a file that would lie outside the data root (a symlink or a
        `File Location` climbing out)."""
        if self.base is not None:
            found = series_files((self.base / PurePosixPath(csv_path.replace("\\", "/"))).parent)
        else:
            found = self.series.get(series_uid, [])
            if not found and self.scan_headers:
                self._scan_headers()
                found = self.series.get(series_uid, [])
        for path in found:
            if not inside(path, self.root):
                raise InputError(path, "resolves outside the data root")
        return found

    def image_file(self, csv_path: str, series_uid: str) -> Path:
        """The one full-mammogram file of a CSV row; InputError when missing or ambiguous."""
        files = self.files(csv_path, series_uid)
        if self.base is not None:
            literal = self.base / PurePosixPath(csv_path.replace("\\", "/"))
            if literal in files:
                return literal
        if len(files) == 1:
            return files[0]
        if not files:
            raise InputError(csv_path, f"file not found ({self.layout} layout, series {series_uid})")
        raise InputError(files[0].parent, f"{len(files)} files in a full-mammogram series; expected one")

    def _scan_headers(self) -> None:
        """Index every DICOM file below the root by the SeriesInstanceUID in its header."""
        self.scan_headers = False
        paths = sorted(self.root.rglob("*.dcm"))
        known = {p for files in self.series.values() for p in files}
        for path in track([p for p in paths if p not in known], "indexing DICOM headers", unit="file"):
            try:
                uid = read_series_uid(path)
            except InputError as exc:
                logger.warning("%s; not indexed", exc)
                continue
            self.series.setdefault(uid, []).append(path)
        for files in self.series.values():
            files.sort(key=natural_key)


def open_layout(root: str | Path, layout: str = "auto", abnormalities: pd.DataFrame | None = None) -> Resolver:
    """A Resolver for `root` in the given CBIS-DDSM layout, or the detected one for `auto`."""
    from mammoseg.dataset import layouts

    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "data root is not a folder")
    chosen = layouts.choose(root, layout)
    if chosen.resolver is None:
        raise InputError(root, f"the {chosen.name} layout is not a CBIS-DDSM tree")
    return chosen.resolver(root, abnormalities)


def csv_base(root: Path, abnormalities: pd.DataFrame | None) -> Path | None:
    """The folder that CSV paths are relative to, if a sample of them resolves literally."""
    if abnormalities is None or abnormalities.empty:
        return None
    sample = abnormalities["image_path"].dropna().head(50)
    candidates = [root, root / "CBIS-DDSM"]
    candidates += sorted({p.parent for p in root.glob("*/*_case_description_*_set.csv")})
    for base in candidates:
        if any((base / PurePosixPath(p)).is_file() for p in sample):
            return base
    return None


def read_index(path: Path) -> pd.DataFrame:
    """An index CSV (NBIA's metadata.csv, the Kaggle copy's dicom_info.csv) as text, short rows
    padded with empty strings; InputError when it cannot be read as a CSV."""
    import pandas as pd

    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False).fillna("")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable CSV ({str(exc).splitlines()[0]})") from exc


# --------------------------------------------------------------------------- planning


def plan_cbis(data_root: Path, options: PrepareOptions, skips: list[Skip], open_resolver: Any) -> Plan:
    """The CBIS-DDSM images below `data_root` as jobs with their official split, files resolved by
    `open_resolver(root, abnormalities)`; InputError before anything is written when there is
    none: an empty DATASET would only fail later, in training."""
    from mammoseg.dataset.layouts import Plan
    from mammoseg.dataset.split import assign_splits

    abnormalities = _read_csvs(data_root, skips)
    patient_split = assign_splits(abnormalities, options.val_fraction, options.seed)
    resolver = open_resolver(data_root, abnormalities)
    images = abnormalities["image_subject"].nunique()
    logger.info("layout: %s; %d abnormalities on %d images", resolver.layout, len(abnormalities), images)
    jobs = _plan_jobs(abnormalities, patient_split, resolver, data_root, skips)
    if not jobs:
        raise InputError(data_root, _nothing_to_prepare(images, skips))
    return Plan(jobs, patient_split)


def _read_csvs(data_root: Path, skips: list[Skip]) -> pd.DataFrame:
    import pandas as pd

    from mammoseg.dataset import cbis

    found = cbis.find_description_csvs(data_root)
    if not found:
        raise InputError(data_root, f"none of the CBIS-DDSM description CSVs found below this folder ({', '.join(cbis.OFFICIAL_NAMES.values())})")
    missing = [name for key, name in cbis.OFFICIAL_NAMES.items() if key not in found]
    if missing:
        logger.warning("%s: description CSVs not found: %s", data_root, ", ".join(missing))
    frames, problems = [], []
    for path in found.values():
        try:
            frames.append(cbis.read_description_csv(path, problems))
        except InputError as exc:
            logger.warning("%s; file skipped", exc)
            skips.append(Skip(path.name, str(path), exc.problem))
    skips.extend(Skip(p.source, p.file, p.reason) for p in problems)
    if not frames:
        raise InputError(data_root, "no usable CBIS-DDSM description CSV")
    return pd.concat(frames, ignore_index=True)


def _plan_jobs(abnormalities: pd.DataFrame, patient_split: dict[str, str], resolver: Resolver, data_root: Path, skips: list[Skip]) -> list[ImageJob]:
    """Resolve every image's files; images with a missing or unreachable file are skipped whole (a
    missing mask would turn an abnormality into 'normal' pixels). Rows are grouped as plain dicts:
    pandas' per-group overhead would cost milliseconds per image."""
    from mammoseg.dataset.examples import Abnormality, ImageJob, relative

    images: dict[str, list[dict[str, Any]]] = {}
    for record in abnormalities.to_dict("records"):
        images.setdefault(record["image_subject"], []).append(record)
    jobs = []
    for key, rows in sorted(images.items()):
        first = rows[0]
        try:
            image_file = resolver.image_file(first["image_path"], first["image_series_uid"])
            abns = []
            for row in sorted(rows, key=lambda r: r["abnormality_id"]):
                files = list(dict.fromkeys(
                    resolver.files(row["crop_path"], row["crop_series_uid"]) + resolver.files(row["roi_path"], row["roi_series_uid"])
                ))  # fmt: skip
                files = [f for f in files if f != image_file]
                if not files:
                    raise InputError(row["roi_path"], f"ROI files of abnormality {row['abnormality_id']} not found ({resolver.layout} layout)")
                abns.append(Abnormality(int(row["abnormality_id"]), row["abnormality_type"], row["pathology"], tuple(str(f) for f in files)))
        except InputError as exc:
            skips.append(Skip(str(key), relative(exc.path, data_root), exc.problem))
            logger.warning("%s: %s (skipped %s)", relative(exc.path, data_root), exc.problem, key)
            continue
        jobs.append(ImageJob(str(key), first["patient_id"], first["side"], patient_split[first["patient_id"]], str(image_file), tuple(abns)))
    return jobs


def _nothing_to_prepare(images: int, skips: list[Skip]) -> str:
    """Why no image can be prepared, in one line: how many images were found, and one problem of
    a found image (their ROI files, say) rather than of the missing ones."""
    missing = [s for s in skips if s.reason.startswith("file not found")]
    example = next((s for s in skips if not s.reason.startswith("file not found")), skips[0] if skips else None)
    first = f"; e.g. {example.file}: {example.reason}" if example else ""
    return f"nothing to prepare: {images - len(missing)} of the {images} image(s) in the CSVs found, none with all its files{first}"
