"""Breast detection on a low-resolution mammogram: every pixel above the background, down to the
faint skin line, without the scanner's border bands and labels (`find_breast`), on film and on
digital mammograms (a padded background that displays white, line artefacts, a paddle's edge).

Only what lies outside the breast is blanked in network inputs, and the breast's bounding box is the
crop (`mammoseg.dataset.preprocess.analyse`): the detection errs towards keeping faint tissue.
"""

from __future__ import annotations

import numpy as np

BREAST_LEVEL = 0.01
"""The breast is what lies above the background by more than this fraction of the range from the
background (1st percentile) to bright tissue (99th percentile), and by more than `NOISE_SIGMAS`
times the background's noise. Film scans span three decades of optical density and their skin
line fades into the background: a data-driven split such as Otsu's separates dense from fatty
tissue instead, and a threshold at a tenth of the range still loses the skin and the nipple."""

NOISE_SIGMAS = 6.0
"""Background noise (robust sigma of the dark pixels), in multiples, that the breast must exceed:
scans such as MIAS have a grainy background tens of levels high."""

DARK_LEVEL = 0.1
"""Pixels below this fraction of the range are the dark ones whose noise is measured, and the
threshold never rises above it: where the dark pixels are faint tissue rather than background
(an image cropped to the breast), their spread is anatomy, not noise."""

BACKGROUND_BLOCK = 1 / 16
"""The film base's level is measured in blocks this fraction of the long side wide (the lower
quartile of their dark pixels, `DARK_LEVEL`, in blocks at least half dark: the block's 1/8 quantile),
and a plane fitted to
those levels, blocks of faint tissue left out as outliers, is subtracted where it rises above the
darkest level. A film's base can be fogged unevenly, by more than its faint fatty periphery stands
out from it: one threshold then cuts the periphery where the base is dark or takes in the base where
it is light."""

BAND_FILL = 0.9
"""An image edge whose outermost lines are at least this full is a candidate scanner border band.
Fullness is measured only where the image is empty just beyond the deepest band (`BAND_DEPTH`
twice over): a band covers those positions too, breast tissue reaching the edge does not. So a band
along the chest wall, which the breast fills over most of its length, is still told apart."""

BAND_DEPTH = 0.025
"""A border band's full lines are at most this fraction of the image's extent deep, and its fringe
(the blurred inner side) at most as deep again as they are (2 lines at least): a deeper or slowly
fading strip along an edge is anatomy (the grey soft tissue beside a film's chest wall)."""

BAND_INSIDE = 0.5
"""...and only when the lines just beyond it are less full than this (a chest wall stays full)."""

BAND_OPEN = 0.05
"""Below this share of an edge's length left empty beyond the band depth, the image holds tissue
along the whole edge, and a band there cannot be told from it (nor matters for the crop)."""

PADDING_SHARE = 0.1
"""A digital mammogram's background can be one constant value outside the breast, the padding its
writer puts there; at the top of the range it displays white. Where the pixels at the image's
maximum that are connected to its edge cover more than this share of the image, they are that
background and are recoloured to the image's minimum (a film's saturated label or band is smaller)."""

LINE_WIDTH = 0.006
"""Thin straight lines over the background, a digital detector's line artefacts (columns with an
offset) and a compression paddle's edge, are above the background but not breast, and would join
what they touch into it. Above-background runs across a column (row) no wider than this fraction of
the long side (4 pixels at least) are a line's where they fill more than `LINE_LENGTH` of that
column's (row's) length, and are cleared: the breast crosses a line in runs as wide as itself."""

LINE_LENGTH = 0.2


def find_breast(low: np.ndarray) -> np.ndarray:
    """The breast (uint8 0/1) in a low-resolution mammogram whose tissue is bright (MONOCHROME2,
    as `read_pixels` returns it, 8 or 16 bits): above-background pixels (a white padded background
    taken for background), without the scanner's border bands and thin lines across the background,
    the largest connected region (labels and markers are separate), holes filled.

    Border bands are thin, nearly full strips along an edge; they join everything that touches
    that edge into one region. They are cleared before the regions are told apart, and the breast
    is then continued through them to the image edge where it met them (a pectoral muscle under a
    top band is breast, the band beside background is not).
    """
    import cv2

    low = cv2.medianBlur(np.ascontiguousarray(low), 3) if low.dtype in (np.uint8, np.uint16) else low
    low = _flatten_background(_clear_padding(low))
    above = (low > _breast_threshold(low)).astype(np.uint8)
    bands = {edge: _band_depth(_edge_view(above, edge)) for edge in ("top", "bottom", "left", "right")}
    core = above.copy()
    for edge, depth in bands.items():
        _edge_view(core, edge)[:depth] = 0
    count, labels, stats, _ = cv2.connectedComponentsWithStats(_clear_lines(core), connectivity=8)
    if count <= 1:
        return np.ones_like(above)
    breast = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    for edge, depth in bands.items():
        if depth:
            view, inside = _edge_view(breast, edge), _edge_view(breast, edge)[depth]
            view[:depth] = _edge_view(above, edge)[:depth] & inside
    return _fill_holes(breast)


