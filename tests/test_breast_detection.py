"""Breast detection on the kinds of scans users have: film (bands, labels, faint skin), digital
MONOCHROME1/MONOCHROME2, 8-bit MIAS-like scans, and the synthetic mammograms."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cbis_factory import write_dicom
from mammoseg.dataset import preprocess
from mammoseg.dataset.dicom import read_pixels

H, W = 600, 380


def breast_region(h: int = H, w: int = W, *, chest_left: bool = True, height: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """A half-ellipse breast on the chest-wall edge, `height` x h high on either side of the middle
    (over 0.5: it runs off the top and bottom edges, as an MLO's does): (truth mask, tissue fraction
    0..1) where the tissue fades linearly to nothing over the outer 8% of the radius, as a film's
    skin line does."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx = 0 if chest_left else w - 1
    r = np.sqrt(((xx - cx) / (0.62 * w)) ** 2 + ((yy - 0.5 * h) / (height * h)) ** 2)
    truth = r < 1.0
    fade = np.clip((1.0 - r) / 0.08, 0.0, 1.0)
    texture = 0.75 + 0.25 * np.sin(yy / 9.0) * np.cos(xx / 13.0)
    return truth, fade * texture


def film_scan(*, chest_left: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[slice, slice]]]:
    """A 16-bit DDSM-like film scan: faint skin line, bright scanner bands along the top and bottom
    edges (with a blurred fringe), a bright label with text strokes, dust on a zero background. The
    breast reaches the bands at the chest wall, so that they would join it to all else on the edges."""
    rng = np.random.default_rng(seed)
    truth, tissue = breast_region(chest_left=chest_left, height=0.52)
    img = tissue * 30000.0
    img[:7], img[-9:] = 52000.0, 48000.0  # scanner bands over the full width
    img[7:10] = np.maximum(img[7:10], 20000.0)  # and their fringes
    img[-12:-9] = np.maximum(img[-12:-9], 15000.0)
    lx = W - 110 if chest_left else 30
    label = (slice(40, 70), slice(lx, lx + 80))
    img[label] = 0
    img[40:70, lx : lx + 80][:, ::6] = 60000.0  # vertical strokes of bright print
    img[40:44, lx : lx + 80] = img[66:70, lx : lx + 80] = 60000.0
    dust = rng.random(img.shape) < 0.002
    img[dust] = rng.uniform(500, 3000, int(dust.sum()))
    parts = {"label": label, "top band": (slice(0, 10), slice(None)), "bottom band": (slice(H - 12, H), slice(None))}
    return np.clip(img, 0, 65535).astype(np.uint16), truth, parts


