"""`prepare` end to end: outputs per the contract, bad inputs reported, splits, resume, workers, privacy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cbis_factory import Case, build_tree, default_cases
from mammoseg.dataset.prepare import PrepareOptions, prepare
from mammoseg.core.errors import InputError, MammosegError

SMALL = PrepareOptions(image_size=32, positive_tiles=2, negative_tiles=2, images_per_shard=3)


def read_records(dataset: Path) -> dict[str, dict]:
    """Every stored record by its whole example's id, read with TensorFlow's own TFRecord reader."""
    import tensorflow as tf

    from mammoseg.dataset.shards import parse_example

    out = {}
    for shard in sorted((dataset / "shards").glob("*.tfrecord")):
        for record in tf.data.TFRecordDataset(str(shard)):
            ex = {k: v.numpy() for k, v in parse_example(record).items()}
            out[ex["example_id"].decode()] = ex
    return out


def read_examples(dataset: Path) -> dict[str, dict]:
    """Every example the pipeline cuts from the records, with the fixed evaluation tiles: image
    uint8, mask 0/1, kind."""
    from mammoseg.dataset.pipeline import denormalize, make_dataset

    out = {}
    for split in ("train", "val", "test"):
        if not list((dataset / "shards").glob(f"{split}-*.tfrecord")):
            continue
        for batch in make_dataset(dataset, split, batch_size=8, with_metadata=True, deterministic=True).as_numpy_iterator():
            for i, example_id in enumerate(batch["example_id"]):
                out[example_id.decode()] = {"image": denormalize(batch["image"][i, ..., 0]),
                                            "mask": batch["mask"][i, ..., 0].astype(np.uint8), "kind": batch["kind"][i]}
    return out


def test_prepare_outputs_follow_the_contract(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "cbis", "nbia")
    result = prepare(tree.root, tmp_path / "ds", SMALL)
    ds = tmp_path / "ds"
    manifest = pd.read_csv(ds / "manifest.csv", keep_default_na=False)
    info = json.loads((ds / "dataset.json").read_text())
    assert info["format_version"] == 2 and info["image_size"] == 32 and info["options"]["positive_tiles"] == 2
    assert info["counts"] == result.counts
    assert sum(sum(k.values()) for k in info["counts"].values()) == len(manifest)
    assert pd.read_csv(ds / "prepare_report.csv").empty
    assert result.images == 11  # all, including the swapped crop/mask and the split ROI series
    records = read_records(ds)  # one per mammogram
    assert sorted(records) == sorted(manifest.loc[manifest["kind"] == "whole", "example_id"])
    examples = read_examples(ds)
    assert set(examples) == set(manifest["example_id"])
    for row in manifest.itertuples():
        ex = examples[row.example_id]
        assert ex["image"].shape == ex["mask"].shape == (32, 32) and (row.height, row.width) == (32, 32)
        assert ex["kind"].decode() == row.kind and row.shard.startswith(f"shards/{row.split}-")
        positives = np.count_nonzero(ex["mask"])
        # a whole breast's fraction is its mask's; a tile's, the abnormal area of its box at working
        # resolution, which the 32x32 cut samples
        assert abs(positives / 32**2 - row.positive_fraction) < (1e-5 if row.kind == "whole" else 0.05)
        if row.kind == "negative":
            assert positives == 0 and row.abnormality_type == "none" and row.pathology == "NONE"
        else:
            assert positives > 0 and row.abnormality_type in ("mass", "calc", "mass+calc")
    assert set(manifest["kind"]) == {"whole", "positive", "negative"}
    # patient-level split: no patient in two splits; the patient with a test image is all test
    assert manifest.groupby("patient_id")["split"].nunique().max() == 1
    assert set(manifest.loc[manifest["patient_id"] == "P_00001", "split"]) == {"test"}
    two = manifest[(manifest["source_image"] == "Calc-Training_P_00005_RIGHT_MLO") & (manifest["kind"] == "whole")]
    assert two["pathology"].item() == "BENIGN"
    # nothing from the DICOM headers beyond the ids (the factory plants a name and an institution)
    for path in ds.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"Secret" not in data and b"Hidden Hospital" not in data


def test_bad_inputs_are_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    import pydicom
    from pydicom.encaps import encapsulate

    cases = default_cases() + [Case("mass", "train", "P_00020", "LEFT", "CC", mask_shape=(180, 160)),
                               Case("mass", "train", "P_00021", "LEFT", "MLO", mask_shape=(238, 162))]  # fmt: skip
    tree = build_tree(tmp_path / "cbis", "csv-paths", cases)
    files = tree.image_files
    files["Mass-Training_P_00001_LEFT_CC"].write_bytes(b"not a dicom at all" * 50)  # corrupt
    data = files["Mass-Training_P_00001_LEFT_MLO"].read_bytes()
    files["Mass-Training_P_00001_LEFT_MLO"].write_bytes(data[: len(data) // 2])  # truncated
    files["Mass-Training_P_00004_RIGHT_CC"].unlink()  # missing
    ds = pydicom.dcmread(files["Mass-Training_P_00009_LEFT_CC"])
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(64)])
    ds["PixelData"].VR = "OB"
    ds.save_as(files["Mass-Training_P_00009_LEFT_CC"], enforce_file_format=True)  # compressed, undecodable
    calc_test = tree.csvs[("calc", "test")]
    calc_test.write_bytes(calc_test.read_bytes().replace(b"subtlety", b"subtlety,extra", 1))  # unknown column
    calc_train = tree.csvs[("calc", "train")]
    text = calc_train.read_bytes().decode()
    calc_train.write_bytes(text.replace("Calc-Training_P_00007_LEFT_CC/", "../Calc-Training_P_00007_LEFT_CC/", 1).encode())  # escapes

    out = tmp_path / "ds"
    with pytest.raises(MammosegError, match="--strict"):
        prepare(tree.root, out, SMALL, strict=True)
    report = pd.read_csv(out / "prepare_report.csv", keep_default_na=False)
    reasons = dict(zip(report["source"], report["reason"]))
    assert "not a readable DICOM" in reasons["Mass-Training_P_00001_LEFT_CC"]
    assert "truncated" in reasons["Mass-Training_P_00001_LEFT_MLO"]
    assert "file not found" in reasons["Mass-Training_P_00004_RIGHT_CC"]
    assert "no installed decoder" in reasons["Mass-Training_P_00009_LEFT_CC"]
    assert "differs from image size" in reasons["Mass-Training_P_00020_LEFT_CC"]
    assert "unknown column 'extra'" in reasons["calc_case_description_test_set.csv"]
    assert any("escapes the data root" in r for r in report["reason"])
    # everything else made it, including the mask a few pixels off
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    whole = set(manifest.loc[manifest["kind"] == "whole", "source_image"])
    assert whole == {"Calc-Training_P_00005_RIGHT_MLO", "Mass-Training_P_00011_RIGHT_MLO", "Calc-Training_P_00013_LEFT_MLO",
                     "Mass-Test_P_00016_LEFT_CC", "Mass-Training_P_00021_LEFT_MLO"}  # fmt: skip
    assert set(read_examples(out)) == set(manifest["example_id"])
    # without --strict the same run succeeds (resuming every unit) and reports the same cases
    result = prepare(tree.root, out, SMALL)
    assert result.units_run == 0 and result.skipped == len(report)


def test_resume_does_no_repeated_work_and_options_are_checked(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "cbis", "csv-paths")
    out = tmp_path / "ds"
    first = prepare(tree.root, out, SMALL)
    manifest = (out / "manifest.csv").read_text()
    shards = sorted((out / "shards").glob("*.tfrecord"))
    assert first.units_run == len(shards) >= 3
    stamps = {p.name: p.stat().st_mtime_ns for p in shards}
    # an interrupted run: one unit's shard written, its sidecar not yet
    (out / "parts" / "train-00001.json").unlink()
    (out / "manifest.csv").unlink()
    (out / "shards" / ".train-00001.x1.tmp.tfrecord").write_bytes(b"torn")  # a killed writer's temporary
    (out / "shards" / "train-00099.tfrecord").write_bytes(b"")  # a unit of an earlier, larger input
    again = prepare(tree.root, out, SMALL)
    assert sorted((out / "shards").glob("*.tfrecord")) == shards
    assert (again.units_run, again.units_reused) == (1, len(shards) - 1)
    assert (out / "manifest.csv").read_text() == manifest
    changed = {p.name for p in shards if p.stat().st_mtime_ns != stamps[p.name]}
    assert changed == {"train-00001.tfrecord"}
    with pytest.raises(InputError, match="image_size 32 -> 48"):
        prepare(tree.root, out, PrepareOptions(image_size=48, images_per_shard=3))
    redo = prepare(tree.root, out, PrepareOptions(image_size=48, images_per_shard=3), overwrite=True)
    assert redo.units_reused == 0 and json.loads((out / "dataset.json").read_text())["image_size"] == 48


def test_workers_give_the_same_dataset(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "cbis", "kaggle-jpeg")
    prepare(tree.root, tmp_path / "one", SMALL, workers=1)
    prepare(tree.root, tmp_path / "two", SMALL, workers=2)
    assert (tmp_path / "one" / "manifest.csv").read_text() == (tmp_path / "two" / "manifest.csv").read_text()
    for shard in (tmp_path / "one" / "shards").glob("*.tfrecord"):
        assert shard.read_bytes() == (tmp_path / "two" / "shards" / shard.name).read_bytes()


def test_synthetic_tree_with_every_planted_defect(synthetic_cbis: Path, tmp_path: Path) -> None:
    truth = json.loads((synthetic_cbis / "synth_truth.json").read_text())
    result = prepare(synthetic_cbis, tmp_path / "ds", PrepareOptions(image_size=32, images_per_shard=4))
    assert result.skipped == 0 and result.images == len(truth["cases"])
    assert pd.read_csv(tmp_path / "ds" / "prepare_report.csv").empty  # no lesion outside the detected breast
    assert all(truth["quirks"][k] for k in ("swapped_crop_mask", "mask_size_mismatch", "monochrome1", "split_roi_series"))


def test_cli_prepare_and_inspect(tmp_path: Path) -> None:
    from mammoseg.cli import cli

    tree = build_tree(tmp_path / "cbis", "csv-paths")
    runner = CliRunner()
    result = runner.invoke(cli, ["-q", "prepare", str(tree.root), "--out", str(tmp_path / "ds"), "--image-size", "32",
                                 "--negative-tiles", "1", "--strict"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "prepared 11 images" in result.output
    png = tmp_path / "grid.png"
    result = runner.invoke(cli, ["inspect", str(tmp_path / "ds"), "--out", str(png), "--per-cell", "2"])
    assert result.exit_code == 0, result.output
    assert "negative" in result.output and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("layout", ["csv-paths", "kaggle-jpeg"])
def test_synthetic_layouts(tmp_path: Path, layout: str) -> None:
    from mammoseg.dataset.synthetic import generate

    generate(tmp_path / "cbis", cases=6, seed=2, image_size=160, layout=layout)
    result = prepare(tmp_path / "cbis", tmp_path / "ds", PrepareOptions(image_size=32, images_per_shard=4))
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["layout"] == layout
    assert result.skipped == 0 and result.images == 6


def test_tiny_dataset_feeds_the_pipeline(tiny_dataset: Path) -> None:
    from mammoseg.dataset.pipeline import make_dataset, read_manifest

    manifest = read_manifest(tiny_dataset)
    assert {"train", "val", "test"} <= set(manifest["split"])
    assert manifest.groupby("patient_id")["split"].nunique().max() == 1
    image, mask = next(iter(make_dataset(tiny_dataset, "val", batch_size=4)))
    assert tuple(image.shape[1:]) == (64, 64, 1) and set(np.unique(mask.numpy())) <= {0.0, 1.0}


def test_nothing_to_prepare_is_an_error_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    import sys

    from mammoseg.cli import main

    tree = build_tree(tmp_path / "cbis", "csv-paths", default_cases()[:2])
    for path in tree.image_files.values():
        path.unlink()
    out = tmp_path / "ds"
    with pytest.raises(InputError, match="nothing to prepare") as info:
        prepare(tree.root, out, SMALL)
    assert str(info.value).startswith(str(tree.root)) and "file not found" in str(info.value)
    assert not out.exists()
    monkeypatch.setattr(sys, "argv", ["mammoseg", "-q", "prepare", str(tree.root), "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and not out.exists()
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the per-case warnings
    assert error.startswith(f"error: {tree.root}: nothing to prepare")


def test_no_image_prepared_leaves_only_the_report(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "cbis", "csv-paths", default_cases()[:2])
    for path in tree.image_files.values():
        path.write_bytes(b"not a dicom at all" * 50)
    out = tmp_path / "ds"
    with pytest.raises(InputError, match="no image could be prepared") as info:
        prepare(tree.root, out, SMALL)
    assert info.value.path == str(tree.root)
    assert [p.name for p in out.iterdir()] == ["prepare_report.csv"]
    assert len(pd.read_csv(out / "prepare_report.csv")) == 2


def test_abnormality_outside_the_breast_is_a_warning(tmp_path: Path) -> None:
    """A mask that lies on the background (a wrong mask, or a wrong breast detection) is reported, and
    the image is still prepared; masks inside the breast are not."""
    cases = [Case("mass", "train", "P_00001", "LEFT", "CC"),
             Case("mass", "train", "P_00002", "LEFT", "CC", box=(190, 230, 130, 158))]  # fmt: skip
    tree = build_tree(tmp_path / "cbis", "csv-paths", cases)
    result = prepare(tree.root, tmp_path / "ds", SMALL, strict=True)
    assert result.images == 2 and result.skipped == 0 and result.warnings == 1
    report = pd.read_csv(tmp_path / "ds" / "prepare_report.csv", keep_default_na=False)
    assert list(report["source"]) == ["Mass-Training_P_00002_LEFT_CC"]
    reason = report["reason"].item()
    assert reason.startswith("warning:") and "outside the detected breast" in reason and "abnormality 1" in reason
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["images"]["warnings"] == 1


def test_cbis_keeps_its_manifest_columns_and_refuses_folds(tmp_path: Path) -> None:
    """The layouts' own manifest columns (annotation, fold, ...) never reach a CBIS-DDSM dataset,
    whose official split leaves nothing to fold."""
    from mammoseg.core.errors import MammosegError
    from mammoseg.dataset.shards import MANIFEST_COLUMNS

    tree = build_tree(tmp_path / "cbis", "csv-paths", default_cases()[:2])
    prepare(tree.root, tmp_path / "ds", SMALL)
    assert tuple(pd.read_csv(tmp_path / "ds" / "manifest.csv").columns) == MANIFEST_COLUMNS
    with pytest.raises(MammosegError, match="--folds is for datasets without an official split"):
        prepare(tree.root, tmp_path / "ds2", SMALL, folds=3)
    assert not (tmp_path / "ds2").exists()
