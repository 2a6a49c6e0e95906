"""CBIS-DDSM in the old layout, where the CSVs' `Subject/StudyUID/SeriesUID/00000N.dcm` paths
resolve literally below the root (or below `CBIS-DDSM/`, or beside the CSVs)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from mammoseg.core.errors import InputError
from mammoseg.dataset.layouts import Layout
from mammoseg.dataset.layouts.cbis_tree import Resolver, csv_base, plan_cbis

SAMPLE_ROWS = 50
"""CSV rows whose image path is tried: one that resolves decides."""


def detect(root: Path) -> bool:
    """A sample of the description CSVs' image paths (well-formed ones only) resolves literally."""
    import pandas as pd

    from mammoseg.dataset import cbis

    sample: list[str] = []
    for path in cbis.find_description_csvs(root).values():
        try:
            with open(path, newline="", encoding="utf-8") as file:
                for k, row in enumerate(csv.DictReader(file)):
                    if k >= SAMPLE_ROWS:
                        break
                    value = (row.get("image file path") or "").strip()
                    if cbis.parse_dicom_path(value) is not None:
                        sample.append(value)
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
    return csv_base(root, pd.DataFrame({"image_path": sample[:SAMPLE_ROWS]})) is not None


def resolver(root: Path, abnormalities: Any = None) -> Resolver:
    base = csv_base(root, abnormalities)
    if base is None:
        raise InputError(root, "no CSV image path resolves below this folder (is it the NBIA or Kaggle layout?)")
    return Resolver("csv-paths", root, base=base)


LAYOUT = Layout(
    "csv-paths", "CBIS-DDSM with the CSVs' Subject/StudyUID/SeriesUID/00000N.dcm paths resolving literally",
    detect, lambda root, options, skips: plan_cbis(root, options, skips, resolver), order=40, resolver=resolver,
)
