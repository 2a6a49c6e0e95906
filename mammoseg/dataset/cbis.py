"""The four CBIS-DDSM description CSVs, read faithfully into one tidy table of abnormalities.

The official files have quirks that a naive `pandas.read_csv` gets wrong: the density column is
spelled `breast_density` in the mass files and `breast density` in the calc files, lines end in CRLF,
one quoted path column per row ends in a bare newline, and missing values are the literal `N/A`
(while strings such as `NA` are not missing). Everything here depends only on the CSVs, never on
image files, so the same table serves every on-disk layout.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path, PurePosixPath

import pandas as pd

from mammoseg.core.errors import InputError, Skip

logger = logging.getLogger("mammoseg.dataset")

OFFICIAL_NAMES: dict[tuple[str, str], str] = {
    ("mass", "train"): "mass_case_description_train_set.csv",
    ("mass", "test"): "mass_case_description_test_set.csv",
    ("calc", "train"): "calc_case_description_train_set.csv",
    ("calc", "test"): "calc_case_description_test_set.csv",
}
"""(abnormality type, official split) -> the file name TCIA publishes."""

_COMMON_COLUMNS: dict[str, str] = {
    "patient_id": "patient_id",
    "left or right breast": "side",
    "image view": "view",
    "abnormality id": "abnormality_id",
    "abnormality type": "abnormality_type_csv",
    "assessment": "assessment",
    "pathology": "pathology",
    "subtlety": "subtlety",
    "image file path": "image_path",
    "cropped image file path": "crop_path",
    "ROI mask file path": "roi_path",
}
_TYPE_COLUMNS: dict[str, dict[str, str]] = {
    "mass": {"mass shape": "mass_shape", "mass margins": "mass_margins"},
    "calc": {"calc type": "calc_type", "calc distribution": "calc_distribution"},
}
_DENSITY_SPELLINGS = ("breast_density", "breast density")

PATHOLOGIES = ("MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK")
SIDES = ("LEFT", "RIGHT")
VIEWS = ("CC", "MLO")
PATH_COLUMNS = ("image", "crop", "roi")

TIDY_COLUMNS = [
    "abnormality_type", "split", "patient_id", "side", "view", "abnormality_id", "pathology", "assessment",
    "subtlety", "density", "mass_shape", "mass_margins", "calc_type", "calc_distribution",
    "image_path", "image_subject", "image_study_uid", "image_series_uid",
    "crop_path", "crop_subject", "crop_study_uid", "crop_series_uid",
    "roi_path", "roi_subject", "roi_study_uid", "roi_series_uid",
    "source_csv", "csv_row",
]  # fmt: skip
"""Columns of the table `read_description_csv` returns, in this order."""

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def find_description_csvs(root: str | Path) -> dict[tuple[str, str], Path]:
    """The official description CSVs found anywhere below `root`, by their official names.

    The shallowest match wins so that a copy nested in an output folder does not shadow the real one.
    """
    root = Path(root)
    wanted = {name: key for key, name in OFFICIAL_NAMES.items()}
    matches: dict[tuple[str, str], list[Path]] = {}
    for folder, _, files in os.walk(root):  # one walk: a full NBIA tree has tens of thousands of folders
        for name in files:
            if name in wanted:
                matches.setdefault(wanted[name], []).append(Path(folder) / name)
    return {
        key: min(paths, key=lambda p: (len(p.relative_to(root).parts), str(p)))
        for key in OFFICIAL_NAMES
        if (paths := matches.get(key))
    }


def type_and_split(path: str | Path) -> tuple[str, str]:
    """(mass|calc, train|test) from an official file name; the file name is the only place that says."""
    name = Path(path).name
    for key, official in OFFICIAL_NAMES.items():
        if name == official:
            return key
    lowered = name.lower()
    kind = "mass" if lowered.startswith("mass") else "calc" if lowered.startswith("calc") else None
    split = "train" if "train" in lowered else "test" if "test" in lowered else None
    if kind is None or split is None:
        raise InputError(path, "not a CBIS-DDSM description CSV name (expected e.g. mass_case_description_train_set.csv)")
    return kind, split


def parse_dicom_path(path: str) -> tuple[str, str, str] | None:
    """(subject, study UID, series UID) of a CSV path `Subject/StudyUID/SeriesUID/00000N.dcm`.

    None when the path does not have that shape or could leave the data root (`..`, absolute).
    """
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if len(parts) != 4 or path.startswith("/") or any(p in ("..", ".") for p in parts):
        return None
    subject, study, series, _ = parts
    if not (_UID.match(study) and _UID.match(series)):
        return None
    return subject, study, series


def path_escapes(path: str) -> bool:
    """True for a CSV path that is absolute or climbs out of the data root."""
    norm = path.replace("\\", "/")
    return norm.startswith("/") or bool(re.match(r"^[A-Za-z]:", norm)) or ".." in PurePosixPath(norm).parts


def read_description_csv(path: str | Path, problems: list[Skip] | None = None) -> pd.DataFrame:
    """One official CSV as the tidy table (columns `TIDY_COLUMNS`).

    Raises InputError naming the file and the column for a missing or unknown column. Rows with a
    value outside the published vocabularies or an unparseable path are dropped and appended to
    `problems` (when given) with their reason.
    """
    path = Path(path)
    kind, split = type_and_split(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=["N/A"], encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(path, "file not found") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, f"not a readable CSV ({str(exc).splitlines()[0]})") from exc
    expected = dict(_COMMON_COLUMNS) | _TYPE_COLUMNS[kind]
    density = [c for c in raw.columns if c in _DENSITY_SPELLINGS]
    for column in raw.columns:
        if column not in expected and column not in _DENSITY_SPELLINGS:
            raise InputError(path, f"unknown column {column!r} (a {kind} description CSV has {sorted(expected)} and breast density)")
    for column in expected:
        if column not in raw.columns:
            raise InputError(path, f"missing column {column!r}")
    if len(density) != 1:
        raise InputError(path, "missing column 'breast_density' (or 'breast density')" if not density else "two breast density columns")

    df = raw.rename(columns=expected | {density[0]: "density"})
    df = df.apply(lambda col: col.str.strip())  # the quoted path column ends in a bare newline
    df["abnormality_type"] = kind
    df["split"] = split
    df["source_csv"] = path.name
    df["csv_row"] = range(1, len(df) + 1)
    for column in ("mass_shape", "mass_margins", "calc_type", "calc_distribution"):
        if column not in df:
            df[column] = pd.NA
    for column in ("abnormality_id", "assessment", "subtlety", "density"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype("Int64")

    reasons = pd.Series("", index=df.index, dtype=object)
    for column, allowed in (("side", SIDES), ("view", VIEWS), ("pathology", PATHOLOGIES)):
        bad = ~df[column].isin(allowed)
        reasons[bad & (reasons == "")] = [f"{column} {v!r} is not one of {'/'.join(allowed)}" for v in df.loc[bad & (reasons == ""), column]]
    bad_id = df["abnormality_id"].isna() & (reasons == "")
    reasons[bad_id] = "abnormality id is missing or not a number"
    for prefix in PATH_COLUMNS:
        parsed = df[f"{prefix}_path"].fillna("").map(parse_dicom_path)
        escapes = df[f"{prefix}_path"].fillna("").map(path_escapes)
        df[f"{prefix}_subject"] = parsed.map(lambda t: t[0] if t else pd.NA)
        df[f"{prefix}_study_uid"] = parsed.map(lambda t: t[1] if t else pd.NA)
        df[f"{prefix}_series_uid"] = parsed.map(lambda t: t[2] if t else pd.NA)
        bad = escapes & (reasons == "")
        reasons[bad] = [f"{prefix} path escapes the data root: {p}" for p in df.loc[bad, f"{prefix}_path"]]
        bad = parsed.isna() & (reasons == "")
        reasons[bad] = [f"{prefix} path is not Subject/StudyUID/SeriesUID/file.dcm: {p!r}" for p in df.loc[bad, f"{prefix}_path"]]
    bad_rows = reasons != ""
    if bad_rows.any():
        for line, reason in zip(df.loc[bad_rows, "csv_row"], reasons[bad_rows]):
            logger.warning("%s row %d: %s; row skipped", path, line, reason)
            if problems is not None:
                problems.append(Skip(source=f"{path.name}:{line}", file=str(path), reason=reason))
    return df.loc[~bad_rows, TIDY_COLUMNS].reset_index(drop=True)