def detected(pixels: np.ndarray) -> tuple[preprocess.Analysis, np.ndarray]:
    """The analysis and its breast mask at full resolution (nearest)."""
    analysis = preprocess.analyse(pixels)
    full = cv2.resize(analysis.breast, (pixels.shape[1], pixels.shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    return analysis, full


def assert_matches(found: np.ndarray, truth: np.ndarray) -> None:
    covered = (found & truth).sum() / truth.sum()
    extra = (found & ~truth).sum() / found.sum()
    assert covered >= 0.98 and extra <= 0.02, f"covers {covered:.1%} of the breast; {extra:.1%} of it is not breast"


@pytest.mark.parametrize("chest_left", [True, False])
def test_film_scan_bands_labels_and_faint_skin(chest_left: bool) -> None:
    pixels, truth, parts = film_scan(chest_left=chest_left)
    analysis, found = detected(pixels)
    assert analysis.flip == (not chest_left)
    # the faint periphery (3-10% of the tissue's brightness) is breast
    # (to within one analysis pixel: the detection works on a downsampled copy)
    rim = truth & (pixels < 3000) & (pixels > 1000)
    rim[:12], rim[-12:] = False, False
    near = cv2.dilate(found.astype(np.uint8), np.ones((2 * analysis.step + 1,) * 2, np.uint8)) > 0
    assert rim.sum() > 500 and near[rim].mean() > 0.99
    breast = truth | _band_rows_over_breast(truth)  # the breast runs on under the bands, to the edge
    for name, region in parts.items():  # but the bands and the label beside it are not breast
        assert found[region][~breast[region]].mean() < 0.02, name
    assert_matches(found, breast)
    # the crop box holds the breast, not the whole film width the bands span
    y0, y1, x0, x1 = analysis.box
    assert x1 - x0 < 0.75 * W


def _band_rows_over_breast(truth: np.ndarray) -> np.ndarray:
    """Band rows where the breast meets the band: the breast continues through them to the edge."""
    out = np.zeros_like(truth)
    out[:10] = truth[10]
    out[-12:] = truth[-13]
    return out


def test_breast_tissue_is_kept_in_the_network_input() -> None:
    """prepare_full_image blanks what is outside the breast (labels, bands), never the faint skin."""
    pixels, truth, parts = film_scan()
    image, geometry = preprocess.prepare_full_image(pixels, 128)
    inside = geometry.apply(truth.astype(np.uint8) * 255, binary=True) > 0
    inner = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert (image[inner] > 0).mean() > 0.99
    label = np.zeros(pixels.shape, np.uint8)
    label[parts["label"]] = 255
    assert not geometry.apply(label, binary=True).any() or image[geometry.apply(label, binary=True) > 0].max() == 0


def test_digital_monochrome1_and_monochrome2(tmp_path: Path) -> None:
    """Digital: 12-bit values, sharp skin line, a noisy background; MONOCHROME1 stores it inverted."""
    rng = np.random.default_rng(1)
    truth, tissue = breast_region(chest_left=False)
    img = 40 + rng.normal(0, 6, truth.shape) + truth * (1500 + 1500 * tissue)
    digital = np.clip(img, 0, 4095).astype(np.uint16)
    write_dicom(tmp_path / "m2.dcm", digital, "1.2.3")
    write_dicom(tmp_path / "m1.dcm", (65535 - digital).astype(np.uint16), "1.2.3", monochrome1=True)
    for name in ("m1.dcm", "m2.dcm"):
        pixels = read_pixels(tmp_path / name)
        analysis, found = detected(pixels)
        assert analysis.flip, name
        assert_matches(found, truth)


def test_8_bit_mias_like_scan() -> None:
    """MIAS: 8 bits, a grainy background tens of levels high, a white label and a bright tape strip."""
    rng = np.random.default_rng(2)
    truth, tissue = breast_region(512, 512)
    img = np.abs(rng.normal(12, 7, truth.shape)) + truth * (60 + 140 * tissue)
    img[470:500, 380:480] = 255  # label
    img[:, 500:506] = 200  # a tape strip along the far edge
    pixels = np.clip(img, 0, 255).astype(np.uint8)
    analysis, found = detected(pixels)
    assert not analysis.flip
    assert not found[470:500, 380:480].any() and not found[:, 500:].any()
    assert_matches(found, truth)


def test_synthetic_scans_labels_outside_and_lesions_inside(synthetic_cbis: Path) -> None:
    truth = json.loads((synthetic_cbis / "synth_truth.json").read_text())
    for case in truth["cases"]:
        pixels = read_pixels(synthetic_cbis / case["file"])
        analysis, found = detected(pixels)
        assert analysis.flip == (case["side"] == "RIGHT"), case["subject"]
        for y0, y1, x0, x1 in case["labels"]:
            assert found[y0:y1, x0:x1].mean() < 0.05, case["subject"]
        for abn in case["abnormalities"]:
            mask = read_pixels(synthetic_cbis / abn["mask_file"])
            if mask.shape == pixels.shape:
                assert preprocess.outside_breast(analysis, (0, 0, 0, 0), mask > 127) <= 0.01, case["subject"]


def test_image_cropped_to_the_breast() -> None:
    """Almost no background: the darkest pixels are tissue, and their spread must not be taken for
    background noise (the threshold would cut into the breast)."""
    rng = np.random.default_rng(3)
    tissue = cv2.GaussianBlur(rng.random((400, 300)).astype(np.float32), (0, 0), 3)
    tissue = (tissue - tissue.min()) / (tissue.max() - tissue.min())
    pixels = (9000 + 21000 * tissue).astype(np.uint16)
    pixels[:10, :6] = 0
    truth = pixels > 0
    _, found = detected(pixels)
    assert_matches(found, truth)


def _box_iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    rows = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    cols = max(0, min(a[3], b[3]) - max(a[2], b[2]))
    inter = rows * cols
    return inter / ((a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - inter)


def test_synthetic_film_scans_crop_box_matches_the_breast(synthetic_cbis: Path) -> None:
    """Scanner bands along the chest wall or the top edge and an unevenly fogged film base must not
    stretch the crop box over the film: it matches the breast's box from the truth (the detection
    may run on through a band over the breast, a few rows or columns more)."""
    truth = json.loads((synthetic_cbis / "synth_truth.json").read_text())
    ious = {}
    for case in truth["cases"]:
        pixels = read_pixels(synthetic_cbis / case["file"])
        analysis = preprocess.analyse(pixels, case["side"])
        geometry = preprocess.Geometry(*pixels.shape, flip=analysis.flip, box=analysis.box, size=1)
        ious[case["subject"]] = _box_iou(geometry.original_box(), case["breast_box"])
    assert min(ious.values()) >= 0.9 and np.median(list(ious.values())) >= 0.95, ious


def test_band_along_the_chest_wall_and_a_fogged_base() -> None:
    """A scanner band along the chest-wall edge (the breast fills most of that edge, so the band's
    lines look nearly as full as the tissue beside them) and a film base fogged from one side to the
    other by more than the faint periphery stands out: neither may join the breast."""
    rng = np.random.default_rng(4)
    truth, tissue = breast_region()
    fog = np.linspace(-900.0, 1400.0, W)[None, :]  # the darker half clipped to zero by the digitiser
    img = 300.0 + tissue * 30000.0 + fog + rng.normal(0, 250, truth.shape)
    img[:, :6] = 50000.0
    pixels = np.clip(img, 0, 65535).astype(np.uint16)
    analysis, found = detected(pixels)
    rows = np.nonzero(truth.any(axis=1))[0]
    y0, y1, x0, x1 = analysis.box
    assert abs(y0 - rows[0]) <= 4 and abs(y1 - rows[-1] - 1) <= 4 and x1 <= 0.62 * W + 4, analysis.box
    breast = truth.copy()
    breast[:, :6] = truth[:, 6:7]  # the breast runs on under the band, to the edge
    assert_matches(found, breast)
