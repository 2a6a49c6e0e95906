"""Checkerboard artifacts, measured on kernels and on maps (Odena, Dumoulin & Olah, Distill 2016).

A transposed convolution with stride s writes its output on s x s interleaved sub-grids
("phases"); each phase receives a different subset of the kernel taps. Artifacts appear when the
phases respond differently to the same input. Three measures, all cheap and all exact on
constructed inputs:

- kernel level, from weights alone: per output channel o and phase r, G_r(o) = sum of the taps
  landing on r, summed over input channels only; score = sqrt(sum_o var_r G_r(o) / sum_o mean_r
  G_r(o)^2), in [0, 1]: the share of the layer's response to a constant input that is
  checkerboard, 0 exactly when no output channel can show one. Stride 1 means one phase: 0.
  Nearest-neighbour resize followed by a convolution is a transposed convolution whose every phase
  sums all taps once: 0 (`resize_conv_kernel`). Beside it, `kernel_overlap` states the structural
  fact: taps per phase, uneven when k mod s != 0.
- map level, phase means: split a map into its s x s interleaved sub-grids; score = std of their
  means / std of the map (0 for a constant map).
- map level, spectral: the fraction of the map's AC energy on the aliasing frequencies k/s cycles
  per pixel (for s=2 the bins (pi,0), (0,pi), (pi,pi)). With the map cropped to a multiple of s this
  equals the phase-mean score squared (Parseval on the s x s phase grid), so the two agree by
  construction; `aliasing_peak_db` is the independent variant: how far the aliasing bins stand
  above their spectral neighbours.

Maps whose sides are not multiples of s are cropped at the bottom/right to the largest multiple,
so every phase has the same number of pixels. White noise of N x N pixels sits at an aliasing
fraction of (s^2 - 1) / (N^2 - 1) and a phase-mean score of about its square root.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _strides(stride: int | tuple[int, int]) -> tuple[int, int]:
    sy, sx = (stride, stride) if np.isscalar(stride) else tuple(stride)
    if int(sy) < 1 or int(sx) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return int(sy), int(sx)


def _transposed_kernel(kernel: np.ndarray) -> np.ndarray:
    """A kernel as [kH, kW, out, in] float64: a 2-D kernel is one output and one input channel."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim == 2:
        return k[:, :, None, None]
    if k.ndim != 4:
        raise ValueError(f"expected a [kH, kW] or Keras Conv2DTranspose [kH, kW, out, in] kernel, got shape {k.shape}")
    return k


def kernel_phase_sums(kernel: np.ndarray, stride: int | tuple[int, int]) -> np.ndarray:
    """G[a, b, o] = sum of the taps kernel[a + m*sy, b + n*sx, o, i] over m, n and the input channels i.

    `kernel` is Keras' Conv2DTranspose layout [kH, kW, out, in] (or a single-channel [kH, kW]).
    A transposed convolution writes tap (y, x) of input pixel (p, q) to output pixel
    (p*sy + y - pad, q*sx + x - pad), so the taps with y = a (mod sy), x = b (mod sx) all land on one
    output phase; 'same' padding only relabels which phase that is. A constant input c on every
    input channel therefore gives output channel o the value c * G[a, b, o] on that phase.
    """
    k = _transposed_kernel(kernel).sum(axis=3)
    sy, sx = _strides(stride)
    return np.stack([np.stack([k[a::sy, b::sx].sum(axis=(0, 1)) for b in range(sx)]) for a in range(sy)])


