"""The synthetic tree must be indistinguishable in format from a CBIS-DDSM download."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from mammoseg.cli import cli
from mammoseg.dataset.synthetic import generate
from mammoseg.dataset.synthetic.plan import CSV_NAMES, image_shape
from mammoseg.core.errors import InputError

CSVS = sorted(CSV_NAMES.values())


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="ascii") as f:
        return list(csv.DictReader(f))


def _truth(root: Path) -> dict:
    return json.loads((root / "synth_truth.json").read_text())


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", CSVS)
def test_csv_bytes_match_the_official_files(synthetic_cbis: Path, shared_dir: Path, name: str) -> None:
    ours = (synthetic_cbis / name).read_bytes()
    real = (shared_dir / "cbis-ddsm-csv" / name).read_bytes()
    assert ours.split(b"\r\n", 1)[0] == real.split(b"\r\n", 1)[0]
    # Records end in CRLF; the only bare LF is the one inside each row's quoted path, in the same column.
    assert ours.endswith(b"\r\n") and ours.count(b"\n") == 2 * ours.count(b"\r\n") - 1
    quoted = "ROI mask file path" if name.startswith("mass") else "cropped image file path"
    ours_rows, real_rows = _rows(synthetic_cbis / name), _rows(shared_dir / "cbis-ddsm-csv" / name)
    assert ours_rows, "every CSV has rows in the fixture"
    for row in ours_rows:
        assert [k for k, v in row.items() if v.endswith("\n")] == [quoted]
        assert row["image file path"].endswith("/000000.dcm")
        parts = row["image file path"].split("/")
        assert len(parts) == 4 and parts[1].startswith("1.3.6.1.4.1.9590.100.1.2.") and len(parts[2]) <= 64
        assert row["cropped image file path"].strip().split("/")[0] == f"{parts[0]}_{row['abnormality id']}"
    # Every value comes from the real vocabulary of its column (paths and ids aside).
    for column in ours_rows[0]:
        if "path" in column or column == "patient_id":
            continue
        assert {r[column] for r in ours_rows} <= {r[column] for r in real_rows} | {"N/A"}, column


def test_csv_vocabulary_and_missing_values(tmp_path: Path) -> None:
    generate(tmp_path, cases=60, seed=3, image_size=128, layout="csv-paths")
    mass = sum((_rows(tmp_path / n) for n in CSVS if n.startswith("mass")), [])
    calc = sum((_rows(tmp_path / n) for n in CSVS if n.startswith("calc")), [])
    assert any("N/A" in r.values() for r in mass + calc)
    assert {r["pathology"] for r in mass + calc} <= {"MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK"}
    assert {r["breast_density"] for r in mass} <= set("1234") and {r["breast density"] for r in calc} <= set("1234")
    assert {int(r["assessment"]) for r in mass + calc} <= set(range(6))
    assert {int(r["subtlety"]) for r in mass + calc} <= set(range(1, 6))
    # Mass rows list crop 000000 / mask 000001, calc rows the reverse (unless crop and mask sit in two series).
    def names(rows: list[dict[str, str]]) -> set[tuple[str, str]]:
        return {tuple(r[c].strip().rsplit("/", 1)[1] for c in ("cropped image file path", "ROI mask file path"))
                for r in rows}

    assert names(mass) == {("000000.dcm", "000001.dcm"), ("000000.dcm", "000000.dcm")}
    assert names(calc) <= {("000001.dcm", "000000.dcm"), ("000000.dcm", "000000.dcm")}
    train = {r["patient_id"] for n in CSVS if "train" in n for r in _rows(tmp_path / n)}
    test = {r["patient_id"] for n in CSVS if "test" in n for r in _rows(tmp_path / n)}
    assert train and test and train & test, "a few patients are in a train and a test set"


def test_nbia_layout_and_dicom_headers(synthetic_cbis: Path) -> None:
    truth = _truth(synthetic_cbis)
    meta = _rows(synthetic_cbis / "metadata.csv")
    assert {"Series UID", "Subject ID", "Study UID", "Series Description", "Number of Images",
            "File Location"} <= set(meta[0])
    for row in meta:
        folder = synthetic_cbis / row["File Location"]
        files = sorted(p.name for p in folder.iterdir())
        assert files == [f"1-{i}.dcm" for i in range(1, int(row["Number of Images"]) + 1)]
        study_dir, series_dir = folder.parent.name, folder.name
        assert study_dir.endswith("-DDSM-NA-" + row["Study UID"][-5:]) and len(study_dir.split("-")[0]) == 2
        assert series_dir == f"1.000000-{row['Series Description']}-{row['Series UID'][-5:]}"
        for name in files:
            ds = pydicom.dcmread(folder / name)
            assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
            assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
            assert ds.PatientID == row["Subject ID"] == folder.parent.parent.name
            assert ds.SeriesInstanceUID == row["Series UID"] and ds.StudyInstanceUID == row["Study UID"]
            px = ds.pixel_array
            assert ds.SamplesPerPixel == 1 and ds.PixelRepresentation == 0
            assert ds.BitsStored == ds.BitsAllocated and ds.HighBit == ds.BitsAllocated - 1
            assert px.shape == (ds.Rows, ds.Columns)
            if ds.SeriesDescription == "ROI mask images":
                assert px.dtype == np.uint8 and set(np.unique(px)) <= {0, 255}
            else:
                assert ds.SeriesDescription in ("full mammogram images", "cropped images")
                assert px.dtype == np.uint16 and ds.BitsAllocated == 16
    # The CSV paths do not resolve literally; SeriesInstanceUIDs map them to files.
    by_series = {r["Series UID"]: r for r in meta}
    for name in CSVS:
        for row in _rows(synthetic_cbis / name):
            for column in ("image file path", "cropped image file path", "ROI mask file path"):
                path = row[column].strip()
                assert not (synthetic_cbis / path).exists() and not (synthetic_cbis / "CBIS-DDSM" / path).exists()
                assert path.split("/")[2] in by_series
    subjects = {c["subject"] for c in truth["cases"]}
    assert subjects == {r["Subject ID"] for r in meta if r["Series Description"] == "full mammogram images"}


def test_masks_are_binary_full_size_and_quirks_recorded(synthetic_cbis: Path) -> None:
    truth = _truth(synthetic_cbis)
    assert truth["complete"] and all(truth["quirks"][k] for k in
                                     ("swapped_crop_mask", "mask_size_mismatch", "split_roi_series", "monochrome1"))
    for case in truth["cases"]:
        full = pydicom.dcmread(synthetic_cbis / case["file"])
        assert full.PhotometricInterpretation == case["photometric"]
        assert (case["subject"] in truth["quirks"]["monochrome1"]) == (case["photometric"] == "MONOCHROME1")
        for a in case["abnormalities"]:
            mask = pydicom.dcmread(synthetic_cbis / a["mask_file"]).pixel_array
            crop = pydicom.dcmread(synthetic_cbis / a["crop_file"]).pixel_array
            assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
            assert crop.dtype == np.uint16 and crop.size < full.Rows * full.Columns
            off = a["roi_subject"] in truth["quirks"]["mask_size_mismatch"]
            delta = (mask.shape[0] - full.Rows, mask.shape[1] - full.Columns)
            assert (delta != (0, 0)) == off and max(map(abs, delta)) <= 4
            # Swapped: the file the CSV names as the crop holds the mask (found from the pixels).
            names = {Path(a["crop_file"]).name, Path(a["mask_file"]).name}
            if a["split_series"]:
                assert names == {"1-1.dcm"}
            else:
                mass = case["abnormality_type"] == "mass"
                csv_crop = "1-1.dcm" if mass else "1-2.dcm"
                assert (Path(a["crop_file"]).name != csv_crop) == a["swapped"]


def test_unlabelled_dense_tissue_is_as_bright_as_lesions(synthetic_cbis: Path) -> None:
    """Bright regions outside every mask exist, so brightness alone cannot give the label."""
    for case in _truth(synthetic_cbis)["cases"]:
        ds = pydicom.dcmread(synthetic_cbis / case["file"])
        px = ds.pixel_array.astype(np.float32)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            px = 65535 - px
        lesion = np.zeros(px.shape, bool)
        for a in case["abnormalities"]:
            m = pydicom.dcmread(synthetic_cbis / a["mask_file"]).pixel_array
            lesion |= cv2.resize(m, px.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
        elsewhere = ~lesion
        for y0, y1, x0, x1 in case["labels"] + case["bands"]:
            elsewhere[y0:y1, x0:x1] = False  # film labels and scanner bands are bright too, but not tissue
        assert case["dense_islands"]
        assert (px[elsewhere] >= np.median(px[lesion])).sum() > 0.1 * lesion.sum()


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    generate(tmp_path / "a", cases=3, seed=5, image_size=160)
    generate(tmp_path / "b", cases=3, seed=5, image_size=160, workers=2)
    generate(tmp_path / "c", cases=3, seed=6, image_size=160)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b") != _tree_digest(tmp_path / "c")


def test_csv_paths_layout_resolves_literally(tmp_path: Path) -> None:
    generate(tmp_path, cases=4, seed=1, image_size=128, layout="csv-paths")
    assert not (tmp_path / "metadata.csv").exists()
    n = 0
    for name in CSVS:
        for row in _rows(tmp_path / name):
            for column in ("image file path", "cropped image file path", "ROI mask file path"):
                ds = pydicom.dcmread(tmp_path / "CBIS-DDSM" / row[column].strip(), stop_before_pixels=True)
                assert ds.SeriesInstanceUID == row[column].split("/")[2]
                n += 1
    assert n >= 12


def test_kaggle_layout(tmp_path: Path) -> None:
    generate(tmp_path, cases=5, seed=2, image_size=128, layout="kaggle-jpeg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csv", "jpeg", "synth_truth.json"]
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == sorted(CSVS + ["dicom_info.csv"])
    info = _rows(tmp_path / "csv" / "dicom_info.csv")
    assert {"file_path", "image_path", "PatientID", "SeriesInstanceUID", "StudyInstanceUID", "SeriesDescription",
            "Rows", "Columns", "PhotometricInterpretation", "BitsAllocated"} <= set(info[0])
    assert {r["SeriesDescription"] for r in info} <= {"full mammogram images", "cropped images", "ROI mask images", ""}
    assert "" in {r["SeriesDescription"] for r in info}
    for r in info:
        assert r["image_path"].startswith(f"CBIS-DDSM/jpeg/{r['SeriesInstanceUID']}/")
        img = cv2.imread(str(tmp_path / r["image_path"].removeprefix("CBIS-DDSM/")), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (int(r["Rows"]), int(r["Columns"]))
    masks = [cv2.imread(str(tmp_path / r["image_path"].removeprefix("CBIS-DDSM/")), cv2.IMREAD_UNCHANGED)
             for r in info if r["SeriesDescription"] == "ROI mask images"]
    assert any(set(np.unique(m)) - {0, 255} for m in masks), "JPEG masks are not exactly binary"
    series = {r["SeriesInstanceUID"] for r in info}
    for name in CSVS:
        for row in _rows(tmp_path / "csv" / name):
            assert {row[c].strip().split("/")[2] for c in ("image file path", "ROI mask file path")} <= series


def test_refuses_non_empty_out_and_overwrites_own_tree(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        generate(other, cases=1, image_size=128)
    with pytest.raises(InputError, match="synth_truth.json"):
        generate(other, cases=1, image_size=128, overwrite=True)
    assert (other / "keep.txt").read_text() == "x"

    runner = CliRunner()
    out = tmp_path / "tree"
    assert runner.invoke(cli, ["synth", str(out), "--cases", "2", "--image-size", "128"]).exit_code == 0
    again = runner.invoke(cli, ["synth", str(out), "--cases", "1", "--image-size", "128"])
    assert again.exit_code != 0 and "not empty" in str(again.exception or again.output)
    result = runner.invoke(cli, ["synth", str(out), "--cases", "1", "--image-size", "128", "--layout", "csv-paths",
                                 "--overwrite"])
    assert result.exit_code == 0, result.output
    assert len(_truth(out)["cases"]) == 1 and not (out / "metadata.csv").exists()
    assert "wrote 1 mammograms" in result.output


def test_synth_help_names_the_layouts() -> None:
    result = CliRunner().invoke(cli, ["synth", "--help"])
    assert result.exit_code == 0
    assert all(word in result.output for word in ("nbia", "csv-paths", "kaggle-jpeg", "metadata.csv", "Example"))


def test_csv_parses_with_pandas(synthetic_cbis: Path) -> None:
    """Readers using pandas see the same columns and the trailing newline in the quoted path, as with the real files."""
    import pandas as pd

    for name in CSVS:
        frame = pd.read_csv(io.BytesIO((synthetic_cbis / name).read_bytes()), keep_default_na=False)
        assert len(frame.columns) == 14 and len(frame) > 0
        quoted = "ROI mask file path" if name.startswith("mass") else "cropped image file path"
        assert frame[quoted].str.endswith("\n").all() and not frame["image file path"].str.endswith("\n").any()


def test_full_size_images_are_cbis_like() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        rows, cols = image_shape(rng, 1024, full_size=True)
        assert 4300 <= rows <= 5300 and 1.45 <= rows / cols <= 1.75
    assert image_shape(rng, 512, full_size=False)[0] == 512
