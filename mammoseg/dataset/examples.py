"""The record of one mammogram, as `prepare` writes it: the whole breast, and the breast at working
resolution from which the pipeline cuts positive tiles around its abnormalities and negative tiles on
breast tissue clear of them (random ones for training, a fixed seeded list for evaluation).

An image is skipped whole when the image or any of its masks cannot be used: a missing mask would
turn an abnormality into 'normal' pixels. An abnormality's truth is one of: CBIS-DDSM's crop and ROI
mask files (told apart by their pixels, the mask fitted to the image), a circle (mini-MIAS), or one
mask file the size of its image (the images/masks layout; any non-zero pixel is abnormal, and an
all-zero mask makes the image normal).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mammoseg.dataset import preprocess
from mammoseg.dataset.dicom import read_pixels
from mammoseg.dataset.resize import Box, foreground_box
from mammoseg.dataset.shards import BreastView, serialize_example
from mammoseg.core.errors import InputError, MammosegError, Skip

logger = logging.getLogger("mammoseg.dataset")

PATHOLOGY_RANK = {"MALIGNANT": 0, "BENIGN": 1, "BENIGN_WITHOUT_CALLBACK": 2, "UNKNOWN": 3, "NONE": 4}
NEGATIVE_MIN_BREAST = 0.75
"""A negative tile must lie at least this much on breast tissue (background-only tiles teach nothing)."""
NEGATIVE_ATTEMPTS = 200
NEGATIVE_POOL = 8
"""Negative tiles stored per image: training draws its negative tiles from this pool (jittered), the
first `negative_tiles` are the fixed evaluation tiles."""
OUTSIDE_BREAST_WARNING = 0.01
"""An abnormality with more than this fraction of its pixels outside the detected breast is reported
(`prepare_report.csv`, reason starting 'warning:'): the breast detection or the ROI mask is wrong."""

Prepared = tuple[bytes, list[dict[str, Any]]]
"""A mammogram's serialized record and the manifest rows of the examples the pipeline cuts from it."""


@dataclass(frozen=True)
class PrepareOptions:
    """Everything that changes the prepared examples; recorded in dataset.json and checked on resume."""

    image_size: int = 640
    positive_tiles: int = 2
    negative_tiles: int = 2
    val_fraction: float = 0.1
    seed: int = 0
    layout: str = "auto"
    images_per_shard: int = 16

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise MammosegError(f"--image-size must be at least 16, got {self.image_size}")
        if self.positive_tiles < 0 or self.negative_tiles < 0:
            raise MammosegError("--positive-tiles and --negative-tiles cannot be negative")
        if not 0.0 <= self.val_fraction < 1.0:
            raise MammosegError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.images_per_shard < 1:
            raise MammosegError("images per shard must be at least 1")


@dataclass(frozen=True)
class Abnormality:
    """One abnormality and its truth: `roi_files` (CBIS-DDSM), else `circle`, else `mask_file`."""

    abnormality_id: int
    kind: str  # mass | calc | ...
    pathology: str
    roi_files: tuple[str, ...] = ()  # crop and ROI mask, told apart by their pixels
    circle: tuple[float, float, float] | None = None  # (row, column, radius) in image pixels, top-left origin
    mask_file: str | None = None  # a mask of the image's size; non-zero is abnormal

    @property
    def source(self) -> str:
        """The file or description that reports about this abnormality name."""
        if self.roi_files:
            return self.roi_files[0]
        return self.mask_file or f"circle {self.circle}"


@dataclass(frozen=True)
class ImageJob:
    """A full mammogram and its abnormalities: the picklable input of one worker step."""

    image_key: str
    patient_id: str
    side: str
    split: str
    image_file: str
    abnormalities: tuple[Abnormality, ...]
    extra: tuple[tuple[str, str], ...] = ()  # more manifest columns of this image's rows, from its layout

    @property
    def normal(self) -> bool:
        """A mammogram without abnormalities: a normal image (`--normals`); every CBIS-DDSM image has one or more."""
        return not self.abnormalities


