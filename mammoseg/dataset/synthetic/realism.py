"""How much a mammogram looks like a film scan: texture exponent, intensity histogram, breast share.

Pure numpy/OpenCV measures shared by `benchmarks/studies/realism.py` (synthetic against real DDSM scans)
and the tests. Every image goes through the same steps, so real and synthetic numbers compare:

1. resample to `MEASURE_ROWS` rows (area averaging), so frequencies are per the same share of the film;
2. the reference breast mask of `reference_breast_mask` (a fixed, simple rule, independent of the
   project's breast detector so the yardstick does not move when the detector changes);
3. windowing: values divided by the 99th percentile of the breast's pixels, clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MEASURE_ROWS = 1024
BORDER_TRIM = 0.02  # share of each edge ignored by the reference mask
THRESHOLD_SHARE = 0.10  # of the 99th percentile of the trimmed image
BAND_FILL = 0.95  # an edge row/column this full of bright pixels is a scanner band, not breast
BAND_MAX = 0.08  # bands are searched this far into the image
PATCH = 128  # side of the square patches whose spectra are averaged for beta
# Fit band, cycles per pixel at MEASURE_ROWS rows: wavelengths 6-32 px, ~1.3-7 mm on a 23 cm film. Lower
# frequencies suffer the Hann window's leakage (beta of exact power-law noise comes out ~0.1 high).
BETA_BAND = (1 / 32, 1 / 6)
HIST_BINS = 64


@dataclass
class Measures:
    """One image's realism measures: beta (nan without a patch inside the breast), windowed breast
    histogram (sums to 1), breast share of the image, and the number of patches beta was fit on."""

    beta: float
    histogram: np.ndarray
    breast_share: float
    patches: int


def resample(pixels: np.ndarray, rows: int = MEASURE_ROWS) -> np.ndarray:
    """Float32 image with `rows` rows (area averaging when shrinking), aspect kept."""
    img = pixels.astype(np.float32)
    h, w = img.shape
    if h == rows:
        return img
    cols = max(1, int(round(w * rows / h)))
    return cv2.resize(img, (cols, rows), interpolation=cv2.INTER_AREA if rows < h else cv2.INTER_LINEAR)


def edge_bands(bright: np.ndarray) -> np.ndarray:
    """Mask of the scanner bands: runs of rows/columns from each edge that are at least `BAND_FILL` bright."""
    h, w = bright.shape
    bands = np.zeros_like(bright)
    rows, cols = bright.mean(axis=1), bright.mean(axis=0)
    for fill, size, sl in ((rows, h, lambda a, b: (slice(a, b), slice(None))),
                           (cols, w, lambda a, b: (slice(None), slice(a, b)))):
        limit = max(1, int(BAND_MAX * size))
        n = 0
        while n < limit and fill[n] >= BAND_FILL:
            n += 1
        bands[sl(0, n)] = True
        n = 0
        while n < limit and fill[size - 1 - n] >= BAND_FILL:
            n += 1
        bands[sl(size - n, size)] = True
    return bands


def reference_breast_mask(img: np.ndarray) -> np.ndarray:
    """The benchmark's breast: outside a 2% border, above 10% of the 99th percentile, not in an edge
    band, the largest connected component with its holes filled."""
    h, w = img.shape
    ty, tx = int(round(BORDER_TRIM * h)), int(round(BORDER_TRIM * w))
    inner = np.zeros((h, w), bool)
    inner[ty:h - ty, tx:w - tx] = True
    threshold = THRESHOLD_SHARE * float(np.percentile(img[inner], 99))
    bright = img > threshold
    candidate = bright & inner & ~edge_bands(bright)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidate.astype(np.uint8), connectivity=8)
    if count < 2:
        return np.zeros((h, w), bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = (labels == largest).astype(np.uint8)
    # Holes: background pixels not connected to the image border.
    flood = np.pad(mask, 1)
    cv2.floodFill(flood, None, (0, 0), 2)
    return (flood[1:-1, 1:-1] != 2)


def window(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Values over the 99th percentile of the breast's pixels, clipped to [0, 1]."""
    top = float(np.percentile(img[mask], 99)) if mask.any() else float(img.max())
    return np.clip(img / max(top, 1e-6), 0, 1)


def power_spectrum_beta(img: np.ndarray, mask: np.ndarray, patch: int = PATCH,
                        band: tuple[float, float] = BETA_BAND) -> tuple[float, int]:
    """Exponent beta of P(f) ~ 1/f^beta, fit by least squares in log-log over `band` (cycles/px) on the
    radially averaged power spectrum averaged over every grid patch (Hann-windowed, mean removed)
    that lies wholly inside `mask`; (nan, 0) when no patch fits."""
    h, w = img.shape
    hann = np.outer(np.hanning(patch), np.hanning(patch)).astype(np.float32)
    total = np.zeros((patch, patch), np.float64)
    n = 0
    for y in range(0, h - patch + 1, patch // 2):
        for x in range(0, w - patch + 1, patch // 2):
            if not mask[y:y + patch, x:x + patch].all():
                continue
            p = img[y:y + patch, x:x + patch].astype(np.float32)
            p = (p - p.mean()) * hann
            total += np.abs(np.fft.fft2(p)) ** 2
            n += 1
    if n == 0:
        return float("nan"), 0
    f = np.fft.fftfreq(patch)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    ring = np.round(radius * patch).astype(int)
    counts = np.bincount(ring.ravel())
    power = np.bincount(ring.ravel(), total.ravel()) / np.maximum(counts, 1)
    freq = np.bincount(ring.ravel(), radius.ravel()) / np.maximum(counts, 1)  # each ring's mean frequency
    use = (freq >= band[0]) & (freq <= band[1]) & (counts > 0)
    slope = np.polyfit(np.log(freq[use]), np.log(power[use]), 1)[0]
    return float(-slope), n


def histogram(values: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """Normalised histogram of windowed values on [0, 1]."""
    counts = np.histogram(values, bins=bins, range=(0.0, 1.0))[0].astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def wasserstein1(p: np.ndarray, q: np.ndarray) -> float:
    """Earth mover's distance between two histograms on [0, 1] with equal bins (in windowed units)."""
    return float(np.abs(np.cumsum(p) - np.cumsum(q)).sum() / len(p))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 equal, 1 disjoint)."""
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return 0.5 * kl(p) + 0.5 * kl(q)


def measure(pixels: np.ndarray, rows: int = MEASURE_ROWS) -> Measures:
    """Realism measures of one MONOCHROME2 mammogram (any size; resampled to `rows` rows first).
    Patch and fit band scale with `rows`, so beta is fit on the same share of the film."""
    img = resample(pixels, rows)
    mask = reference_breast_mask(img)
    windowed = window(img, mask)
    s = rows / MEASURE_ROWS
    beta, n = power_spectrum_beta(windowed, mask, max(16, int(round(PATCH * s))), (BETA_BAND[0] / s, BETA_BAND[1] / s))
    return Measures(beta=beta, histogram=histogram(windowed[mask]), breast_share=float(mask.mean()), patches=n)
