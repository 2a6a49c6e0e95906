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
    """Random independent horizontal and vertical flips of whole batches, image and mask alike: the
    author's augmentation. His other one, scale-jittered crops, is the tile cutting of
    `mammoseg.dataset.tiles` (docs/design.md §2).

    How: T V^b T V^a (V: vertical flip, T: transpose; T V T is the horizontal flip), each V a
    per-example row gather and each T a batch transpose: whole-row copies, exact, on uint8.
    """

    flips: bool = True

    def warp(self, images: tf.Tensor, masks: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The flips of [B,S,S] image planes and their masks (dtypes kept). `seed` is a shape-[2] int
        tensor for the stateless random ops, so equal seeds give equal flips on any device."""
        import tensorflow as tf

        key = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=1)[0]
        batch, size = tf.shape(images)[0], tf.shape(images)[1]
        vertical, horizontal = tf.unstack(tf.random.stateless_uniform([2, batch], key) < 0.5)
        planes = tf.concat([images, tf.cast(masks, images.dtype)], axis=0)  # one gather for both
        rows = tf.tile(tf.range(size)[None, :], [batch, 1])

        def flipped_rows(flip: tf.Tensor) -> tf.Tensor:
            coords = tf.where(flip[:, None], tf.reverse(rows, [1]), rows)
            return tf.concat([coords, coords], axis=0)

        def transpose(x: tf.Tensor) -> tf.Tensor:
            return tf.transpose(x, [0, 2, 1])

        planes = transpose(tf.gather(planes, flipped_rows(vertical), axis=1, batch_dims=1))
        planes = transpose(tf.gather(planes, flipped_rows(horizontal), axis=1, batch_dims=1))
        return planes[:batch], tf.cast(planes[batch:], masks.dtype)


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
    elif augment is not None and augment.flips:
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
    every epoch); the flips run on uint8, a quarter of the bytes of float32."""
    import tensorflow as tf

    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    base = tf.constant(0 if seed is None else seed, tf.int64)

    def finish_augmented(batch: dict[str, tf.Tensor], key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, mask = augment.warp(tf.squeeze(batch["image"], -1), tf.squeeze(batch["mask"], -1), tf.stack([base, key]))
        return _to_float(tf.expand_dims(image, -1), tf.expand_dims(mask, -1))

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