def process_image(job: ImageJob, options: PrepareOptions, warnings: list[Skip]) -> Prepared:
    """The one record of a mammogram and its manifest rows, one per example the pipeline cuts from it.
    Raises InputError when the image or any of its masks cannot be used: the image is then skipped
    whole. A normal image gives one example, the whole breast (kind `normal`, empty mask).
    Abnormalities that lie partly outside the detected breast are appended to `warnings`.

    An abnormal image's record holds the whole breast at the network's size, the breast again at
    working resolution (`preprocess.working_side`) with its mask, the abnormalities' boxes, a pool of
    negative tiles, and the fixed evaluation tiles (seeded by the run's seed and the image key):
    `options.positive_tiles` around the abnormalities and `options.negative_tiles` from the pool.
    """
    pixels = read_pixels(job.image_file)
    size = options.image_size
    if not job.normal:
        analysis = preprocess.analyse(pixels, job.side)
        union, boxes = _abnormality_union(job, pixels.shape, analysis, warnings)
    if job.normal or not boxes:  # no abnormality, or only all-zero masks
        image, _ = preprocess.prepare_full_image(pixels, size, side=job.side)
        record, row = _record(job, "normal", image, np.zeros((size, size), np.uint8), [], None)
        return record, [row]
    # every abnormal pixel lies in here: the mask resizes read nothing else of the full-size union
    within = _enclosing(boxes)
    rng = np.random.default_rng([options.seed, zlib.crc32(job.image_key.encode())])
    image, geometry = preprocess.prepare_full_image(pixels, size, analysis=analysis)
    whole_mask = geometry.apply(union, binary=True, within=within)
    breast, working = preprocess.prepare_full_image(
        pixels, preprocess.working_side(pixels.shape, analysis.box, size), analysis=analysis, pad=False)
    breast_mask = working.resize(union, binary=True, within=within)

    tiles: list[Tile] = []
    for k, box in enumerate(_positive_tiles(pixels.shape, boxes, rng, options.positive_tiles)):
        tile = working.map_box(box)
        fraction = _abnormal_fraction(breast_mask, tile)
        if fraction > 0:  # else an abnormality too small to cover half a working pixel
            involved = [a for a, b in zip(job.abnormalities, boxes) if _overlaps(b, box)]
            tiles.append(Tile(f"pos{k}", "positive", tile, involved, fraction))
    pool = [working.map_box(box) for box in _negative_tiles(pixels.shape, boxes, analysis, rng, max(options.negative_tiles, NEGATIVE_POOL))]
    tiles += [Tile(f"neg{k}", "negative", box, [], 0.0) for k, box in enumerate(pool[: options.negative_tiles])]
    view = BreastView(
        image=breast, mask=breast_mask, abnormality_boxes=[working.map_box(b) for b in boxes], negative_pool=pool,
        tile_ids=[f"{job.image_key}-{t.suffix}" for t in tiles], tile_kinds=[t.kind for t in tiles],
        tile_boxes=[t.box for t in tiles],
    )  # fmt: skip
    record, whole = _record(job, "whole", image, whole_mask, list(job.abnormalities), view)
    return record, [whole, *(_row(job, t.suffix, t.kind, t.involved, t.fraction) for t in tiles)]


@dataclass(frozen=True)
class Tile:
    """A fixed evaluation tile: its id suffix, kind, box (y0, y1, x0, x1) in working-resolution
    pixels, the abnormalities it shows and its abnormal fraction."""

    suffix: str
    kind: str
    box: tuple[float, float, float, float]
    involved: list[Abnormality]
    fraction: float


