"""The examples of one record, cut inside the tf.data pipeline: the whole breast and its tiles.

A record holds the breast at working resolution (`shards.BreastView`), where a tile of the author's
size is S pixels. Evaluation cuts the record's fixed tiles, seeded by `prepare`, so metrics compare
across runs. Training cuts new ones every epoch, as many of each kind as the fixed list has:
positives centred on the abnormalities in turn, from a random one, shifted at random by up to 80% of
the room the tile leaves around it (as `prepare` places the fixed ones); negatives drawn without
replacement from the record's pool of tiles clear of every abnormality, shifted by up to
`NEGATIVE_SHIFT` of their side. Every training tile's side is scaled by N(1, TILE_SCALE_JITTER),
the author's jitter.
A tile is resampled to S x S at its pixel centres, bilinearly (the mask nearest, so it stays
binary): its scale is 1 give or take the jitter, so no area averaging is needed. What lies past the
stored breast reads as background.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mammoseg.dataset.preprocess import TILE_SCALE_JITTER
from mammoseg.dataset.shards import TILE_SEPARATOR

if TYPE_CHECKING:
    import tensorflow as tf

NEGATIVE_SHIFT = 0.125
"""A training negative moves from its pool tile by up to this fraction of its side in each direction
(the pool keeps a margin of 1/8 tile from every abnormality; a tile that still reaches one is
labelled by its mask, which is cut with it)."""


def decode_record(ex: dict[str, tf.Tensor], size: int) -> dict[str, tf.Tensor]:
    """A parsed record's whole breast (uint8 [S,S,1] image and mask) and its breast view: the
    working-resolution image and full mask [h,w], and the tile lists as float [n,4] boxes (y0, y1, x0,
    x1). A record without a view (a normal image) gets empty ones."""
    import tensorflow as tf

    def boxes(name: str) -> tf.Tensor:
        return tf.reshape(tf.io.decode_raw(ex[name], tf.float32, little_endian=True), [-1, 4])

    shape = tf.concat([tf.io.decode_raw(ex["breast_shape"], tf.int32, little_endian=True), [0, 0]], 0)[:2]
    box = tf.concat([tf.io.decode_raw(ex["breast_mask_box"], tf.int32, little_endian=True), [0, 0, 0, 0]], 0)[:4]
    part = tf.reshape(tf.io.decode_raw(ex["breast_mask"], tf.uint8), [box[1] - box[0], box[3] - box[2]])
    tile_boxes = boxes("tile_boxes")
    n = tf.shape(tile_boxes)[0]
    return {
        "image": tf.ensure_shape(tf.io.decode_png(ex["image"], channels=1), [size, size, 1]),
        "mask": tf.ensure_shape(tf.io.decode_png(ex["mask"], channels=1), [size, size, 1]),
        "example_id": ex["example_id"],
        "kind": ex["kind"],
        "breast": tf.reshape(tf.io.decode_raw(ex["breast"], tf.uint8), shape),
        "breast_mask": tf.pad(part, [[box[0], shape[0] - box[1]], [box[2], shape[1] - box[3]]]),
        "tile_ids": tf.strings.split(ex["tile_ids"], TILE_SEPARATOR)[:n],
        "tile_kinds": tf.strings.split(ex["tile_kinds"], TILE_SEPARATOR)[:n],
        "tile_boxes": tile_boxes,
        "abnormality_boxes": boxes("abnormality_boxes"),
        "negative_pool": boxes("negative_pool"),
    }


def record_examples(record: dict[str, tf.Tensor], size: int, *, tiles: bool, seed: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
    """The examples of a decoded record, stacked: uint8 "image", "mask" [n,S,S,1], "example_id",
    "kind" [n]. The whole breast first, then (with `tiles`) its tiles: the fixed ones, or with a
    `seed` (a shape-[2] int64 tensor) random ones as described in the module docstring."""
    import tensorflow as tf

    whole = {"image": record["image"][None], "mask": record["mask"][None],
             "example_id": record["example_id"][None], "kind": record["kind"][None]}
    if not tiles:
        return whole
    boxes = record["tile_boxes"] if seed is None else random_tiles(record, seed, size)
    image, mask = tf.cond(
        tf.shape(boxes)[0] > 0,  # a record without tiles has no breast view to cut from
        lambda: cut_tiles(record["breast"], record["breast_mask"], boxes, size),
        lambda: (tf.zeros([0, size, size, 1], tf.uint8), tf.zeros([0, size, size, 1], tf.uint8)),
    )
    cut = {"image": image, "mask": mask, "example_id": record["tile_ids"], "kind": record["tile_kinds"]}
    return {key: tf.concat([whole[key], cut[key]], 0) for key in whole}


def random_tiles(record: dict[str, tf.Tensor], seed: tf.Tensor, size: int) -> tf.Tensor:
    """Boxes [n,4] of a record's training tiles: as many positives and negatives as its fixed list, in
    the same order (positives first)."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=6)
    kinds = record["tile_kinds"]
    n_pos = tf.reduce_sum(tf.cast(tf.equal(kinds, "positive"), tf.int32))
    n_neg = tf.shape(kinds)[0] - n_pos
    height, width = (tf.cast(tf.shape(record["breast"])[k], tf.float32) for k in (0, 1))

    def jittered(n: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
        return tf.clip_by_value(tf.random.stateless_normal([n], key, mean=1.0, stddev=TILE_SCALE_JITTER), 0.5, 2.0)

    def square(top: tf.Tensor, left: tf.Tensor, side: tf.Tensor) -> tf.Tensor:
        return tf.stack([top, top + side, left, left + side], axis=1)

    abnormal = record["abnormality_boxes"]
    n_abnormal = tf.maximum(tf.shape(abnormal)[0], 1)
    first = tf.random.stateless_uniform([], seeds[0], maxval=n_abnormal, dtype=tf.int32)
    around = tf.gather(abnormal, (tf.range(n_pos) + first) % n_abnormal)
    side = size * jittered(n_pos, seeds[1])
    shift = tf.random.stateless_uniform([n_pos, 2], seeds[2], minval=-0.8, maxval=0.8)

    def start(low: tf.Tensor, high: tf.Tensor, u: tf.Tensor, extent: tf.Tensor) -> tf.Tensor:
        slack = tf.maximum(0.0, (side - (high - low)) / 2)
        room = extent - side
        return tf.clip_by_value((low + high) / 2 + u * slack - side / 2, tf.minimum(room, 0.0), tf.maximum(room, 0.0))

    positives = square(start(around[:, 0], around[:, 1], shift[:, 0], height),
                       start(around[:, 2], around[:, 3], shift[:, 1], width), side)

    pool = record["negative_pool"]
    n_pool = tf.maximum(tf.shape(pool)[0], 1)
    order = tf.argsort(tf.random.stateless_uniform([tf.shape(pool)[0]], seeds[3]))
    chosen = tf.gather(pool, tf.gather(order, tf.range(n_neg) % n_pool))
    side = (chosen[:, 1] - chosen[:, 0]) * jittered(n_neg, seeds[4])
    move = tf.random.stateless_uniform([n_neg, 2], seeds[5], minval=-NEGATIVE_SHIFT, maxval=NEGATIVE_SHIFT) * side[:, None]
    centre_y, centre_x = (chosen[:, 0] + chosen[:, 1]) / 2, (chosen[:, 2] + chosen[:, 3]) / 2
    negatives = square(centre_y + move[:, 0] - side / 2, centre_x + move[:, 1] - side / 2, side)
    return tf.concat([positives, negatives], 0)


def cut_tiles(image: tf.Tensor, mask: tf.Tensor, boxes: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Square `boxes` [n,4] (y0, y1, x0, x1) of a uint8 [h,w] image and mask, resampled to uint8
    [n,S,S,1] at the output pixels' centres: bilinear for the image, nearest for the mask."""
    import tensorflow as tf

    extent = tf.cast(tf.maximum(tf.shape(image) - 1, 1), tf.float32)

    def centres(low: tf.Tensor, high: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
        step = (high - low) / size  # output pixel i samples low + (i + 0.5) * step - 0.5
        return (low + 0.5 * step - 0.5) / extent[k], (low + (size - 0.5) * step - 0.5) / extent[k]

    (y_first, y_last), (x_first, x_last) = centres(boxes[:, 0], boxes[:, 1], 0), centres(boxes[:, 2], boxes[:, 3], 1)
    crop = tf.stack([y_first, x_first, y_last, x_last], axis=1)
    index = tf.zeros([tf.shape(boxes)[0]], tf.int32)

    def resample(plane: tf.Tensor, method: str) -> tf.Tensor:
        out = tf.image.crop_and_resize(plane[None, :, :, None], crop, index, [size, size],  # uint8 in, float32 out
                                       method=method, extrapolation_value=0.0)
        return tf.cast(tf.round(out), tf.uint8)

    return resample(image, "bilinear"), resample(mask, "nearest")
