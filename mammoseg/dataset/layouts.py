"""Where the image files of a CSV row are, for each way CBIS-DDSM is found on disk.

- `csv-paths`: the old layout, where `Subject/StudyUID/SeriesUID/00000N.dcm` resolves literally.
- `nbia`: what the NBIA Data Retriever writes today (`<Subject>/<date>-DDSM-NA-<5>/<n>.000000-<desc>-<5>/1-1.dcm`);
  no CSV path resolves, so files are keyed on the SeriesInstanceUID, taken from NBIA's `metadata.csv`
  (`Series UID`, `File Location`) or else from the DICOM headers (read without pixels).
- `kaggle-jpeg`: the JPEG copy with `csv/dicom_info.csv` and `jpeg/<SeriesUID>/<k>-<nnn>.jpg`.

In every layout a series resolves to all its files; which one is the crop and which the mask is
decided later from the pixels, since the `00000N` numbering in the CSVs is unreliable.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from mammoseg.dataset.dicom import RASTER_SUFFIXES, read_series_uid
from mammoseg.core.errors import InputError, MammosegError
from mammoseg.core.progress import track

logger = logging.getLogger("mammoseg.dataset")

LAYOUTS = ("nbia", "csv-paths", "kaggle-jpeg")
_IMAGE_SUFFIXES = (".dcm", *RASTER_SUFFIXES)


def _natural_key(path: Path) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _inside(path: Path, root: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))
    except OSError:
        return False


def _series_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()), key=_natural_key)


def _shallowest(root: Path, name: str) -> Path | None:
    matches = sorted(root.rglob(name), key=lambda p: (len(p.relative_to(root).parts), str(p)))
    return matches[0] if matches else None


@dataclass
class Resolver:
    """Maps a CSV path (and its series UID) to the files of that series under `root`."""

    layout: str
    root: Path
    base: Path | None = None  # csv-paths: the folder the CSV paths are relative to
    series: dict[str, list[Path]] = field(default_factory=dict)  # nbia / kaggle: series UID -> files
    _scanned: bool = False

    def files(self, csv_path: str, series_uid: str) -> list[Path]:
        """All image files of the series a CSV path points at; [] when it is absent.

        Raises InputError for a file that would lie outside the data root (a symlink or a
        `File Location` climbing out)."""
        if self.layout == "csv-paths":
            assert self.base is not None
            literal = self.base / PurePosixPath(csv_path.replace("\\", "/"))
            found = _series_files(literal.parent)
        else:
            found = self.series.get(series_uid, [])
            if not found and self.layout == "nbia" and not self._scanned:
                self._scan_headers()
                found = self.series.get(series_uid, [])
        for path in found:
            if not _inside(path, self.root):
                raise InputError(path, "resolves outside the data root")
        return found

    def image_file(self, csv_path: str, series_uid: str) -> Path:
        """The one full-mammogram file of a CSV row; InputError when missing or ambiguous."""
        files = self.files(csv_path, series_uid)
        if self.layout == "csv-paths":
            assert self.base is not None
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
        self._scanned = True
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
            files.sort(key=_natural_key)


def open_layout(root: str | Path, layout: str = "auto", abnormalities: pd.DataFrame | None = None) -> Resolver:
    """A Resolver for `root` in the given layout, or the detected one for `auto`."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "data root is not a folder")
    if layout == "auto":
        layout = detect_layout(root, abnormalities)
    if layout == "csv-paths":
        base = _csv_base(root, abnormalities)
        if base is None:
            raise InputError(root, "no CSV image path resolves below this folder (is it the NBIA or Kaggle layout?)")
        return Resolver(layout, root, base=base)
    if layout == "nbia":
        return Resolver(layout, root, series=_nbia_metadata(root))
    if layout == "kaggle-jpeg":
        return Resolver(layout, root, series=_kaggle_index(root))
    raise MammosegError(f"unknown layout {layout!r}; choose one of auto, {', '.join(LAYOUTS)}")


def detect_layout(root: str | Path, abnormalities: pd.DataFrame | None = None) -> str:
    """Which of `LAYOUTS` a data root holds, from cheap signs: `dicom_info.csv` and `jpeg/` for Kaggle,
    a CSV path that resolves literally for the old layout, otherwise DICOM files (NBIA)."""
    root = Path(root)
    if _shallowest(root, "dicom_info.csv") is not None or (root / "jpeg").is_dir():
        return "kaggle-jpeg"
    if _csv_base(root, abnormalities) is not None:
        return "csv-paths"
    if _shallowest(root, "metadata.csv") is not None or next(root.rglob("*.dcm"), None) is not None:
        return "nbia"
    raise InputError(root, "no CBIS-DDSM images found (no DICOM files, no jpeg/ folder)")


def _csv_base(root: Path, abnormalities: pd.DataFrame | None) -> Path | None:
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


def _read_index(path: Path) -> pd.DataFrame:
    """An index CSV (NBIA's metadata.csv, the Kaggle copy's dicom_info.csv) as text, short rows
    padded with empty strings; InputError when it cannot be read as a CSV."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False).fillna("")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable CSV ({str(exc).splitlines()[0]})") from exc


def _nbia_metadata(root: Path) -> dict[str, list[Path]]:
    """Series UID -> files from NBIA's metadata.csv; {} without one (headers are indexed on demand)."""
    meta = _shallowest(root, "metadata.csv")
    if meta is None:
        return {}
    table = _read_index(meta)
    for column in ("Series UID", "File Location"):
        if column not in table.columns:
            raise InputError(meta, f"missing column {column!r} (is this NBIA's metadata.csv?)")
    series: dict[str, list[Path]] = {}
    for uid, location in zip(table["Series UID"], table["File Location"]):
        folder = meta.parent / PurePosixPath(location.strip().replace("\\", "/"))
        files = _series_files(folder)
        if files:
            series[uid.strip()] = files
    logger.info("NBIA metadata.csv lists %d series with files", len(series))
    return series


def _kaggle_index(root: Path) -> dict[str, list[Path]]:
    """Series UID -> JPEG files, from `dicom_info.csv` when present, else from the `jpeg/` folders."""
    info = _shallowest(root, "dicom_info.csv")
    series: dict[str, list[Path]] = {}
    if info is not None:
        table = _read_index(info)
        for column in ("image_path", "SeriesInstanceUID"):
            if column not in table.columns:
                raise InputError(info, f"missing column {column!r}")
        base = info.parent.parent if info.parent.name == "csv" else root
        for uid, image_path in zip(table["SeriesInstanceUID"], table["image_path"]):
            parts = PurePosixPath(image_path.strip().replace("\\", "/")).parts
            if parts and parts[0] == "CBIS-DDSM":
                parts = parts[1:]
            if not parts:
                continue
            series.setdefault(uid.strip(), []).append(base.joinpath(*parts))
        for uid, files in series.items():
            series[uid] = sorted((p for p in files if p.is_file()), key=_natural_key)
    jpeg = root / "jpeg"
    if jpeg.is_dir():
        for folder in jpeg.iterdir():
            if folder.name not in series or not series[folder.name]:
                files = _series_files(folder)
                if files:
                    series[folder.name] = files
    return series