def _abnormal_fraction(mask: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Fraction of a tile's area (pixels outside the stored breast count as normal) that is abnormal
    at working resolution: the manifest's `positive_fraction` of a tile."""
    y0, y1, x0, x1 = (max(0, round(v)) for v in box)
    area = max(1.0, (box[1] - box[0]) * (box[3] - box[2]))
    return float(np.count_nonzero(mask[y0:y1, x0:x1])) / area


def _record(job: ImageJob, kind: str, image: np.ndarray, mask: np.ndarray, involved: list[Abnormality],
            view: BreastView | None) -> tuple[bytes, dict[str, Any]]:
    """The record of one mammogram and the manifest row of its whole-breast example."""
    row = _row(job, "whole", kind, involved, float(np.count_nonzero(mask)) / mask.size)
    record = serialize_example(
        image, mask, example_id=row["example_id"], kind=kind, patient_id=job.patient_id,
        abnormality_type=row["abnormality_type"], pathology=row["pathology"],
        positive_fraction=row["positive_fraction"], breast=view,
    )  # fmt: skip
    return record, row


def _row(job: ImageJob, suffix: str, kind: str, involved: list[Abnormality], fraction: float) -> dict[str, Any]:
    """One example's manifest fields; its type and pathology are those of the abnormalities it shows
    (the worst pathology), `none`/`NONE` for none."""
    types = "+".join(sorted({a.kind for a in involved})) or "none"
    pathology = min((a.pathology for a in involved), key=PATHOLOGY_RANK.__getitem__, default="NONE")
    return {
        "example_id": f"{job.image_key}-{suffix}", "patient_id": job.patient_id, "source_image": job.image_key,
        "kind": kind, "abnormality_type": types, "pathology": pathology, "positive_fraction": round(fraction, 6),
        **dict(job.extra),
    }  # fmt: skip


def _abnormality_union(
    job: ImageJob, shape: tuple[int, int], analysis: preprocess.Analysis, warnings: list[Skip]
) -> tuple[np.ndarray, list[Box]]:
    """The full-size union (uint8 0/255) of the image's abnormality masks and each one's bounding
    box (none for an all-zero mask file); abnormalities partly outside the detected breast are
    appended to `warnings`."""
    union = np.zeros(shape, np.uint8)  # pages are only allocated where abnormalities are pasted
    boxes = []
    for abn in job.abnormalities:
        if abn.roi_files:
            box, part = _abnormality_mask(abn, shape)
        else:
            found = _circle_mask(abn, shape) if abn.circle is not None else _plain_mask(abn, shape, job.image_file)
            if found is None:
                continue
            box, part = found
        _paste_max(union, box, part)
        boxes.append(box)
        outside = preprocess.outside_breast(analysis, box, part)
        if outside > OUTSIDE_BREAST_WARNING:
            warning = Skip(job.image_key, abn.source, f"warning: {outside:.1%} of abnormality {abn.abnormality_id}'s pixels lie outside the detected breast (breast detection or ROI mask wrong); image kept")
            logger.warning("%s: %s", warning.source, warning.reason)
            warnings.append(warning)
    return union, boxes


def _abnormality_mask(abn: Abnormality, image_shape: tuple[int, int]) -> tuple[Box, np.ndarray]:
    """The ROI mask among an abnormality's files, told from the crop by its pixels, fitted to the
    image: as its bounding box (y0, y1, x0, x1) and the uint8 0/255 mask inside it. Only the box is
    ever copied out of a full-size mask, which is otherwise read once (a memory map, no copy)."""
    import cv2

    found = []
    sizes = []
    for path in abn.roi_files:
        roi = read_pixels(path)
        sizes.append(f"{roi.shape[0]}x{roi.shape[1]} {roi.dtype}")
        if preprocess.classify_roi(roi, image_shape) == "mask":
            found.append((path, roi))
    if not found:
        raise InputError(abn.roi_files[0], f"no ROI mask among the {len(abn.roi_files)} file(s) of abnormality {abn.abnormality_id} ({', '.join(sizes)}; image {image_shape[0]}x{image_shape[1]})")
    parts = []
    for path, roi in found:
        if roi.shape != image_shape:
            try:
                roi = preprocess.fit_mask(roi, image_shape)
            except ValueError as exc:
                raise InputError(path, f"{exc} (abnormality {abn.abnormality_id})") from exc
        box = foreground_box(roi, threshold=127)
        if box is not None:
            y0, y1, x0, x1 = box
            parts.append((box, cv2.threshold(roi[y0:y1, x0:x1], 127, 255, cv2.THRESH_BINARY)[1]))
    if not parts:
        raise InputError(found[0][0], f"ROI mask of abnormality {abn.abnormality_id} is empty")
    box = _enclosing([b for b, _ in parts])
    mask = np.zeros((box[1] - box[0], box[3] - box[2]), np.uint8)
    for (y0, y1, x0, x1), part in parts:
        _paste_max(mask, (y0 - box[0], y1 - box[0], x0 - box[2], x1 - box[2]), part)
    return box, mask


def _circle_mask(abn: Abnormality, shape: tuple[int, int]) -> tuple[Box, np.ndarray]:
    """The disc of an abnormality given as a circle, clipped to the image: its box and 0/255 part."""
    assert abn.circle is not None
    row, col, radius = abn.circle
    y0, y1 = max(0, int(np.floor(row - radius))), min(shape[0], int(np.ceil(row + radius)) + 1)
    x0, x1 = max(0, int(np.floor(col - radius))), min(shape[1], int(np.ceil(col + radius)) + 1)
    if y0 >= y1 or x0 >= x1:
        raise InputError(abn.source, f"circle of abnormality {abn.abnormality_id} lies outside the {shape[0]}x{shape[1]} image")
    yy, xx = np.mgrid[y0:y1, x0:x1]
    disc = ((yy - row) ** 2 + (xx - col) ** 2 <= radius**2).astype(np.uint8) * 255
    return (y0, y1, x0, x1), disc


def _plain_mask(abn: Abnormality, shape: tuple[int, int], image_file: str) -> tuple[Box, np.ndarray] | None:
    """A mask file of the image's own size (never resized: another size is an error naming both),
    any non-zero pixel abnormal; None when it has none."""
    assert abn.mask_file is not None
    mask = read_pixels(abn.mask_file)
    if mask.shape != shape:
        raise InputError(abn.mask_file, f"mask is {mask.shape[0]}x{mask.shape[1]} pixels but its image {Path(image_file).name} is {shape[0]}x{shape[1]}; masks are never resized")
    box = foreground_box(mask)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    return box, np.where(mask[y0:y1, x0:x1] > 0, 255, 0).astype(np.uint8)


def relative(path: str | Path, root: Path) -> str:
    """Report paths relative to the data root: shorter, and no user's home folder in shared reports."""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _enclosing(boxes: list[Box]) -> Box:
    """The smallest box (y0, y1, x0, x1) holding all of `boxes`."""
    return min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes), max(b[3] for b in boxes)


