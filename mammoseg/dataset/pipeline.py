"""The tf.data input pipeline from prepared shards to normalised (image, mask) batches.

Built to keep an accelerator busy: shards are read in parallel, each record becomes its whole breast and
the tiles cut from it (`mammoseg.dataset.tiles`), examples stay uint8 until they are batched, and
normalisation and augmentation run once per batch as vectorised ops.
Augmentation with a seed is stateless, keyed by (seed, a per-batch random key), so the same seed gives
the same order and the same augmentations on every run, and still new ones in every epoch.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mammoseg.core.conventions import KINDS, SPLITS
from mammoseg.dataset import tiles
from mammoseg.dataset.shards import MANIFEST_COLUMNS, parse_example
from mammoseg.core.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import tensorflow as tf

logger = logging.getLogger("mammoseg.dataset")


MEAN = 127.0
SCALE = 255.0
"""The author's normalisation: x = (x_uint8 - 127) / 255."""

SHUFFLE_BUFFER_BYTES = 256 * 2**20
"""Memory the example shuffle buffer may hold (decoded image + mask); bounds it at large sizes."""


def normalize(image: np.ndarray) -> np.ndarray:
    """uint8 pixels to the model's float32 input scale."""
    return (np.asarray(image, dtype=np.float32) - MEAN) / SCALE