def _clear_padding(low: np.ndarray) -> np.ndarray:
    """`low` with a white padded background recoloured to its minimum (see `PADDING_SHARE`)."""
    import cv2

    top = (low == low.max()).astype(np.uint8)
    if top.mean() <= PADDING_SHARE:
        return low
    _, labels = cv2.connectedComponents(top, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    padding = np.isin(labels, edge[edge > 0])
    if padding.mean() <= PADDING_SHARE:
        return low
    out = low.copy()
    out[padding] = low.min()
    return out


def _clear_lines(above: np.ndarray) -> np.ndarray:
    """`above` (uint8 0/1) without the thin lines across the background (see `LINE_WIDTH`)."""
    import cv2

    half = max(2, round(LINE_WIDTH * max(above.shape) / 2))  # an odd opening, so that runs keep their ends
    for axis in (0, 1):  # vertical lines (runs across rows), then horizontal ones
        kernel = np.ones((1, 2 * half + 1) if axis == 0 else (2 * half + 1, 1), np.uint8)
        thin = above & (1 - cv2.morphologyEx(above, cv2.MORPH_OPEN, kernel))
        lines = thin.sum(axis=axis) > LINE_LENGTH * above.shape[axis]
        if lines.any():
            view = above if axis == 0 else above.T
            view[:, lines] &= 1 - (thin if axis == 0 else thin.T)[:, lines]
    return above


def _breast_threshold(low: np.ndarray) -> float:
    """The level above which a pixel of `low` (uint8 or uint16) is breast (see `BREAST_LEVEL`,
    `NOISE_SIGMAS`). All from one histogram: medians by sorting cost more than the detection."""
    counts = np.bincount(low.ravel())
    floor, bright = histogram_ranks(counts, (1.0, 99.0))
    span = max(bright - floor, 1.0)
    dark = counts[: int(np.ceil(floor + DARK_LEVEL * span))]
    (centre,) = histogram_ranks(dark, (50.0,))
    deviations = np.bincount(np.abs(np.arange(dark.size) - int(centre)), weights=dark)
    sigma = 1.4826 * histogram_ranks(deviations, (50.0,))[0]
    return min(max(floor + BREAST_LEVEL * span, centre + NOISE_SIGMAS * sigma), floor + DARK_LEVEL * span)


def _flatten_background(low: np.ndarray) -> np.ndarray:
    """`low` (uint8 or uint16) less the film base's fog above its darkest level (see
    `BACKGROUND_BLOCK`); unchanged where the base is even."""
    counts = np.bincount(low.ravel())
    floor, bright = histogram_ranks(counts, (1.0, 99.0))
    dark_top = floor + DARK_LEVEL * max(bright - floor, 1.0)
    b = max(4, round(BACKGROUND_BLOCK * max(low.shape)))
    hb, wb = low.shape[0] // b, low.shape[1] // b
    blocks = low[: hb * b, : wb * b].reshape(hb, b, wb, b).swapaxes(1, 2).reshape(hb, wb, b * b)
    dark = blocks < dark_top
    valid = dark.mean(axis=2) >= 0.5
    if valid.sum() < 3:
        return low
    k = b * b // 8  # in a block at least half dark, the lower quartile of its dark pixels
    level = np.partition(blocks[valid], k, axis=1)[:, k].astype(np.float64)
    by, bx = np.nonzero(valid)
    design = np.stack([np.ones(by.size), (by + 0.5) * b, (bx + 0.5) * b], axis=1)
    keep = np.ones(by.size, bool)
    for _ in range(3):  # least squares, leaving out blocks far above or below the plane (tissue)
        plane = np.linalg.lstsq(design[keep], level[keep], rcond=None)[0]
        residual = level - design @ plane
        keep = np.abs(residual) <= 3 * 1.4826 * np.median(np.abs(residual[keep])) + 1
    h, w = low.shape
    if max(plane[0] + plane[1] * y + plane[2] * x for y in (0, h) for x in (0, w)) < floor + 1:
        return low  # an even base (a plane is highest in a corner)
    yy, xx = np.ogrid[:h, :w]
    fog = np.rint(plane[0] - floor + plane[1] * yy.astype(np.float32) + plane[2] * xx.astype(np.float32)).clip(0, None)
    return np.clip(low - fog, 0, None).astype(low.dtype)


def _edge_view(array: np.ndarray, edge: str) -> np.ndarray:
    """A view of `array` whose first axis runs inwards from `edge` (row 0 is the edge line)."""
    return {"top": array, "bottom": array[::-1], "left": array.T, "right": array.T[::-1]}[edge]


def _band_depth(lines: np.ndarray) -> int:
    """Depth of the border band at the start of `lines` (edge line first; uint8 0/1), 0 if none:
    full lines from the edge, then the partly full fringe (the band's blurred inner side) down to
    what the image holds beyond the band; fullness counted where the image is empty beyond the
    deepest band (see `BAND_FILL`)."""
    limit = max(1, round(BAND_DEPTH * lines.shape[0]))
    head = lines[: 2 * limit + 1]
    open_ = head[-1] == 0
    if open_.mean() < BAND_OPEN:
        return 0
    fill = head[:, open_].mean(axis=1)
    run = int(np.argmin(fill >= BAND_FILL)) if not (fill >= BAND_FILL).all() else fill.size
    beyond = float(np.median(fill[limit : 2 * limit + 1]))
    if run == 0 or run > limit or beyond >= BAND_INSIDE:
        return 0
    depth = run
    while depth < fill.size and fill[depth] > beyond + 0.1:
        depth += 1
    return depth if depth - run <= max(2, run) else 0


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with every background region that does not reach the image border filled in."""
    import cv2

    padded = np.pad(mask, 1)
    outside = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(padded, outside, (0, 0), 2)
    return (padded[1:-1, 1:-1] != 2).astype(np.uint8)


def histogram_ranks(counts: np.ndarray, qs: tuple[float, ...]) -> tuple[float, ...]:
    """Nearest-rank percentiles `qs` of values 0, 1, 2, ... given how many pixels hold each."""
    cumulative = np.cumsum(counts)
    return tuple(float(np.searchsorted(cumulative, q / 100.0 * (cumulative[-1] - 1), side="right")) for q in qs)

