"""Preprocessing: orientation, breast crop, windowing, geometry round trip, masks, crop-vs-mask by pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cbis_factory import breast_image, write_dicom
from mammoseg.dataset import preprocess, resize
from mammoseg.dataset.dicom import read_pixels


def smooth_breast(h: int, w: int, chest_left: bool) -> np.ndarray:
    """A 16-bit breast with slowly varying tissue (so that resizing loses little), and a film label."""
    yy, xx = np.mgrid[0:h, 0:w]
    cx = 0 if chest_left else w - 1
    inside = ((xx - cx) / (0.75 * w)) ** 2 + ((yy - h / 2) / (0.42 * h)) ** 2 < 1
    img = np.full((h, w), 500.0)
    img[inside] = (20000 + 6000 * np.sin(yy / 40.0) + 4000 * np.cos(xx / 30.0))[inside]
    lx = w - 30 if chest_left else 5
    img[5:25, lx : lx + 22] = 64000
    return img.astype(np.uint16)


@pytest.mark.parametrize("chest_left", [True, False])
def test_orientation_crop_and_geometry_round_trip(chest_left: bool) -> None:
    pixels = smooth_breast(600, 400, chest_left)
    image, geometry = preprocess.prepare_full_image(pixels, 128)
    assert image.shape == (128, 128) and image.dtype == np.uint8
    assert geometry.flip == (not chest_left)
    # the chest wall ends up on the left: the left columns hold tissue, the padding/background the right
    assert image[40:90, :8].mean() > 60 and image[:, -8:].mean() < 5
    # the film label, outside the breast, is cropped away
    y0, y1, x0, x1 = geometry.original_box()
    assert not (pixels[y0:y1, x0:x1] == 64000).any()
    # restore(apply(x)) ~ x inside the breast
    values = pixels.astype(np.float32)
    restored = geometry.restore(geometry.apply(values))
    assert restored.shape == pixels.shape
    inside = pixels > 10000
    inside[:, :4] = inside[:, -4:] = False
    error = np.abs(restored - values)[inside].mean() / values[inside].mean()
    assert error < 0.02
    # masks travel with the same geometry
    mask = np.zeros(pixels.shape, np.uint8)
    mask[250:330, 60:140] = 255 if chest_left else 0
    if not chest_left:
        mask[250:330, 260:340] = 255
    small = geometry.apply(mask, binary=True)
    assert set(np.unique(small)) <= {0, 255}
    back = geometry.restore(small) > 0
    iou = (back & (mask > 0)).sum() / (back | (mask > 0)).sum()
    assert iou > 0.9


def test_geometry_restores_probabilities_and_serialises() -> None:
    pixels = smooth_breast(300, 200, True)
    _, geometry = preprocess.prepare_full_image(pixels, 64)
    prob = np.full((64, 64), 0.25, np.float32)
    restored = geometry.restore(prob)
    assert restored.dtype == np.float32 and restored.shape == (300, 200)
    assert preprocess.Geometry.from_dict(geometry.to_dict()) == geometry
    with pytest.raises(ValueError, match="is not 64x64"):
        geometry.restore(np.zeros((32, 32)))


def test_mask_resize_is_area_then_threshold() -> None:
    geometry = preprocess.Geometry(height=400, width=400, flip=False, box=(0, 400, 0, 400), size=100)
    mask = np.zeros((400, 400), np.uint8)
    mask[0:2, 0:4] = 1  # half of one output pixel (4x4): kept
    mask[100:101, 100:104] = 1  # a quarter: dropped
    small = geometry.apply(mask, binary=True)
    assert small[0, 0] == 255 and small[25, 25] == 0 and small.sum() == 255


def test_16_bit_windowing_uses_the_breast_not_the_labels() -> None:
    pixels = smooth_breast(400, 300, True)
    analysis = preprocess.analyse(pixels)
    lo, hi = analysis.window
    assert 9000 < lo < 20000 < hi < 31000  # not pulled to the 64000 label nor the 500 background


def test_crop_and_mask_told_apart_by_pixels() -> None:
    rng = np.random.default_rng(0)
    image_shape = (300, 200)
    mask = np.zeros(image_shape, np.uint8)
    mask[100:150, 50:90] = 255
    crop16 = breast_image(60, 50, rng)
    crop8 = (crop16 >> 8).astype(np.uint8)
    assert preprocess.classify_roi(mask, image_shape) == "mask"
    assert preprocess.classify_roi(crop16, image_shape) == "crop"
    assert preprocess.classify_roi(crop8, image_shape) == "crop"
    jpeg_like = np.clip(mask.astype(int) + rng.integers(-8, 9, image_shape), 0, 255).astype(np.uint8)
    assert preprocess.classify_roi(jpeg_like, image_shape) == "mask"
    assert set(np.unique(preprocess.fit_mask(jpeg_like, image_shape))) == {0, 255}
    # a few pixels off: resized onto the image; far off: refused
    near = preprocess.fit_mask(mask[:-3, :-2], image_shape)
    assert near.shape == image_shape
    with pytest.raises(ValueError, match="differs from image size"):
        preprocess.fit_mask(mask[:-40], image_shape)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    write_dicom(tmp_path / "m1.dcm", pixels, "1.2.3", monochrome1=True)
    write_dicom(tmp_path / "m2.dcm", pixels, "1.2.3")
    inverted, plain = read_pixels(tmp_path / "m1.dcm"), read_pixels(tmp_path / "m2.dcm")
    assert np.array_equal(plain, pixels)
    assert np.array_equal(inverted, 65535 - pixels)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_large_pixel_data_is_mapped_and_checked(tmp_path: Path, dtype: type) -> None:
    import pydicom

    from mammoseg.core.errors import InputError

    pixels = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, (300, 250)).astype(dtype)  # > 64 kB
    write_dicom(tmp_path / "big.dcm", pixels, "1.2.3")
    read = read_pixels(tmp_path / "big.dcm")
    assert read.dtype == dtype and np.array_equal(read, pixels)
    assert np.array_equal(read, pydicom.dcmread(tmp_path / "big.dcm").pixel_array)
    data = (tmp_path / "big.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-1000])
    with pytest.raises(InputError, match="truncated pixel data"):
        read_pixels(tmp_path / "cut.dcm")


def _reference_mask_resize(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    binary = np.where(mask > 0, 255, 0).astype(np.uint8)
    return np.where(resize.area_resize(binary, rows, cols, binary=True) >= 128, 255, 0).astype(np.uint8)


def test_mask_resize_reads_only_the_foreground_and_matches_the_full_resize() -> None:
    import cv2

    rng = np.random.default_rng(3)
    for trial in range(40):
        h, w = (int(v) for v in rng.integers(30, 400, 2))
        if trial % 2:
            rows, cols = (int(v) for v in rng.integers(8, 120, 2))
        else:  # reductions by less than 2: no block average, only the sparse fractional resize
            rows, cols = int(rng.integers(h // 2 + 1, h + 1)), int(rng.integers(w // 2 + 1, w + 1))
        mask = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(0, 3))):
            cv2.circle(mask, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(1, 30)), int(rng.integers(1, 256)), -1)
        expected = _reference_mask_resize(mask, rows, cols)
        assert np.array_equal(resize.mask_resize(mask, rows, cols), expected)
        box = resize.foreground_box(mask)
        if box is None:
            assert not mask.any()
            continue
        y0, y1, x0, x1 = box
        assert mask[y0:y1, x0:x1].sum() == mask.sum() and mask[y0, x0:x1].any() and mask[y1 - 1, x0:x1].any()
        within = (y0 - 5, y1 + 3, x0 - 2, x1 + 7)  # any box that holds every non-zero pixel will do
        assert np.array_equal(resize.mask_resize(mask, rows, cols, within=within), expected)


def test_breast_fraction_counts_the_low_resolution_pixels_a_tile_touches() -> None:
    pixels = smooth_breast(400, 300, True)
    analysis = preprocess.analyse(pixels)
    s = analysis.step
    rng = np.random.default_rng(5)
    for _ in range(50):
        top, left, tile = int(rng.integers(0, 420)), int(rng.integers(0, 320)), int(rng.integers(1, 200))
        part = analysis.breast[top // s : -(-(top + tile) // s), left // s : -(-(left + tile) // s)]
        assert preprocess.breast_fraction(analysis, (top, left), tile) == (float(part.mean()) if part.size else 0.0)
