"""Mammogram preprocessing shared by `prepare` and `predict`: orientation, breast crop, windowing, resize.

Design choices, and why:
- Every decision (breast region, chest-wall side, intensity window) is taken on a strided low-resolution
  copy (long side ~`ANALYSIS_SIDE`) so that no full-size float copy of a 25-45 MB mammogram is made.
- The full-size array is only ever cropped (a view) and resized with area interpolation while still
  16-bit; windowing to 8 bits happens on the small result. Area-resizing and then windowing differs
  from the reverse only where the window clips, which is where detail is lost anyway.
- Breast: every pixel above the background, down to the faint skin line, without the scanner's
  border bands and labels (`find_breast`). Only what lies outside it is blanked in network inputs.
- Orientation: the chest wall goes on the left, decided from the pixels (which image edge the breast
  touches), because the CSV side does not say which way the film was scanned.
- Aspect: the breast crop is resized so that its long side becomes S, then padded with background
  (zeros) on the bottom/right to S x S. Padding rather than stretching keeps tissue shape and scale
  comparable between images; bottom/right keeps the chest wall anchored at the left edge.
- Masks are area-resized and thresholded at 0.5: a pixel is abnormal when at least half of the area it
  covers is. Bilinear-and-truncate would shrink small calcifications to nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

ANALYSIS_SIDE = 512
"""Long side of the low-resolution copy on which thresholds and the breast region are computed."""

MASK_SIZE_TOLERANCE = 0.01
"""A mask whose height or width differs from its image by at most this fraction (and at least 4 px)
is resized onto the image with nearest-neighbour; a larger mismatch means the mask belongs elsewhere."""

Box = tuple[int, int, int, int]
"""(y0, y1, x0, x1): rows y0..y1-1 and columns x0..x1-1."""

WINDOW_PERCENTILES = (0.5, 99.5)
"""Intensity window: these percentiles of the breast's pixels map to 0 and 255."""


