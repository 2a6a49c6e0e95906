"""Normal mammograms from other collections: `prepare --normals`, their split, resume and skips,
their own evaluation and report rows, and `synth --normals`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cbis_factory import breast_image, build_tree, write_dicom
from mammoseg.dataset.prepare import PrepareOptions, prepare
from mammoseg.core.errors import InputError

SMALL = PrepareOptions(image_size=32, positive_tiles=1, negative_tiles=1, images_per_shard=3)


def _write_raster(path: Path, pixels: np.ndarray) -> None:
    import cv2

    assert cv2.imwrite(str(path), pixels)


@pytest.fixture(scope="module")
def normals_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """A small CBIS-DDSM tree and a folder of normals in every accepted format, with one corrupt file
    and one file that is not an image; returns (data root, normals folder, file -> expected patient)."""
    base = tmp_path_factory.mktemp("normals")
    tree = build_tree(base / "cbis", "csv-paths")
    folder = base / "normals"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(5)

    def image(chest_left: bool = True) -> np.ndarray:
        return breast_image(200, 128, rng, chest_left=chest_left)

    expected = {}
    for name in ("DX_a.dcm", "DX_b"):  # one woman (PatientID), the second file without a suffix
        write_dicom(folder / name, image(), "1.2.3", patient="Doe^Jane-0042")
        expected[name] = "dicom"
    _write_raster(folder / "A_0002_1.LEFT_CC.png", image())  # DDSM case, 16-bit PNG
    _write_raster(folder / "A_0002_1.LEFT_MLO.tif", image())  # same case, 16-bit TIFF
    expected.update({"A_0002_1.LEFT_CC.png": "ddsm-A_0002_1", "A_0002_1.LEFT_MLO.tif": "ddsm-A_0002_1"})
    square = np.zeros((200, 200), np.uint8)
    square[:, :128] = (image() >> 8).astype(np.uint8)
    _write_raster(folder / "mdb001.pgm", square)  # MIAS pair: 8-bit PGM
    _write_raster(folder / "mdb002.pgm", square[:, ::-1].copy())
    expected.update({"mdb001.pgm": "mias-001", "mdb002.pgm": "mias-001"})
    _write_raster(folder / "sub" / "20586908_6c613a14b80a8591_MG_R_CC_ANON.tiff", image(False))  # INbreast
    expected["sub/20586908_6c613a14b80a8591_MG_R_CC_ANON.tiff"] = "inbreast-6c613a14b80a8591"
    _write_raster(folder / "sub" / "scan 7.jpg", (image() >> 8).astype(np.uint8))  # no rule: the file
    expected["sub/scan 7.jpg"] = "file-sub_scan_7.jpg"
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 40)
    (folder / "Info.txt").write_text("not an image\n")
    (folder / ".hidden.png").write_bytes(b"skipped")
    return tree.root, folder, expected


def test_prepare_round_trip_with_normals_in_several_formats(normals_tree, tmp_path: Path) -> None:
    from mammoseg.dataset.dicom import read_pixels
    from mammoseg.dataset.layouts.normals import find_normal_images
    from mammoseg.dataset.preprocess import prepare_full_image
    from test_prepare import read_examples

    root, folder, expected = normals_tree
    relative = {n.key: n.relative for n in find_normal_images(folder)}
    result = prepare(root, tmp_path / "ds", SMALL, normals=folder)
    manifest = pd.read_csv(tmp_path / "ds" / "manifest.csv", keep_default_na=False)
    normal = manifest[manifest["kind"] == "normal"]
    assert len(normal) == len(expected) == sum(k["normal"] for k in result.counts.values())
    assert result.images == 11 + len(expected)
    assert (normal["abnormality_type"] == "none").all() and (normal["positive_fraction"] == 0).all()
    assert all(shard.split("/")[1].startswith(f"{split}-normal-") for shard, split in zip(normal["shard"], normal["split"]))
    examples = read_examples(tmp_path / "ds")
    for row in normal.itertuples():
        ex = examples[row.example_id]
        assert ex["kind"].decode() == "normal" and not ex["mask"].any()
        # the same preprocessing as a CBIS-DDSM full image: orientation, crop, pad, resize
        pixels = read_pixels(folder / relative[row.source_image])
        assert np.array_equal(ex["image"], prepare_full_image(pixels, 32)[0])
        rule = expected[relative[row.source_image]]
        assert row.patient_id.startswith(rule) if rule == "dicom" else row.patient_id == rule
    # one woman per PatientID, stored as a hash only: the value appears in no output
    assert normal.loc[normal["source_image"].str.startswith("Normal_DX"), "patient_id"].nunique() == 1
    for path in (tmp_path / "ds").rglob("*"):
        if path.is_file():
            assert b"Doe^Jane" not in path.read_bytes()
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert info["options"]["normals"] == str(folder.resolve()) and info["images"]["normal"] == len(expected)


def test_a_corrupt_normal_is_one_line_in_the_skip_report(normals_tree, tmp_path: Path) -> None:
    from mammoseg.core.errors import MammosegError

    root, folder, expected = normals_tree
    with pytest.raises(MammosegError, match="1 case"):
        prepare(root, tmp_path / "ds", SMALL, normals=folder, strict=True)
    report = pd.read_csv(tmp_path / "ds" / "prepare_report.csv", keep_default_na=False)
    assert report.to_dict("records") == [
        {"source": "Normal_broken.png", "file": "broken.png", "reason": "not a readable image file"}]


def test_normals_resume_and_are_part_of_the_options(normals_tree, tmp_path: Path) -> None:
    root, folder, _ = normals_tree
    out = tmp_path / "ds"
    first = prepare(root, out, SMALL, normals=folder)
    normal_units = sorted(p.stem for p in (out / "parts").glob("*-normal-*.json"))
    assert normal_units and first.units_run == len(list((out / "shards").glob("*.tfrecord")))
    manifest = (out / "manifest.csv").read_text()
    (out / "parts" / f"{normal_units[0]}.json").unlink()  # interrupted before this unit finished
    again = prepare(root, out, SMALL, normals=folder)
    assert (again.units_run, again.units_reused) == (1, first.units_run - 1)
    assert (out / "manifest.csv").read_text() == manifest
    assert prepare(root, out, SMALL, normals=folder).units_run == 0
    with pytest.raises(InputError, match="normals '.*' -> None"):
        prepare(root, out, SMALL)
    without = prepare(root, out, SMALL, overwrite=True)
    assert without.units_reused == 0 and not list((out / "shards").glob("*-normal-*"))
    assert "normal" not in set(pd.read_csv(out / "manifest.csv")["kind"])
    with pytest.raises(InputError, match="normals folder is not a folder"):
        prepare(root, tmp_path / "other", SMALL, normals=tmp_path / "absent")
    assert not (tmp_path / "other").exists()  # refused before anything is written
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images below this folder"):
        prepare(root, out, SMALL, normals=tmp_path / "empty", overwrite=True)
    assert prepare(root, out, SMALL).units_run == 0  # the dataset without normals is intact


def test_normals_are_split_by_patient_in_the_cbis_proportions(tmp_path: Path) -> None:
    from mammoseg.dataset.layouts.normals import MAX_IMAGES_PER_PATIENT, find_normal_images, patient_from_name
    from mammoseg.dataset.split import assign_by_fractions, split_fractions

    assert split_fractions({"a": "train", "b": "train", "c": "val", "d": "test"}) == {"train": 0.5, "val": 0.25, "test": 0.25}
    patients = [f"w{i:02d}" for i in range(40) for _ in range(3)]
    fractions = {"train": 0.65, "val": 0.1, "test": 0.25}
    split = assign_by_fractions(patients, fractions, seed=3)
    assert sorted(split) == sorted(set(patients))
    assert {s: list(split.values()).count(s) for s in ("train", "val", "test")} == {"train": 26, "val": 4, "test": 10}
    assert split == assign_by_fractions(patients[::-1], fractions, seed=3) != assign_by_fractions(patients, fractions, seed=4)
    assert patient_from_name("mdb003.pgm") == patient_from_name("MDB004.pgm") == "mias-002" != patient_from_name("mdb005.pgm")
    assert patient_from_name("D_4001_1.RIGHT_MLO.png") == "ddsm-D_4001_1" and patient_from_name("scan.png") is None
    # an anonymiser's placeholder PatientID (more files than one woman has) does not group them
    pixels = np.full((8, 8), 100, np.uint16)
    for i in range(MAX_IMAGES_PER_PATIENT + 1):
        write_dicom(tmp_path / f"img{i:02d}.dcm", pixels, "1.2", patient="ANONYMOUS")
    found = find_normal_images(tmp_path)
    assert len({n.patient_id for n in found}) == len(found) and found[0].patient_id == "file-img00.dcm"


def test_synthetic_normals_prepare_into_one_split_per_woman(tmp_path: Path) -> None:
    from mammoseg.cli import cli
    from mammoseg.dataset.dicom import read_pixels
    from mammoseg.dataset.split import split_fractions

    out = tmp_path / "synth"
    result = CliRunner().invoke(cli, ["synth", str(out), "--cases", "16", "--seed", "1", "--image-size", "128",
                                      "--normals", "16"])
    assert result.exit_code == 0, result.output
    assert "wrote 16 normal mammograms of 8 patients" in result.output
    truth = json.loads((out / "normals" / "synth_normals.json").read_text())["files"]
    assert {f["format"] for f in truth} == {"dicom", "png", "pgm", "tiff"}
    dtypes = {f["format"]: read_pixels(out / "normals" / f["file"]).dtype for f in truth}
    assert dtypes == {"dicom": np.uint16, "png": np.uint16, "pgm": np.uint8, "tiff": np.uint16}
    prepare(out, tmp_path / "ds", PrepareOptions(image_size=32, positive_tiles=0, negative_tiles=0, val_fraction=0.2),
            normals=out / "normals")
    manifest = pd.read_csv(tmp_path / "ds" / "manifest.csv", keep_default_na=False)
    normal = manifest[manifest["kind"] == "normal"].copy()
    woman = {f"Normal_{f['file']}": f["patient"] for f in truth}
    normal["woman"] = normal["source_image"].map(woman)
    assert len(normal) == 16 and normal.groupby("woman")["patient_id"].nunique().max() == 1
    assert normal["patient_id"].nunique() == 8 and normal.groupby("woman")["split"].nunique().max() == 1
    cbis = manifest[manifest["kind"] == "whole"]
    fractions = split_fractions(dict(zip(cbis["patient_id"], cbis["split"])))
    per_split = normal.drop_duplicates("woman")["split"].value_counts()
    assert per_split.get("test", 0) == round(fractions["test"] * 8)
    assert per_split.get("val", 0) == min(8 - per_split.get("test", 0), round(fractions["val"] * 8))


def test_metrics_count_normal_images_apart() -> None:
    from mammoseg.metrics.segmentation import SegmentationAccumulator

    acc = SegmentationAccumulator()
    prob = np.zeros((4, 30, 30), np.float32)
    prob[1, :2, :] = 0.9  # 60 pixels > 900/750: a false positive on a negative tile
    prob[3, :, :] = 0.7  # a false positive on a normal image
    prob[2, 0, 0] = 0.6  # one pixel: not enough for the author's rule
    acc.update(prob, np.zeros((4, 30, 30)), kinds=["negative", "negative", "normal", "normal"])
    summary = acc.summary()
    assert summary["n_normal_images"] == 2 and summary["normals_fp_rate_author"] == 0.5
    assert summary["negatives_fp_rate_author"] == 0.5 and summary["normals_max_prob"] == pytest.approx(0.7)
    assert summary["normals_mean_prob"] == pytest.approx((0.6 / 900 + 0.7) / 2)
    assert summary["normals_mean_max_prob"] == pytest.approx((0.6 + 0.7) / 2)
    assert summary["negatives_mean_max_prob"] == pytest.approx(0.45)
    plain = SegmentationAccumulator()
    plain.update(prob, np.zeros((4, 30, 30)))
    assert "n_normal_images" not in plain.summary() and plain.summary()["n_negative_images"] == 4


def test_evaluate_and_report_give_normal_images_their_own_rows(tiny_run: Path, tmp_path: Path) -> None:
    from mammoseg.evaluation.evaluate import evaluate_run
    from mammoseg.reporting import write_report
    from train_data import write_easy_dataset

    data = write_easy_dataset(tmp_path / "data", counts={"train": 4, "val": 4, "test": 8}, normals=2)
    run = tmp_path / "dilated_resize-seed0"
    shutil.copytree(tiny_run, run)
    metrics = evaluate_run(run, "test", data=data)  # another dataset than the run's: an external evaluation
    frame = pd.read_csv(run / "eval" / "test@data" / "per_image.csv")
    normal = frame[frame["kind"] == "normal"]
    negative = frame[frame["kind"] == "negative"]
    assert len(normal) == 2 and len(negative) == 2 and metrics["n_normal_images"] == 2
    assert metrics["normals_fp_rate_author"] == pytest.approx(normal["predicted_positive"].mean())
    assert metrics["normals_mean_prob"] == pytest.approx(normal["mean_prob"].mean())
    assert metrics["normals_max_prob"] == pytest.approx(normal["max_prob"].max())
    assert metrics["negatives_fp_rate_author"] == pytest.approx(negative["predicted_positive"].mean())
    assert metrics["n_negative_images"] == 2 and "phase_mean_normals" in metrics["checkerboard"]
    assert "n_normal_images" not in json.loads((tiny_run / "eval" / "test" / "metrics.json").read_text())

    write_report([run], tmp_path / "report", data_name="data")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "### Normal images" in md and "FP rate on normal images" in md
    summary = pd.read_csv(tmp_path / "report" / "summary.csv").iloc[0]
    assert summary["normal_fp_rate_mean"] == pytest.approx(metrics["normals_fp_rate_author"])
    assert summary["normal_mean_prob_mean"] == pytest.approx(metrics["normals_mean_prob"])
    assert summary["neg_mean_prob_mean"] == pytest.approx(negative["mean_prob"].mean())
    write_report([tiny_run], tmp_path / "plain")
    plain = (tmp_path / "plain" / "report.md").read_text()
    assert "### Normal images" not in plain and "FP rate on normal images" not in plain


def test_synthetic_normals_repeat_for_a_seed_and_overwrite_only_their_own(tmp_path: Path) -> None:
    from mammoseg.dataset.synthetic.normals import TRUTH_FILE, write_normals

    first = write_normals(tmp_path / "a", count=4, seed=3, image_size=128)
    write_normals(tmp_path / "b", count=4, seed=3, image_size=128)
    assert first.images == 4 and first.patients == 2 and first.by_format == {"dicom": 2, "png": 2, "pgm": 0, "tiff": 0}
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    with pytest.raises(InputError, match="not empty"):
        write_normals(tmp_path / "a", count=2, seed=3, image_size=128)
    assert write_normals(tmp_path / "a", count=2, seed=4, image_size=128, overwrite=True).images == 2
    (tmp_path / "a" / TRUTH_FILE).unlink()
    with pytest.raises(InputError, match=f"has no {TRUTH_FILE}"):
        write_normals(tmp_path / "a", count=2, seed=3, image_size=128, overwrite=True)


def test_digital_normals_are_stored_as_digital_systems_do_and_prepare(tmp_path: Path) -> None:
    """synth --style digital --normals: DICOM with 12-16 bits stored, MONOCHROME1 among them (stored inverted and
    read back upright), 16-bit PNG and TIFF, no MIAS film PGM; every one prepared, the breast found in each."""
    import pydicom

    from mammoseg.cli import cli
    from mammoseg.dataset import preprocess
    from mammoseg.dataset.dicom import read_pixels

    out = tmp_path / "synth"
    result = CliRunner().invoke(cli, ["synth", str(out), "--cases", "8", "--seed", "2", "--image-size", "128",
                                      "--normals", "24", "--style", "digital"])
    assert result.exit_code == 0, result.output
    normals = out / "normals"
    truth = json.loads((normals / "synth_normals.json").read_text())
    assert truth["options"]["style"] == "digital" and {f["format"] for f in truth["files"]} == {"dicom", "png", "tiff"}
    headers = [pydicom.dcmread(normals / f["file"]) for f in truth["files"] if f["format"] == "dicom"]
    assert {int(h.BitsStored) for h in headers} <= {12, 14, 16}
    assert {h.PhotometricInterpretation for h in headers} == {"MONOCHROME1", "MONOCHROME2"}
    for header, f in zip(headers, [f for f in truth["files"] if f["format"] == "dicom"]):
        stored, shown = header.pixel_array, read_pixels(normals / f["file"])
        assert stored.max() < 1 << int(header.BitsStored)
        if header.PhotometricInterpretation == "MONOCHROME1":
            assert np.array_equal(shown, (1 << int(header.BitsStored)) - 1 - stored.astype(np.int64))
    for f in truth["files"]:
        breast = preprocess.analyse(read_pixels(normals / f["file"])).breast
        assert 0.15 < breast.mean() < 0.9, f["file"]
    prepare(out, tmp_path / "ds", PrepareOptions(image_size=32, positive_tiles=0, negative_tiles=0), normals=normals)
    manifest = pd.read_csv(tmp_path / "ds" / "manifest.csv", keep_default_na=False)
    assert (manifest["kind"] == "normal").sum() == 24
    report = pd.read_csv(tmp_path / "ds" / "prepare_report.csv", keep_default_na=False)
    assert not report["source"].str.contains("Normal_").any()  # no normal skipped or warned about
