"""`mammoseg predict`: any-size DICOM/PNG/JPEG in, probability maps at the original size out."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from mammo_fakes import fake_mammogram, save_untrained_run, write_dicom

from mammoseg.cli import cli
from mammoseg.core.errors import InputError
from mammoseg.inference.predict import predict

SIZE = 64


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return save_untrained_run(tmp_path_factory.mktemp("runs"), "dilated_resize", SIZE, examples=False)


def _check_outputs(paths: dict, shape: tuple[int, int]) -> None:
    prob = np.load(paths["prob_npy"])
    assert prob.dtype == np.float32 and prob.shape == shape
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    prob16 = cv2.imread(str(paths["prob_png"]), cv2.IMREAD_UNCHANGED)
    assert prob16.dtype == np.uint16 and prob16.shape == shape
    assert np.abs(prob16 / 65535.0 - prob).max() <= 1.0 / 65535.0
    mask = cv2.imread(str(paths["mask"]), cv2.IMREAD_UNCHANGED)
    assert mask.shape == shape and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask == 255, prob > 0.5)
    overlay = cv2.imread(str(paths["overlay"]))
    assert overlay is not None and overlay.ndim == 3
    summary = json.loads(paths["summary"].read_text())
    assert summary["original_shape"] == list(shape) and summary["image_size"] == SIZE


def test_predict_dicom_keeps_original_size(run_dir, tmp_path):
    dicom = write_dicom(tmp_path / "scan.dcm", fake_mammogram(300, 190))
    paths = predict(run_dir, dicom, tmp_path / "out")
    _check_outputs(paths, (300, 190))
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_predict_png_via_cli(run_dir, tmp_path):
    png = tmp_path / "scan.png"
    cv2.imwrite(str(png), fake_mammogram(257, 181, seed=3, bits=8))
    result = CliRunner().invoke(cli, ["predict", str(run_dir), str(png), "--out", str(tmp_path / "out"),
                                      "--checkpoint", "last"])
    assert result.exit_code == 0, result.output
    stem = tmp_path / "out" / "scan"
    _check_outputs({"prob_npy": stem.with_name("scan_prob.npy"), "prob_png": stem.with_name("scan_prob16.png"),
                    "mask": stem.with_name("scan_mask.png"), "overlay": stem.with_name("scan_overlay.png"),
                    "summary": stem.with_name("scan_summary.json")}, (257, 181))


def _bad_inputs(tmp_path):
    rng = np.random.default_rng(0)
    cases = {}
    cases["thin.png"] = (np.full((1, 300), 128, np.uint8), "too small")
    cases["rgb_noise.png"] = (rng.integers(0, 255, (200, 150, 3), dtype=np.uint8), "colour image")
    cases["grey_noise.png"] = (rng.integers(0, 255, (200, 150), dtype=np.uint8), "noise")
    cases["strip.png"] = (fake_mammogram(100, 600, bits=8), "aspect ratio")
    cases["blank.png"] = (np.zeros((200, 150), np.uint8), "blank")
    cases["mask.png"] = ((fake_mammogram(200, 150, bits=8) > 100).astype(np.uint8) * 255, "a mask")
    out = []
    for name, (array, message) in cases.items():
        cv2.imwrite(str(tmp_path / name), array)
        out.append((tmp_path / name, message))
    (tmp_path / "empty.dcm").write_bytes(b"")
    out.append((tmp_path / "empty.dcm", "empty"))
    (tmp_path / "text.dcm").write_text("not a dicom")
    out.append((tmp_path / "text.dcm", "not a readable DICOM"))
    (tmp_path / "junk.png").write_bytes(b"\x89PNG garbage")
    out.append((tmp_path / "junk.png", "not a readable image"))
    out.append((tmp_path / "missing.png", "file not found"))
    return out


def test_bad_inputs_give_one_line_errors_and_write_nothing(run_dir, tmp_path):
    for path, message in _bad_inputs(tmp_path):
        with pytest.raises(InputError) as info:
            predict(run_dir, path, tmp_path / "out")
        text = str(info.value)
        assert str(path) in text and message in text and "\n" not in text
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint_is_named(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    png = tmp_path / "scan.png"
    cv2.imwrite(str(png), fake_mammogram(200, 150, bits=8))
    with pytest.raises(InputError, match="best.keras: no such checkpoint"):
        predict(run, png, tmp_path / "out")


def test_predict_with_trained_run(tiny_run, tmp_path):
    png = tmp_path / "scan.jpg"
    cv2.imwrite(str(png), fake_mammogram(240, 170, seed=5, bits=8))
    paths = predict(tiny_run, png, tmp_path / "out")
    _check_outputs(paths, (240, 170))


def test_candidates_at_the_runs_operating_point_for_several_images(run_dir, tmp_path):
    """The summary counts the margin map's peaks at the threshold `evaluate` chose on validation; the model
    loads once for every image; two images of one name are refused before anything is written."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    scans = []
    for k in range(2):
        scans.append(tmp_path / f"scan{k}.png")
        cv2.imwrite(str(scans[-1]), fake_mammogram(200, 150, seed=k, bits=8))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", str(run), *map(str, scans), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "scan0_summary.json").read_text())["operating_point"] is None  # not evaluated yet

    metrics = run / "eval" / "test" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    for threshold, expect_all in ((-1e9, True), (1e9, False)):
        metrics.write_text(json.dumps({"detection": {"operating_point": {"threshold": threshold,
                                                                          "target_sensitivity": 0.8}}}))
        result = CliRunner().invoke(cli, ["predict", str(run), *map(str, scans), "--out", str(out)])
        assert result.exit_code == 0, result.output
        for k in range(2):
            point = json.loads((out / f"scan{k}_summary.json").read_text())["operating_point"]
            assert point["threshold"] == threshold and len(point["scores"]) == point["candidates"]
            assert (point["candidates"] > 0) == expect_all and len(point["network_positions"]) == point["candidates"]
            assert all(0 <= v < SIZE for rc in point["network_positions"] for v in rc)

    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / "scan0.png"
    twin.write_bytes(scans[0].read_bytes())
    result = CliRunner().invoke(cli, ["predict", str(run), str(scans[0]), str(twin), "--out", str(tmp_path / "o2")])
    assert isinstance(result.exception, InputError) and "same name" in str(result.exception)
    assert not (tmp_path / "o2").exists()