@dataclass(frozen=True)
class Geometry:
    """How an original H x W mammogram became an S x S network input, and back.

    Order of operations: mirror left-right (`flip`), crop `box` = (y0, y1, x0, x1) given in the
    mirrored frame, scale by `size / max(crop height, crop width)` with area interpolation, pad with
    zeros on the bottom/right to `size` x `size`.
    """

    height: int
    width: int
    flip: bool
    box: tuple[int, int, int, int]
    size: int

    @property
    def scale(self) -> float:
        y0, y1, x0, x1 = self.box
        return self.size / max(y1 - y0, x1 - x0)

    @property
    def content_shape(self) -> tuple[int, int]:
        """(rows, cols) of the S x S output that hold image content; the rest is padding."""
        y0, y1, x0, x1 = self.box
        s = self.scale
        return min(self.size, max(1, round((y1 - y0) * s))), min(self.size, max(1, round((x1 - x0) * s)))

    def original_box(self) -> tuple[int, int, int, int]:
        """`box` in the coordinates of the original, un-mirrored array."""
        y0, y1, x0, x1 = self.box
        return (y0, y1, self.width - x1, self.width - x0) if self.flip else self.box

    def _resize(self, array: np.ndarray, binary: bool = False, within: Box | None = None) -> np.ndarray:
        if array.shape[:2] != (self.height, self.width):
            raise ValueError(f"array of shape {array.shape} does not match the geometry's {self.height}x{self.width}")
        y0, y1, x0, x1 = self.original_box()
        rows, cols = self.content_shape
        crop = array[y0:y1, x0:x1]
        if binary:
            small = mask_resize(crop, rows, cols, within=None if within is None else _shift(within, y0, x0))
        else:
            small = area_resize(crop, rows, cols)
        return small[:, ::-1] if self.flip else small

    def _pad(self, small: np.ndarray) -> np.ndarray:
        out = np.zeros((self.size, self.size), dtype=small.dtype)
        out[: small.shape[0], : small.shape[1]] = small
        return out

    def apply(self, array: np.ndarray, *, binary: bool = False, within: Box | None = None) -> np.ndarray:
        """Map an H x W array onto the S x S frame. `binary=True` for masks (any non-zero = abnormal):
        the result is uint8 0/255, thresholded at half coverage; `within` is a box outside which the
        mask is known to be zero (see `mask_resize`). Images keep their dtype."""
        return self._pad(self._resize(np.asarray(array), binary=binary, within=within))

    def restore(self, map_sxs: np.ndarray, *, fill: float = 0) -> np.ndarray:
        """Map an S x S map (e.g. probabilities) back onto the original H x W mammogram: drop the
        padding, resize to the crop (bilinear for float maps, nearest for integer ones), un-mirror,
        and place it in the crop box; pixels outside the breast crop get `fill`."""
        import cv2

        map_sxs = np.asarray(map_sxs)
        if map_sxs.shape[:2] != (self.size, self.size):
            raise ValueError(f"map of shape {map_sxs.shape} is not {self.size}x{self.size}")
        rows, cols = self.content_shape
        y0, y1, x0, x1 = self.box
        content = np.ascontiguousarray(map_sxs[:rows, :cols])
        floating = content.dtype.kind == "f"
        if floating and content.dtype != np.float32:
            content = content.astype(np.float32)
        elif content.dtype == bool:
            content = content.astype(np.uint8)
        elif content.dtype.kind in "iu" and content.dtype.itemsize > 2:
            content = content.astype(np.int32)  # label maps: OpenCV resizes 32-bit integers, not 64-bit
        interpolation = cv2.INTER_LINEAR if floating else cv2.INTER_NEAREST
        big = cv2.resize(content, (x1 - x0, y1 - y0), interpolation=interpolation)
        out = np.full((self.height, self.width), fill, dtype=big.dtype)
        out[y0:y1, x0:x1] = big
        return out[:, ::-1].copy() if self.flip else out

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Geometry:
        return cls(
            height=int(data["height"]), width=int(data["width"]), flip=bool(data["flip"]),
            box=tuple(int(v) for v in data["box"]), size=int(data["size"]),  # type: ignore[arg-type]
        )  # fmt: skip


@dataclass(frozen=True)
class Analysis:
    """What the low-resolution look at one mammogram decided."""

    flip: bool
    box: tuple[int, int, int, int]  # breast bounding box in the mirrored full-resolution frame
    window: tuple[float, float]  # input values mapped to 0 and 255
    breast: np.ndarray  # low-resolution breast mask (uint8 0/1), original (un-mirrored) orientation
    step: int  # full-resolution pixels per low-resolution pixel


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


def find_breast(low: np.ndarray) -> np.ndarray:
    """The breast (uint8 0/1) in a low-resolution mammogram whose tissue is bright (MONOCHROME2,
    as `read_pixels` returns it, 8 or 16 bits): above-background pixels, without the scanner's
    border bands, the largest connected region (labels and markers are separate), holes filled.

    Border bands are thin, nearly full strips along an edge; they join everything that touches
    that edge into one region. They are cleared before the regions are told apart, and the breast
    is then continued through them to the image edge where it met them (a pectoral muscle under a
    top band is breast, the band beside background is not).
    """
    import cv2

    low = cv2.medianBlur(np.ascontiguousarray(low), 3) if low.dtype in (np.uint8, np.uint16) else low
    low = _flatten_background(low)
    above = (low > _breast_threshold(low)).astype(np.uint8)
    bands = {edge: _band_depth(_edge_view(above, edge)) for edge in ("top", "bottom", "left", "right")}
    core = above.copy()
    for edge, depth in bands.items():
        _edge_view(core, edge)[:depth] = 0
    count, labels, stats, _ = cv2.connectedComponentsWithStats(core, connectivity=8)
    if count <= 1:
        return np.ones_like(above)
    breast = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    for edge, depth in bands.items():
        if depth:
            view, inside = _edge_view(breast, edge), _edge_view(breast, edge)[depth]
            view[:depth] = _edge_view(above, edge)[:depth] & inside
    return _fill_holes(breast)