def denormalize(image: np.ndarray) -> np.ndarray:
    """Model-scale floats back to uint8 pixels (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * SCALE + MEAN), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Augmentation:
    """Random augmentation applied to whole batches; image and mask get the same geometry.

    flips: independent horizontal and vertical flips (the article's only augmentation).
    rot90: random transposition too, which with the flips covers all eight right-angle rotations
        and mirrorings.
    scale_jitter: standard deviation of a zoom factor s ~ N(1, scale_jitter): a random square of side
        S/s is cropped (or, for s < 1, the image is placed in a black square of that side) and
        resampled back to S x S, bilinearly for the image and nearest for the mask (which stays
        binary) on the same sampling grid.
    intensity_jitter: contrast factor 1 + U(-j, j) and brightness offset U(-j, j) on the normalised
        image, clipped to the normalised pixel range.

    How: every flip, right-angle rotation and zoom of a square is two separable passes, each a
    per-example resampling of rows (one row gather, or two and a linear blend for a zoomed image),
    with transposes between them: V^b T V^a, then T again or not (V: vertical flip, T: transpose;
    T V T is the horizontal flip). Row gathers copy whole rows and batch transposes are cheap, so
    the geometry costs a few passes over the batch on any device; without zoom it is exact and keeps
    the dtype (the pipeline runs it on uint8).
    """

    flips: bool = True
    rot90: bool = False
    scale_jitter: float = 0.0
    intensity_jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.scale_jitter < 0.5:
            raise ValueError(f"scale_jitter must be in [0, 0.5), got {self.scale_jitter}")
        if not 0.0 <= self.intensity_jitter < 1.0:
            raise ValueError(f"intensity_jitter must be in [0, 1), got {self.intensity_jitter}")

    @property
    def active(self) -> bool:
        return self.geometric or self.intensity_jitter > 0

    @property
    def geometric(self) -> bool:
        return self.flips or self.rot90 or self.scale_jitter > 0

    def __call__(self, image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Augment a normalised float batch [B,S,S,1] and its {0,1} mask; `seed` is a shape-[2] int
        tensor for the stateless random ops, so equal seeds give equal results on any device."""
        import tensorflow as tf

        if self.geometric:
            black = -MEAN / SCALE if self.scale_jitter > 0 else 0.0  # zoomed-out borders are black
            image, mask = self.warp(tf.squeeze(image, -1) - black, tf.squeeze(mask, -1), seed)
            image, mask = tf.expand_dims(image, -1) + black, tf.expand_dims(mask, -1)
        return self.jitter_intensity(image, seed), mask

    def warp(self, images: tf.Tensor, masks: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The geometry on [B,S,S] image planes and their masks, zero filling what lies outside.
        Masks keep their dtype and values; images too without scale_jitter, else they become float32."""
        import tensorflow as tf

        seeds = self._seeds(seed)
        batch, size = tf.shape(images)[0], tf.shape(images)[1]
        coins = tf.random.stateless_uniform([3, batch], seeds[0]) < 0.5
        a, b, c = coins[0], coins[1], coins[2]
        if not (self.flips or self.rot90):
            a, b = tf.zeros_like(a), tf.zeros_like(b)
        if not self.rot90:
            c = tf.ones_like(c)  # T V^b T V^a = horizontal^b vertical^a
        elif not self.flips:
            c = tf.logical_not(tf.math.logical_xor(a, b))  # T^c V^b T V^a is a pure rotation iff a+b+c is odd

        def flipped(coords: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
            return tf.where(flip[:, None], tf.reverse(coords, [1]), coords)

        def transpose(x: tf.Tensor, where: tf.Tensor | None = None) -> tf.Tensor:
            t = tf.transpose(x, [0, 2, 1])
            return t if where is None else tf.where(where[:, None, None], t, x)

        last = c if self.rot90 else None
        if self.scale_jitter == 0:
            # Exact: one tensor of images and masks, integer row indices.
            planes = tf.concat([images, tf.cast(masks, images.dtype)], axis=0)
            rows = tf.tile(tf.range(size)[None, :], [batch, 1])

            def twice(v: tf.Tensor) -> tf.Tensor:
                return tf.concat([v, v], axis=0)

            planes = transpose(_gather_rows(planes, twice(flipped(rows, a))))
            planes = _gather_rows(planes, twice(flipped(rows, b)))
            planes = transpose(planes, None if last is None else twice(last))
            return planes[:batch], tf.cast(planes[batch:], masks.dtype)

        scale = tf.random.stateless_normal([batch], seeds[1], mean=1.0, stddev=self.scale_jitter)
        side = tf.cast(size, tf.float32) / tf.clip_by_value(scale, 0.5, 2.0)  # crop side in pixels
        room = tf.cast(size, tf.float32) - side  # negative when zooming out
        start = tf.minimum(room, 0.0)[:, None] + tf.random.stateless_uniform([batch, 2], seeds[2]) * tf.abs(room)[:, None]
        step = side / tf.cast(size, tf.float32)
        images = tf.cast(images, tf.float32)
        for k, flip in ((0, a), (1, b)):
            coords = flipped(_pixel_centres(start[:, k], step, size), flip)
            images = transpose(_blend_rows(images, coords))
            masks = transpose(_gather_rows(masks, tf.cast(tf.round(coords), tf.int32), fill=True))
        if last is not None:  # undo the second transpose unless this example's rotation keeps it
            images, masks = transpose(images, ~last), transpose(masks, ~last)
        return images, masks

    def jitter_intensity(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Contrast and brightness jitter of a normalised float batch."""
        import tensorflow as tf

        if self.intensity_jitter == 0:
            return image
        j = self.intensity_jitter
        gain_offset = tf.random.stateless_uniform([tf.shape(image)[0], 1, 1, 2], self._seeds(seed)[3], minval=-j, maxval=j)
        image = image * (1.0 + gain_offset[..., :1]) + gain_offset[..., 1:]
        return tf.clip_by_value(image, -MEAN / SCALE, (255.0 - MEAN) / SCALE)

    @staticmethod
    def _seeds(seed: tf.Tensor) -> tf.Tensor:
        import tensorflow as tf

        return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)


def _pixel_centres(start: tf.Tensor, step: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Source coordinates [N,S] of the output pixel centres of a crop [start, start + S*step)."""
    import tensorflow as tf

    i = tf.cast(tf.range(size), tf.float32)[None, :]
    return start[:, None] + (i + 0.5) * step[:, None] - 0.5


def _gather_rows(x: tf.Tensor, rows: tf.Tensor, fill: bool = False) -> tf.Tensor:
    """Rows `rows` [N,S] of each plane of x [N,S,S]; with `fill`, rows outside the plane are zeros."""
    import tensorflow as tf

    if not fill:
        return tf.gather(x, rows, axis=1, batch_dims=1)
    size = tf.shape(x)[1]
    inside = tf.cast((rows >= 0) & (rows < size), x.dtype)
    return tf.gather(x, tf.clip_by_value(rows, 0, size - 1), axis=1, batch_dims=1) * inside[:, :, None]


def _blend_rows(x: tf.Tensor, coords: tf.Tensor) -> tf.Tensor:
    """Rows of each float plane of x [N,S,S] at fractional coords [N,S]: the two neighbouring rows
    blended linearly, rows outside the plane counting as zeros (their weight is zero)."""
    import tensorflow as tf

    size = tf.shape(x)[1]
    low = tf.floor(coords)
    frac = coords - low
    low = tf.cast(low, tf.int32)

    def weighted(rows: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
        weight = tf.where((rows >= 0) & (rows < size), weight, 0.0)
        return tf.gather(x, tf.clip_by_value(rows, 0, size - 1), axis=1, batch_dims=1) * weight[:, :, None]

    return weighted(low, 1.0 - frac) + weighted(low + 1, frac)


# --------------------------------------------------------------------------- dataset files


def read_dataset_info(dataset_dir: str | Path) -> dict:
    """dataset.json of a prepared dataset; a clear error when the folder isn't one."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise InputError(dataset_dir, "no such dataset folder (create one with `mammoseg prepare`)")
    path = dataset_dir / "dataset.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "missing: not a prepared dataset (create one with `mammoseg prepare`)") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable ({exc})") from exc
    if not isinstance(info, dict) or not isinstance(info.get("image_size"), int):
        raise InputError(path, "no integer image_size: not a dataset written by `mammoseg prepare`")
    return info


def read_manifest(dataset_dir: str | Path) -> pd.DataFrame:
    """manifest.csv of a prepared dataset: one row per example (see MANIFEST_COLUMNS)."""
    import pandas as pd

    path = Path(dataset_dir) / "manifest.csv"
    try:
        frame = pd.read_csv(path, dtype={"example_id": str, "patient_id": str}, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(path, "missing: not a prepared dataset (create one with `mammoseg prepare`)") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable ({exc})") from exc
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(path, f"missing columns {', '.join(missing)}")
    return frame


def shard_files(dataset_dir: str | Path, split: str) -> list[Path]:
    """The split's shard files in name order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise InputError(dataset_dir, "no such dataset folder (create one with `mammoseg prepare`)")
    files = sorted((dataset_dir / "shards").glob(f"{split}-*.tfrecord"))
    if not files:
        raise InputError(dataset_dir / "shards", f"no {split} shards ({split}-*.tfrecord): the split is empty or the folder is not a prepared dataset")
    return files


# --------------------------------------------------------------------------- the pipeline


def make_dataset(
    dataset_dir: str | Path,
    split: str,
    *,
    batch_size: int,
    kinds: list[str] | tuple[str, ...] | None = None,
    shuffle: bool = False,
    augment: Augmentation | None = None,
    repeat: bool = False,
    cache: bool = False,
    random_tiles: bool = False,
    seed: int | None = None,
    deterministic: bool = False,
    with_metadata: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of one split: (image float32 [B,S,S,1] normalised, mask float32 [B,S,S,1] in {0,1}),
    or with_metadata dicts {"image", "mask", "example_id", "kind"} without augmentation.

    kinds: keep only these example kinds (of `shards.KINDS`); None keeps all.
    cache: keep the decoded records in memory after the first pass (tiles are still cut anew).
    random_tiles: cut new tiles from every record each pass, as training does; else the fixed ones.
    seed + deterministic=True: the same order and augmentations on every run (parallel stages keep
    their order; costs some throughput). deterministic without a seed uses seed 0.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if kinds is not None:
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {list(kinds)}")
    info = read_dataset_info(dataset_dir)
    files = shard_files(dataset_dir, split)
    _keep_tensorflow_off_accelerators()
    size = info["image_size"]
    if deterministic and seed is None:
        seed = 0
    autotune = tf.data.AUTOTUNE
    ds = _read_examples(files, size, kinds, shuffle=shuffle, seed=seed, deterministic=deterministic,
                        with_metadata=with_metadata, random_tiles=random_tiles, cache=cache)
    if shuffle:
        buffer = int(np.clip(SHUFFLE_BUFFER_BYTES // (2 * size * size), 4 * batch_size, 4096))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=autotune, deterministic=deterministic)
    if with_metadata:
        ds = ds.map(_metadata_to_float, num_parallel_calls=autotune, deterministic=deterministic)
    elif augment is not None and augment.active:
        ds = _augment_batches(ds, augment, seed, deterministic)
    else:
        ds = ds.map(lambda batch: _to_float(batch["image"], batch["mask"]), num_parallel_calls=autotune, deterministic=deterministic)
    return _finish(ds, deterministic)


def _read_examples(
    files: list[Path], size: int, kinds: list[str] | tuple[str, ...] | None, *, shuffle: bool, seed: int | None,
    deterministic: bool, with_metadata: bool, random_tiles: bool, cache: bool,
) -> tf.data.Dataset:
    """The shards' examples as uint8 {"image", "mask"} [S,S,1] (and "example_id", "kind" with
    metadata), read in parallel: each record's whole breast and the tiles cut from it
    (`mammoseg.dataset.tiles`), random ones with `random_tiles`; kinds other than `kinds` are
    dropped, and tiles are not cut when no tile kind is wanted. `cache` keeps the decoded records."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=max(1, min(len(files), os.cpu_count() or 1)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    ds = ds.map(lambda record: tiles.decode_record(parse_example(record), size),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if cache:
        ds = ds.cache()
    cut = kinds is None or bool({"positive", "negative"} & set(kinds))
    if random_tiles and cut:
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        base = tf.constant(0 if seed is None else seed, tf.int64)
        ds = tf.data.Dataset.zip((ds, keys)).map(
            lambda record, key: tiles.record_examples(record, size, tiles=True, seed=tf.stack([base, key])),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    else:
        ds = ds.map(lambda record: tiles.record_examples(record, size, tiles=cut),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    ds = ds.unbatch()
    if kinds is not None and set(kinds) != set(KINDS):
        wanted = tf.constant(list(kinds))
        ds = ds.filter(lambda ex: tf.reduce_any(tf.equal(ex["kind"], wanted)))
    if with_metadata:
        return ds
    return ds.map(lambda ex: {"image": ex["image"], "mask": ex["mask"]})


def _to_float(image: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """uint8 batches to the model's input: normalised images, {0,1} float masks."""
    import tensorflow as tf

    return (tf.cast(image, tf.float32) - MEAN) / SCALE, tf.cast(mask > 127, tf.float32)


def _metadata_to_float(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    image, mask = _to_float(batch["image"], batch["mask"])
    return dict(batch, image=image, mask=mask)


def _augment_batches(ds: tf.data.Dataset, augment: Augmentation, seed: int | None, deterministic: bool) -> tf.data.Dataset:
    """uint8 batches to augmented model input, each batch keyed by (seed, a random key drawn anew
    every epoch)."""
    import tensorflow as tf

    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    base = tf.constant(0 if seed is None else seed, tf.int64)

    def finish_augmented(batch: dict[str, tf.Tensor], key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # As augment(*_to_float(...), seed), but the geometry runs on uint8 (a quarter of the
        # bytes of float32), where black is zero.
        seed = tf.stack([base, key])
        image, mask = batch["image"], batch["mask"]
        if augment.geometric:
            image, mask = augment.warp(tf.squeeze(image, -1), tf.squeeze(mask, -1), seed)
            image, mask = tf.expand_dims(image, -1), tf.expand_dims(mask, -1)
        image, mask = _to_float(image, mask)
        return augment.jitter_intensity(image, seed), mask

    return tf.data.Dataset.zip((ds, keys)).map(finish_augmented, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def resize_batches(ds: tf.data.Dataset, size: int, dataset_size: int, with_metadata: bool = False) -> tf.data.Dataset:
    """Bring a dataset's batches to a model's input size: bilinear for images, nearest for masks (stays binary)."""
    if size == dataset_size:
        return ds
    import tensorflow as tf

    def resize(image: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.image.resize(image, [size, size]), tf.image.resize(mask, [size, size], method="nearest")

    if with_metadata:
        def resize_dict(batch: dict) -> dict:
            batch = dict(batch)
            batch["image"], batch["mask"] = resize(batch["image"], batch["mask"])
            return batch

        return ds.map(resize_dict)
    return ds.map(resize)


def _keep_tensorflow_off_accelerators() -> None:
    """Under the JAX or torch backend TensorFlow only feeds data: left alone it would claim the GPUs'
    memory that the model needs. Must run before TensorFlow first touches a device; later it can't."""
    import keras
    import tensorflow as tf

    if keras.backend.backend() == "tensorflow":
        return
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        logger.debug("TensorFlow devices already initialised; cannot hide GPUs from the input pipeline")


def _finish(ds: tf.data.Dataset, deterministic: bool) -> tf.data.Dataset:
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