def kernel_checkerboard_score(kernel: np.ndarray, stride: int | tuple[int, int]) -> float:
    """sqrt(sum_o var_r G_r(o) / sum_o mean_r G_r(o)^2) over the stride's phases r (docs/design.md §4, kernel score).

    The denominator is the mean of the squares (E[G^2] = var + mean^2), not the squared mean, so the
    score lies in [0, 1]: the share of a constant input's response (its RMS over phases and output
    channels) that is checkerboard. 0 exactly when no output channel can show one (stride 1, an
    even-overlap kernel with equal phase sums, resize + conv, an all-zero kernel; a ratio below 1e-20
    is rounding and counts as 0); 1 when every output channel's response has no constant part.
    Channels are never summed against each other, so opposite imbalances cannot cancel.
    Zero-mean random kernels score about sqrt(3/4) at stride 2 whatever their size: their phase
    sums are independent, so any such layer can show a checkerboard at initialisation.
    """
    g = kernel_phase_sums(kernel, stride)
    g = g.reshape(-1, g.shape[-1])  # [phases, out]
    power = float((g**2).mean(axis=0).sum())
    spread = float(g.var(axis=0).sum())
    if power <= 0.0 or spread <= 1e-20 * power:
        return 0.0
    return float(np.sqrt(min(1.0, spread / power)))


def kernel_overlap(kernel_size: int | tuple[int, int], stride: int | tuple[int, int]) -> dict[str, Any]:
    """The structural fact that needs no weights: taps per output phase and whether overlap is uneven.

    Uneven overlap (k mod s != 0 on some axis; Odena et al.) gives phases different numbers of taps,
    e.g. 4, 2, 2, 1 for 3x3 stride 2: a constant input then produces a checkerboard unless the
    weights happen to balance it.
    """
    ky, kx = (kernel_size, kernel_size) if np.isscalar(kernel_size) else tuple(kernel_size)
    sy, sx = _strides(stride)
    taps = kernel_phase_sums(np.ones((int(ky), int(kx))), (sy, sx))[..., 0].astype(int)
    return {"taps_per_phase": taps.tolist(), "uneven": bool(int(ky) % sy or int(kx) % sx)}


def resize_conv_kernel(conv_kernel: np.ndarray, factor: int) -> np.ndarray:
    """The transposed-convolution kernel equivalent to nearest resize by `factor` then a convolution.

    Resize-then-correlate with w equals a stride-`factor` transposed convolution whose kernel is
    w flipped and convolved with a factor x factor box: shape [k+factor-1, k+factor-1, ...]. A
    Conv2D kernel [k, k, in, out] comes back in the Conv2DTranspose layout [.., .., out, in]. Each
    phase of it sums every tap of w exactly once, hence a kernel score of 0.
    """
    w = np.asarray(conv_kernel, dtype=np.float64)[::-1, ::-1]
    if w.ndim == 4:
        w = w.transpose(0, 1, 3, 2)
    kh, kw = w.shape[:2]
    h = np.zeros((kh + factor - 1, kw + factor - 1) + w.shape[2:])
    for a in range(factor):
        for b in range(factor):
            h[a : a + kh, b : b + kw] += w
    return h


def subpixel_transposed_kernel(conv_kernel: np.ndarray, factor: int) -> np.ndarray:
    """The transposed-convolution kernel a sub-pixel convolution equals (Shi et al. 2016; Aitken et al. 2017).

    A Conv2D kernel w [k, k, in, factor²·C] followed by depth-to-space (channel (i·factor + j)·C + c to
    phase (i, j)) writes input pixel q's response through tap (u, v) of channel block (i, j) onto output
    pixel factor·(q - u) + i (up to the padding's shift): a stride-`factor` transposed convolution whose
    kernel [factor·k, factor·k, C, in] holds w flipped, with tap (factor·(k-1-u) + i, factor·(k-1-v) + j)
    = w[u, v, :, (i·factor + j)·C + c]. Phase (i, j) thus sums block (i, j)'s taps: ICNR, which copies one
    block into all, gives equal phase sums and a kernel score of exactly 0.
    """
    w = np.asarray(conv_kernel, dtype=np.float64)
    if w.ndim != 4 or w.shape[3] % (factor * factor):
        raise ValueError(f"expected a Conv2D kernel [k, k, in, {factor}²·C], got shape {w.shape}")
    kh, kw, c_in, depth = w.shape
    c = depth // (factor * factor)
    blocks = w[::-1, ::-1].reshape(kh, kw, c_in, factor, factor, c)  # [u, v, in, i, j, c], u and v flipped
    return blocks.transpose(0, 3, 1, 4, 5, 2).reshape(kh * factor, kw * factor, c, c_in)