def _breast_threshold(low: np.ndarray) -> float:
    """The level above which a pixel of `low` (uint8 or uint16) is breast (see `BREAST_LEVEL`,
    `NOISE_SIGMAS`). All from one histogram: medians by sorting cost more than the detection."""
    counts = np.bincount(low.ravel())
    floor, bright = _ranks(counts, (1.0, 99.0))
    span = max(bright - floor, 1.0)
    dark = counts[: int(np.ceil(floor + DARK_LEVEL * span))]
    (centre,) = _ranks(dark, (50.0,))
    deviations = np.bincount(np.abs(np.arange(dark.size) - int(centre)), weights=dark)
    sigma = 1.4826 * _ranks(deviations, (50.0,))[0]
    return min(max(floor + BREAST_LEVEL * span, centre + NOISE_SIGMAS * sigma), floor + DARK_LEVEL * span)


def _flatten_background(low: np.ndarray) -> np.ndarray:
    """`low` (uint8 or uint16) less the film base's fog above its darkest level (see
    `BACKGROUND_BLOCK`); unchanged where the base is even."""
    counts = np.bincount(low.ravel())
    floor, bright = _ranks(counts, (1.0, 99.0))
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


def analyse(pixels: np.ndarray, side: str | None = None) -> Analysis:
    """Find the breast (`find_breast`), its chest-wall side, and the intensity window.

    `side` (LEFT/RIGHT from the CSV) only breaks a tie when the pixels are ambiguous.
    """
    h, w = pixels.shape
    step = max(1, math.ceil(max(h, w) / ANALYSIS_SIDE))
    low = np.ascontiguousarray(pixels[::step, ::step])
    breast = find_breast(low)

    lh, lw = breast.shape
    edge = max(1, lw // 20)
    left, right = int(breast[:, :edge].sum()), int(breast[:, -edge:].sum())
    if left == right:
        cols = np.nonzero(breast.any(axis=0))[0]
        centre = (cols[0] + cols[-1]) / 2 if cols.size else lw / 2
        com = float(np.average(np.arange(lw), weights=breast.sum(axis=0))) if breast.any() else centre
        flip = com > lw / 2 if abs(com - lw / 2) > 1 else side == "RIGHT"
    else:
        flip = right > left

    ys, xs = np.nonzero(breast)
    y0, y1 = int(ys.min()), int(ys.max()) + 1
    x0, x1 = int(xs.min()), int(xs.max()) + 1
    y0 = 0 if y0 <= 2 else (y0 - 1) * step
    x0 = 0 if x0 <= 2 else (x0 - 1) * step
    y1 = h if y1 >= lh - 2 else min(h, (y1 + 1) * step)
    x1 = w if x1 >= lw - 2 else min(w, (x1 + 1) * step)
    if flip:
        x0, x1 = w - x1, w - x0

    values = low[breast > 0]
    wlo, whi = _percentiles(values if values.size else low, WINDOW_PERCENTILES)
    if whi <= wlo:
        whi = wlo + 1.0
    return Analysis(flip=bool(flip), box=(y0, y1, x0, x1), window=(float(wlo), float(whi)), breast=breast, step=step)


def area_resize(array: np.ndarray, rows: int, cols: int, *, binary: bool = False) -> np.ndarray:
    """Area-style reduction to rows x cols, fast on 20-megapixel mammograms.

    OpenCV's general INTER_AREA path is slow for non-integer factors, its integer-factor block
    average fast. So: (1) average k x k blocks for the integer part k of the factor (up to k-1
    trailing rows/columns that do not fill a block are dropped; `snap_box` sizes crop boxes so that
    none are); (2) for the remaining factor below 2, resample to twice the target (bilinear, or
    nearest for `binary` masks so that values stay 0/255) and average 2 x 2 blocks, which is area
    averaging on a half-pixel grid. Enlargements use plain INTER_AREA.
    """
    import cv2

    k = _block_factor(array.shape, rows, cols)
    if k >= 2:
        h, w = array.shape[:2]
        array = cv2.resize(array[: h - h % k, : w - w % k], ((w - w % k) // k, (h - h % k) // k), interpolation=cv2.INTER_AREA)
    return _fractional_resize(array, rows, cols, binary)


def _block_factor(shape: tuple[int, ...], rows: int, cols: int) -> int:
    return min(shape[0] // rows, shape[1] // cols) if rows and cols else 1


def _fractional_resize(array: np.ndarray, rows: int, cols: int, binary: bool) -> np.ndarray:
    """Stage (2) of `area_resize`."""
    import cv2

    h, w = array.shape[:2]
    if (h, w) == (rows, cols):
        return array
    if h > rows or w > cols:
        fine = cv2.resize(array, (2 * cols, 2 * rows), interpolation=cv2.INTER_NEAREST if binary else cv2.INTER_LINEAR)
        return cv2.resize(fine, (cols, rows), interpolation=cv2.INTER_AREA)
    return cv2.resize(array, (cols, rows), interpolation=cv2.INTER_AREA)


def mask_resize(mask: np.ndarray, rows: int, cols: int, *, within: Box | None = None) -> np.ndarray:
    """A mask (any non-zero value is abnormal) area-resized to rows x cols and thresholded at half
    coverage, as uint8 0/255: the same as thresholding, `area_resize(binary=True)`, thresholding at 128.

    Abnormalities cover a small part of a mammogram, so only the block-aligned bounding box of the
    non-zero pixels is thresholded and block-averaged (blocks outside it average to zero): one
    read-only pass over the mask instead of a thresholded copy and a full block average. A caller
    that knows a box (y0, y1, x0, x1) outside which the mask is zero passes it as `within`, and the
    rest of the mask is not read at all.
    """
    import cv2

    k = max(1, _block_factor(mask.shape, rows, cols))
    h, w = mask.shape[0] - mask.shape[0] % k, mask.shape[1] - mask.shape[1] % k
    sy0, sy1, sx0, sx1 = (0, h, 0, w) if within is None else (max(0, within[0]), min(h, within[1]), max(0, within[2]), min(w, within[3]))
    box = foreground_box(mask[sy0:sy1, sx0:sx1]) if sy1 > sy0 and sx1 > sx0 else None
    if box is None:
        return np.zeros((rows, cols), np.uint8)
    y0, y1, x0, x1 = _shift(box, -sy0, -sx0)
    y0, x0, y1, x1 = y0 - y0 % k, x0 - x0 % k, y1 + (-y1) % k, x1 + (-x1) % k
    part = mask[y0:y1, x0:x1]
    part = cv2.threshold(part.view(np.uint8) if part.dtype == bool else part, 0, 255, cv2.THRESH_BINARY)[1]
    if k > 1:
        part = cv2.resize(part, ((x1 - x0) // k, (y1 - y0) // k), interpolation=cv2.INTER_AREA)
    small = np.zeros((h // k, w // k), np.uint8)
    small[y0 // k : y1 // k, x0 // k : x1 // k] = part
    covered = _fractional_resize(small, rows, cols, binary=True)
    return np.where(covered >= 128, 255, 0).astype(np.uint8)


def _shift(box: Box, dy: int, dx: int) -> Box:
    """`box` in the frame whose origin is at (dy, dx) of the box's frame."""
    return box[0] - dy, box[1] - dy, box[2] - dx, box[3] - dx


def foreground_box(mask: np.ndarray, threshold: int = 0) -> Box | None:
    """(y0, y1, x0, x1) bounding the pixels above `threshold`, None when there are none. Row maxima
    take one pass over the array; column maxima are taken over the rows in the box only."""
    if mask.size == 0:
        return None
    rows = np.flatnonzero(mask.max(axis=1) > threshold)
    if not rows.size:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(mask[y0:y1].max(axis=0) > threshold)
    return y0, y1, int(cols[0]), int(cols[-1]) + 1


def snap_box(box: tuple[int, int, int, int], shape: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """Grow (or, at the image edge, shrink) a crop box so that its sides are multiples of the
    block factor `area_resize` will use: the two-stage resize then drops no pixel."""
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    k = max(h, w) // size
    if k < 2:
        return box
    rows, cols = max(1, round(h * size / max(h, w))), max(1, round(w * size / max(h, w)))
    k = min(k, h // rows, w // cols)
    if k < 2:
        return box
    y1 = y1 + (-h) % k if y1 + (-h) % k <= shape[0] else y1 - h % k
    x1 = x1 + (-w) % k if x1 + (-w) % k <= shape[1] else x1 - w % k
    return y0, y1, x0, x1


def _percentiles(values: np.ndarray, qs: tuple[float, float]) -> tuple[float, float]:
    """Percentiles of unsigned integer pixels from their histogram (several times quicker than a
    sort-based np.percentile); nearest-rank, which is all a window needs."""
    if values.dtype.kind != "u":
        lo, hi = np.percentile(values, qs)
        return float(lo), float(hi)
    lo, hi = _ranks(np.bincount(values.ravel()), qs)
    return lo, hi


def _ranks(counts: np.ndarray, qs: tuple[float, ...]) -> tuple[float, ...]:
    """Nearest-rank percentiles `qs` of values 0, 1, 2, ... given how many pixels hold each."""
    cumulative = np.cumsum(counts)
    return tuple(float(np.searchsorted(cumulative, q / 100.0 * (cumulative[-1] - 1), side="right")) for q in qs)


def to_uint8(array: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Linear intensity window to 8 bits; meant for already-small arrays."""
    lo, hi = window
    out = (array.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(out, 0, 255).astype(np.uint8)


def prepare_full_image(
    pixels: np.ndarray, image_size: int, *, side: str | None = None, analysis: Analysis | None = None
) -> tuple[np.ndarray, Geometry]:
    """The whole breast as a uint8 `image_size` x `image_size` network input, and its Geometry.

    Pixels outside the (slightly dilated) breast region, such as film labels inside the crop box,
    are set to background.
    """
    import cv2

    a = analysis if analysis is not None else analyse(pixels, side)
    h, w = pixels.shape
    geometry = Geometry(height=h, width=w, flip=a.flip, box=snap_box(a.box, (h, w), image_size), size=image_size)
    small = to_uint8(geometry._resize(pixels), a.window)
    region = cv2.dilate(a.breast, np.ones((5, 5), np.uint8))
    region_full = _low_to_geometry(region, a.step, geometry, small.shape)
    small[region_full == 0] = 0
    return geometry._pad(small), geometry


def _low_to_geometry(low: np.ndarray, step: int, geometry: Geometry, shape: tuple[int, int]) -> np.ndarray:
    """A low-resolution map (original orientation) sampled at the centres of the pixels of the
    geometry's crop resized to `shape` (nearest), mirrored like it."""
    y0, y1, x0, x1 = geometry.original_box()
    rows = (y0 + (np.arange(shape[0]) + 0.5) * (y1 - y0) / shape[0]).astype(np.int64) // step
    cols = (x0 + (np.arange(shape[1]) + 0.5) * (x1 - x0) / shape[1]).astype(np.int64) // step
    out = low[np.ix_(np.minimum(rows, low.shape[0] - 1), np.minimum(cols, low.shape[1] - 1))]
    return out[:, ::-1] if geometry.flip else out


def extract_tile(
    pixels: np.ndarray,
    mask: np.ndarray | None,
    analysis: Analysis,
    top_left: tuple[int, int],
    tile: int,
    image_size: int,
    *,
    within: Box | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """A square `tile` x `tile` region (top-left in original coordinates, inside the image) resized to
    `image_size`, windowed like the whole image and mirrored like it; the mask area-thresholded
    (`within` as for `mask_resize`, in original coordinates)."""
    y, x = top_left
    image = to_uint8(area_resize(pixels[y : y + tile, x : x + tile], image_size, image_size), analysis.window)
    out_mask = None
    if mask is not None:
        region = mask[y : y + tile, x : x + tile]
        out_mask = mask_resize(region, image_size, image_size, within=None if within is None else _shift(within, y, x))
    if analysis.flip:
        image = image[:, ::-1].copy()
        out_mask = None if out_mask is None else out_mask[:, ::-1].copy()
    return image, out_mask


def classify_roi(pixels: np.ndarray, image_shape: tuple[int, int]) -> str:
    """'mask' or 'crop' for a file of an ROI series, from its pixels only.

    A mask is 8-bit and binary (values within 16 of 0 or 255, allowing for JPEG ringing) and roughly
    as large as the full image; anything else (small, or 16-bit, or grey-valued) is a crop.
    """
    if pixels.dtype != np.uint8:
        return "crop"
    h, w = pixels.shape
    H, W = image_shape
    if h * w < 0.25 * H * W:
        return "crop"
    step = max(1, max(h, w) // 256)
    sample = pixels[::step, ::step]
    extreme = np.count_nonzero((sample < 16) | (sample > 239))
    return "mask" if extreme >= 0.99 * sample.size else "crop"


def fit_mask(mask: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """A binary uint8 0/255 mask at exactly `image_shape`; raises ValueError when the size mismatch
    exceeds `MASK_SIZE_TOLERANCE` (the mask then cannot be trusted to line up)."""
    import cv2

    h, w = mask.shape
    H, W = image_shape
    if abs(h - H) > max(4, MASK_SIZE_TOLERANCE * H) or abs(w - W) > max(4, MASK_SIZE_TOLERANCE * W):
        raise ValueError(f"mask size {h}x{w} differs from image size {H}x{W} by more than {MASK_SIZE_TOLERANCE:.0%}")
    _, binary = cv2.threshold(mask, 127, 255, cv2.THRESH_BINARY)
    if (h, w) != (H, W):
        binary = cv2.resize(binary, (W, H), interpolation=cv2.INTER_NEAREST)
    return binary


def tile_side(image_shape: tuple[int, int], rng: np.random.Generator, jitter: float = 0.025) -> int:
    """Side of a training tile: the author's ~969 px crops of ~4000 px-long mammograms, as a fraction
    of this image's long side, times N(1, jitter)."""
    side = max(image_shape) * (969 / 4000) * rng.normal(1.0, jitter)
    return int(max(8, min(min(image_shape), round(side))))


def breast_fraction(analysis: Analysis, top_left: tuple[int, int], tile: int) -> float:
    """Fraction of a full-resolution tile that the low-resolution breast mask covers."""
    y, x = top_left
    s = analysis.step
    part = analysis.breast[y // s : -(-(y + tile) // s), x // s : -(-(x + tile) // s)]
    return float(part.mean()) if part.size else 0.0


def outside_breast(analysis: Analysis, box: Box, mask: np.ndarray) -> float:
    """Fraction of the non-zero pixels of `mask` (placed at `box` in original coordinates) that the
    low-resolution breast mask does not cover; 0 for an empty mask."""
    ys, xs = np.nonzero(mask)
    if not ys.size:
        return 0.0
    s = analysis.step
    inside = analysis.breast[(ys + box[0]) // s, (xs + box[2]) // s]
    return float(np.count_nonzero(inside == 0)) / ys.size
