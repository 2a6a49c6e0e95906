"""CBIS-DDSM's JPEG copy on Kaggle: `csv/` (the description CSVs and `dicom_info.csv`) and
`jpeg/<SeriesInstanceUID>/<k>-<nnn>.jpg`."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from mammoseg.core.errors import InputError
from mammoseg.dataset.layouts import Layout
from mammoseg.dataset.layouts.cbis_tree import Resolver, natural_key, plan_cbis, read_index, series_files, shallowest


def detect(root: Path) -> bool:
    return shallowest(root, "dicom_info.csv") is not None or (root / "jpeg").is_dir()


def resolver(root: Path, abnormalities: Any = None) -> Resolver:
    return Resolver("kaggle-jpeg", root, series=kaggle_series(root))


def kaggle_series(root: Path) -> dict[str, list[Path]]:
    """Series UID -> JPEG files, from `dicom_info.csv` when present, else from the `jpeg/` folders."""
    info = shallowest(root, "dicom_info.csv")
    series: dict[str, list[Path]] = {}
    if info is not None:
        table = read_index(info)
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
            series[uid] = sorted((p for p in files if p.is_file()), key=natural_key)
    jpeg = root / "jpeg"
    if jpeg.is_dir():
        for folder in jpeg.iterdir():
            if folder.name not in series or not series[folder.name]:
                files = series_files(folder)
                if files:
                    series[folder.name] = files
    return series


LAYOUT = Layout(
    "kaggle-jpeg", "CBIS-DDSM's Kaggle JPEG copy (csv/dicom_info.csv, jpeg/<SeriesUID>/*.jpg)",
    detect, lambda root, options, skips: plan_cbis(root, options, skips, resolver), order=30, resolver=resolver,
)