def _paste_max(target: np.ndarray, box: Box, part: np.ndarray) -> None:
    """Union `part` into `target` at `box` (y0, y1, x0, x1), in place."""
    region = target[box[0] : box[1], box[2] : box[3]]
    np.maximum(region, part, out=region)


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def _positive_tiles(
    shape: tuple[int, int], boxes: list[Box], rng: np.random.Generator, count: int
) -> list[Box]:
    """`count` square tiles (y0, y1, x0, x1) around the abnormalities in turn (`boxes`, their bounding
    boxes): centred on one, shifted at random by up to 80% of the room the tile leaves around it."""
    h, w = shape
    tiles = []
    for k in range(count):
        tile = preprocess.tile_side(shape, rng)
        y0, y1, x0, x1 = boxes[k % len(boxes)]
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        slack_y, slack_x = max(0.0, (tile - (y1 - y0)) / 2), max(0.0, (tile - (x1 - x0)) / 2)
        cy += rng.uniform(-0.8, 0.8) * slack_y
        cx += rng.uniform(-0.8, 0.8) * slack_x
        top = int(np.clip(round(cy - tile / 2), 0, h - tile))
        left = int(np.clip(round(cx - tile / 2), 0, w - tile))
        tiles.append((top, top + tile, left, left + tile))
    return tiles


def _negative_tiles(
    shape: tuple[int, int], boxes: list[Box], analysis: preprocess.Analysis, rng: np.random.Generator, count: int
) -> list[Box]:
    """Up to `count` square tiles (y0, y1, x0, x1) on breast tissue with no abnormal pixel in them or in a
    margin of 1/8 tile around them (abnormal pixels lie only inside `boxes`, the abnormalities'
    bounding boxes); fewer when the breast leaves no such room."""
    h, w = shape
    y0, y1, x0, x1 = analysis.box
    if analysis.flip:
        x0, x1 = w - x1, w - x0
    chosen: list[Box] = []
    for _ in range(NEGATIVE_ATTEMPTS if count else 0):
        if len(chosen) == count:
            break
        tile = preprocess.tile_side(shape, rng)
        if y1 - y0 < tile or x1 - x0 < tile:
            continue
        top, left = int(rng.integers(y0, y1 - tile + 1)), int(rng.integers(x0, x1 - tile + 1))
        if preprocess.breast_fraction(analysis, (top, left), tile) < NEGATIVE_MIN_BREAST:
            continue
        m = tile // 8
        around = (top - m, top + tile + m, left - m, left + tile + m)
        if any(_overlaps(around, box) for box in boxes):
            continue
        box = (top, top + tile, left, left + tile)
        if any(_overlaps(box, other) for other in chosen):
            continue
        chosen.append(box)
    return chosen
