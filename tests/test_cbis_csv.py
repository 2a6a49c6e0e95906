"""The description CSVs: the real files' facts, their quirks, and clear errors for broken copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from cbis_factory import read_table
from mammoseg.dataset import cbis
from mammoseg.dataset.split import assign_splits
from mammoseg.core.errors import InputError, Skip


@pytest.fixture(scope="module")
def real(shared_dir: Path) -> pd.DataFrame:
    csvs = cbis.find_description_csvs(shared_dir / "cbis-ddsm-csv")
    assert len(csvs) == 4
    problems: list[Skip] = []
    table = read_table(csvs, problems)
    assert problems == []
    return table


def test_real_counts(real: pd.DataFrame) -> None:
    assert len(real) == 3568
    assert real["image_path"].nunique() == 3103
    assert real["image_subject"].nunique() == 3103  # the key prepare groups an image's abnormalities by
    assert real["patient_id"].nunique() == 1566
    counts = real.groupby(["abnormality_type", "split"]).size().to_dict()
    assert counts == {("mass", "train"): 1318, ("mass", "test"): 378, ("calc", "train"): 1546, ("calc", "test"): 326}


def test_real_vocabularies_and_types(real: pd.DataFrame) -> None:
    assert set(real["pathology"]) == {"MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK"}
    assert set(real["view"]) == {"CC", "MLO"}
    assert set(real["side"]) == {"LEFT", "RIGHT"}
    assert list(real.columns) == cbis.TIDY_COLUMNS
    # both density spellings land in one column, with no value lost
    assert real["density"].notna().all() and set(real["density"]) <= {0, 1, 2, 3, 4}
    assert real["subtlety"].notna().all() and real["assessment"].notna().all()
    # the quoted path ending in a newline is stripped, and every path parses
    for prefix in cbis.PATH_COLUMNS:
        assert not real[f"{prefix}_path"].str.contains("\n").any()
        assert real[f"{prefix}_series_uid"].notna().all()
    assert (real["roi_subject"] == real["image_subject"] + "_" + real["abnormality_id"].astype(str)).all()
    # literal N/A is missing; descriptors only exist for their own type
    mass, calc = real[real["abnormality_type"] == "mass"], real[real["abnormality_type"] == "calc"]
    assert mass["mass_margins"].isna().sum() == 60 and mass["calc_type"].isna().all()
    assert calc["calc_distribution"].isna().sum() == 439 and calc["mass_shape"].isna().all()
    assert "N/A" not in set(real["mass_margins"].dropna())


def test_real_cross_split_patients_stay_in_test(real: pd.DataFrame) -> None:
    official = real.groupby("patient_id")["split"].nunique()
    crossing = official[official > 1].index
    assert len(crossing) == 31  # in a train CSV of one type and a test CSV of the other
    splits = assign_splits(real, val_fraction=0.1, seed=3)
    assert set(splits) == set(real["patient_id"])
    assert all(splits[p] == "test" for p in crossing)
    assert (real.loc[real["split"] == "test", "patient_id"].map(splits) == "test").all()  # official test stays test
    train_patients = {p for p, s in splits.items() if s in ("train", "val")}
    assert abs(sum(s == "val" for s in splits.values()) - round(0.1 * len(train_patients))) <= 1
    assert splits == assign_splits(real, val_fraction=0.1, seed=3)
    assert splits != assign_splits(real, val_fraction=0.1, seed=4)


def _copy(shared_dir: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copy(shared_dir / "cbis-ddsm-csv" / name, dst)
    dst.chmod(0o644)
    return dst


def test_unknown_and_missing_columns_name_file_and_column(shared_dir: Path, tmp_path: Path) -> None:
    path = _copy(shared_dir, tmp_path, "calc_case_description_test_set.csv")
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"calc distribution", b"calc spread", 1))
    with pytest.raises(InputError) as info:
        cbis.read_description_csv(path)
    assert str(path) in str(info.value) and "'calc spread'" in str(info.value)
    path.write_bytes(raw.replace(b",subtlety,", b",", 1))
    with pytest.raises(InputError, match="missing column 'subtlety'"):
        cbis.read_description_csv(path)


def test_na_strings_other_than_n_a_are_values(tmp_path: Path) -> None:
    path = tmp_path / "mass_case_description_train_set.csv"
    header = ",".join(["patient_id", "breast_density", "left or right breast", "image view", "abnormality id", "abnormality type",
                       "mass shape", "mass margins", "assessment", "pathology", "subtlety", "image file path",
                       "cropped image file path", "ROI mask file path"])  # fmt: skip
    uid = "1.2.3"
    row = f'P_1,2,LEFT,CC,1,mass,NA,N/A,4,BENIGN,3,S/{uid}/{uid}/000000.dcm,S_1/{uid}/{uid}/000000.dcm,"S_1/{uid}/{uid}/000001.dcm\n"'
    bad = f"P_2,2,MIDDLE,CC,1,mass,OVAL,NA,4,BENIGN,3,../../etc/{uid}/000000.dcm,S_1/{uid}/{uid}/000000.dcm,S_1/{uid}/{uid}/000001.dcm"
    escape = f"P_3,2,LEFT,CC,1,mass,OVAL,NA,4,BENIGN,3,../{uid}/{uid}/000000.dcm,S_1/{uid}/{uid}/000000.dcm,S_1/{uid}/{uid}/000001.dcm"
    path.write_bytes(("\r\n".join([header, row, bad, escape]) + "\r\n").encode())
    problems: list[Skip] = []
    table = cbis.read_description_csv(path, problems)
    assert len(table) == 1
    assert table.loc[0, "mass_shape"] == "NA" and pd.isna(table.loc[0, "mass_margins"])
    assert table.loc[0, "roi_path"].endswith("000001.dcm")
    reasons = [p.reason for p in problems]
    assert any("side 'MIDDLE'" in r for r in reasons) and any("escapes the data root" in r for r in reasons)


def test_split_and_type_come_from_the_file_name(tmp_path: Path) -> None:
    assert cbis.type_and_split("calc_case_description_test_set.csv") == ("calc", "test")
    with pytest.raises(InputError, match="not a CBIS-DDSM description CSV name"):
        cbis.type_and_split(tmp_path / "descriptions.csv")