def _as_map(map2d: np.ndarray, stride: tuple[int, int] = (1, 1)) -> np.ndarray:
    m = np.asarray(map2d, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {m.shape}")
    sy, sx = stride
    h, w = (m.shape[0] // sy) * sy, (m.shape[1] // sx) * sx
    if h == 0 or w == 0:
        raise ValueError(f"map of shape {m.shape} is smaller than the stride {stride}")
    return m[:h, :w]


def crop_border(map2d: np.ndarray, border: int) -> np.ndarray:
    """Drop `border` pixels on every side: where zero padding, not the upsampling, shapes the output."""
    if border <= 0:
        return np.asarray(map2d)
    m = np.asarray(map2d)
    if 2 * border >= min(m.shape[:2]):
        raise ValueError(f"border {border} leaves nothing of a {m.shape[0]}x{m.shape[1]} map")
    return m[border:-border, border:-border]


def phase_means(map2d: np.ndarray, stride: int | tuple[int, int] = 2) -> np.ndarray:
    """Mean of each of the sy x sx interleaved sub-grids (phases) of a map."""
    sy, sx = _strides(stride)
    m = _as_map(map2d, (sy, sx))
    return m.reshape(m.shape[0] // sy, sy, m.shape[1] // sx, sx).mean(axis=(0, 2))


def phase_mean_score(map2d: np.ndarray, stride: int | tuple[int, int] = 2) -> float:
    """std of the phase means / std of the map: 1 for a pure checkerboard, 0 for a constant or smooth map."""
    s = _strides(stride)
    m = _as_map(map2d, s)
    spread = float(m.std())
    if spread <= 1e-12 * max(1.0, float(np.abs(m).max())):
        return 0.0
    return float(phase_means(m, s).std()) / spread


def _aliasing_mask(shape: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """True on the DFT bins (p*H/sy, q*W/sx), DC excluded."""
    h, w = shape
    sy, sx = stride
    mask = np.zeros(shape, dtype=bool)
    mask[np.ix_(np.arange(sy) * (h // sy), np.arange(sx) * (w // sx))] = True
    mask[0, 0] = False
    return mask


def aliasing_energy_fraction(map2d: np.ndarray, stride: int | tuple[int, int] = 2) -> float:
    """Fraction of the map's AC spectral energy at the aliasing frequencies k/s cycles/pixel (0 for a constant map)."""
    s = _strides(stride)
    m = _as_map(map2d, s)
    power = np.abs(np.fft.fft2(m - m.mean())) ** 2
    total = float(power.sum())
    if total <= 1e-24 * max(1.0, float(np.abs(m).max()) ** 2) * m.size**2:
        return 0.0
    return float(power[_aliasing_mask(m.shape, s)].sum()) / total


def aliasing_peak_db(map2d: np.ndarray, stride: int | tuple[int, int] = 2) -> float:
    """Mean power at the aliasing bins over the mean power of their 8 spectral neighbours, in dB.

    About 0 dB for white noise, large for a checkerboard on a smooth map, 0.0 for a constant map,
    NaN for a map too small to have non-aliasing neighbours (s x s pixels).
    """
    s = _strides(stride)
    m = _as_map(map2d, s)
    power = np.abs(np.fft.fft2(m - m.mean())) ** 2
    alias = _aliasing_mask(m.shape, s)
    if not power.any() or not alias.any():
        return 0.0
    neighbours = np.zeros_like(alias)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                neighbours |= np.roll(alias, (dy, dx), axis=(0, 1))
    neighbours &= ~alias
    neighbours[0, 0] = False
    if not neighbours.any():
        return float("nan")
    peak, floor = float(power[alias].mean()), float(power[neighbours].mean())
    if floor <= 0.0:
        return float("inf") if peak > 0.0 else 0.0
    if peak <= 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(peak / floor))


def radial_power_spectrum(map2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum for plots: (radial frequency in cycles/pixel, mean power).

    Power is |DFT|^2 / (H*W) of the mean-removed map; bins are 1/min(H, W) wide and reach the
    corner sqrt(2)/2, where the (pi, pi) checkerboard lies (a stride-2 pattern shows at 0.5 and
    0.71, stride s at k/s along the axes).
    """
    m = _as_map(map2d)
    h, w = m.shape
    power = np.abs(np.fft.fft2(m - m.mean())) ** 2 / (h * w)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    n = min(h, w)
    bins = np.rint(radius * n).astype(int)
    sums = np.bincount(bins.ravel(), weights=power.ravel())
    counts = np.bincount(bins.ravel())
    keep = counts > 0
    return np.arange(sums.size)[keep] / n, sums[keep] / counts[keep]


def map_scores(map2d: np.ndarray, stride: int | tuple[int, int] = 2, border: int = 0) -> dict[str, float]:
    """{"phase_mean", "aliasing_fraction", "peak_db"} of a 2-D map, after dropping `border` pixels per side."""
    m = crop_border(map2d, border)
    return {
        "phase_mean": phase_mean_score(m, stride),
        "aliasing_fraction": aliasing_energy_fraction(m, stride),
        "peak_db": aliasing_peak_db(m, stride),
    }


def block_mean(map2d: np.ndarray, factor: int) -> np.ndarray:
    """Average over factor x factor blocks (bottom/right remainder dropped)."""
    m = _as_map(map2d, (factor, factor))
    return m.reshape(m.shape[0] // factor, factor, m.shape[1] // factor, factor).mean(axis=(1, 3))


def period_scores(map2d: np.ndarray, periods: tuple[int, ...] = (2, 4, 8, 16, 32, 64),
                  border: int = 0) -> dict[int, float]:
    """Checkerboard at several scales: phase-mean score (stride 2) of the map averaged over period/2 blocks.

    A stride-2 transposed layer acting at 1/f of the output resolution leaves a checkerboard of
    period 2f in the output, in f x f cells aligned with the image origin (every up-sampling step
    tiles from pixel 0). Block averaging over those cells removes the finer patterns (a period-2
    pattern averages to a constant over any even block), so each period is scored on its own. The
    blocks must be aligned with the cells, so `border` (pixels dropped per side, as `crop_border`)
    is rounded up to a multiple of f for each period: a pure period-2f pattern scores 1 whatever the
    border and the map size. Periods the map is too small for (fewer than 8 blocks per side after
    the border) are left out.
    """
    m = _as_map(map2d)
    out = {}
    for p in periods:
        f = max(1, p // 2)
        start = -(-max(0, border) // f) * f
        blocks = [(n - max(0, border) - start) // f for n in m.shape]
        if min(blocks) >= 8:
            window = m[start : start + blocks[0] * f, start : start + blocks[1] * f]
            out[p] = phase_mean_score(block_mean(window, f), 2)
    return out


def activation_map(activation: np.ndarray, reduce: str = "mean") -> np.ndarray:
    """A [H, W, C] (or [1, H, W, C]) activation reduced over channels to one 2-D map ("mean" or "abs_mean")."""
    a = np.asarray(activation, dtype=np.float64)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        return a
    if a.ndim != 3:
        raise ValueError(f"expected an [H, W, C] activation, got shape {a.shape}")
    if reduce == "mean":
        return a.mean(axis=-1)
    if reduce == "abs_mean":
        return np.abs(a).mean(axis=-1)
    raise ValueError(f"reduce must be 'mean' or 'abs_mean', got {reduce!r}")


def activation_scores(activation: np.ndarray, stride: int | tuple[int, int] = 2, border: int = 0) -> dict[str, float]:
    """Map scores of the channel-mean map, plus the median per-channel phase-mean score.

    The channel mean can hide artifacts whose phase patterns differ between channels; the
    per-channel median (over channels that are not constant) does not.
    """
    a = np.asarray(activation, dtype=np.float64)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    scores = map_scores(activation_map(a), stride, border)
    if a.ndim == 3:
        a = crop_border(a, border)
        per_channel = [phase_mean_score(a[..., c], stride) for c in range(a.shape[-1]) if a[..., c].std() > 0]
        scores["phase_mean_channel_median"] = float(np.median(per_channel)) if per_channel else 0.0
    return scores
