"""Area resizing of 20-megapixel mammograms and their masks, and the boxes it works in.

Masks are area-resized and thresholded at 0.5: a pixel is abnormal when at least half of the area it
covers is. Bilinear-and-truncate would shrink small calcifications to nothing.
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]
"""(y0, y1, x0, x1): rows y0..y1-1 and columns x0..x1-1."""


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
    y0, y1, x0, x1 = shift_box(box, -sy0, -sx0)
    y0, x0, y1, x1 = y0 - y0 % k, x0 - x0 % k, y1 + (-y1) % k, x1 + (-x1) % k
    part = mask[y0:y1, x0:x1]
    part = cv2.threshold(part.view(np.uint8) if part.dtype == bool else part, 0, 255, cv2.THRESH_BINARY)[1]
    if k > 1:
        part = cv2.resize(part, ((x1 - x0) // k, (y1 - y0) // k), interpolation=cv2.INTER_AREA)
    covered = _sparse_binary_resize(part, (y0 // k, y1 // k, x0 // k, x1 // k), (h // k, w // k), rows, cols)
    return np.where(covered >= 128, 255, 0).astype(np.uint8)


def _sparse_binary_resize(part: np.ndarray, box: Box, shape: tuple[int, int], rows: int, cols: int) -> np.ndarray:
    """`_fractional_resize(binary=True)` of a `shape` array that holds `part` at `box` and zeros
    elsewhere, without building that array: when reducing, only the output pixels whose 2 x 2 fine
    samples reach the box are computed, with OpenCV's own nearest-neighbour mapping (read off the
    resize of an index column and row), so the result is the same to the bit."""
    import cv2

    h, w = shape
    if not (h > rows or w > cols):
        small = np.zeros(shape, np.uint8)
        small[box[0] : box[1], box[2] : box[3]] = part
        return _fractional_resize(small, rows, cols, binary=True)
    y0, y1, x0, x1 = box

    def span(sources: np.ndarray, low: int, high: int) -> tuple[int, int]:
        """The output range [a, b) whose fine samples (2a .. 2b-1) take any source in [low, high)."""
        hit = np.flatnonzero((sources >= low) & (sources < high))
        return (int(hit[0]) // 2, int(hit[-1]) // 2 + 1) if hit.size else (0, 0)

    source_rows = cv2.resize(np.arange(h, dtype=np.int32)[:, None], (1, 2 * rows), interpolation=cv2.INTER_NEAREST).ravel()
    source_cols = cv2.resize(np.arange(w, dtype=np.int32)[None, :], (2 * cols, 1), interpolation=cv2.INTER_NEAREST).ravel()
    (r0, r1), (c0, c1) = span(source_rows, y0, y1), span(source_cols, x0, x1)
    out = np.zeros((rows, cols), np.uint8)
    if r1 > r0 and c1 > c0:
        fine_rows, fine_cols = source_rows[2 * r0 : 2 * r1] - y0, source_cols[2 * c0 : 2 * c1] - x0
        inside_rows = (fine_rows >= 0) & (fine_rows < y1 - y0)
        inside_cols = (fine_cols >= 0) & (fine_cols < x1 - x0)
        fine = part[np.clip(fine_rows, 0, y1 - y0 - 1)][:, np.clip(fine_cols, 0, x1 - x0 - 1)]
        fine *= inside_rows[:, None] & inside_cols[None, :]
        out[r0:r1, c0:c1] = cv2.resize(fine, (c1 - c0, r1 - r0), interpolation=cv2.INTER_AREA)
    return out


def shift_box(box: Box, dy: int, dx: int) -> Box:
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
