"""CBIS-DDSM as the NBIA Data Retriever writes it today:
`<Subject>/<date>-DDSM-NA-<5>/<n>.000000-<description>-<5>/1-1.dcm`. No CSV path resolves, so files
are keyed on the SeriesInstanceUID, taken from NBIA's `metadata.csv` (`Series UID`, `File
Location`) or else from the DICOM headers (read without pixels)."""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

from mammoseg.core.errors import InputError
from mammoseg.dataset.layouts import Layout
from mammoseg.dataset.layouts.cbis_tree import Resolver, plan_cbis, read_index, series_files, shallowest

logger = logging.getLogger("mammoseg.dataset")


def detect(root: Path) -> bool:
    """NBIA's metadata.csv, or any DICOM file (the generic sign: tried after the other layouts)."""
    return shallowest(root, "metadata.csv") is not None or next(root.rglob("*.dcm"), None) is not None


def resolver(root: Path, abnormalities: Any = None) -> Resolver:
    return Resolver("nbia", root, series=nbia_series(root), scan_headers=True)


def nbia_series(root: Path) -> dict[str, list[Path]]:
    """Series UID -> files from NBIA's metadata.csv; {} without one (headers are indexed on demand)."""
    meta = shallowest(root, "metadata.csv")
    if meta is None:
        return {}
    table = read_index(meta)
    for column in ("Series UID", "File Location"):
        if column not in table.columns:
            raise InputError(meta, f"missing column {column!r} (is this NBIA's metadata.csv?)")
    series: dict[str, list[Path]] = {}
    for uid, location in zip(table["Series UID"], table["File Location"]):
        folder = meta.parent / PurePosixPath(location.strip().replace("\\", "/"))
        files = series_files(folder)
        if files:
            series[uid.strip()] = files
    logger.info("NBIA metadata.csv lists %d series with files", len(series))
    return series




LAYOUT = Layout(
    "nbia", "CBIS-DDSM as NBIA's Data Retriever writes it (description CSVs, metadata.csv, DICOM series)",
    detect, lambda root, options, skips: plan_cbis(root, options, skips, resolver), order=50, resolver=resolver,
)
