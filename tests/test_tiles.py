"""Tiles cut in the pipeline: the sampling convention, the fixed evaluation tiles, and training tiles
that are new every epoch, repeatable for a seed, and of the kinds the fixed list promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from mammoseg.dataset import pipeline, tiles  # noqa: E402


def test_a_box_on_the_pixel_grid_is_cut_exactly_and_background_fills_what_lies_outside() -> None:
    image = np.arange(48 * 40, dtype=np.int64).reshape(48, 40) % 251
    image = image.astype(np.uint8)
    mask = np.zeros_like(image)
    mask[10:20, 5:15] = 255
    boxes = tf.constant([[3.0, 19.0, 2.0, 18.0], [-8.0, 8.0, 30.0, 46.0]])
    out, out_mask = (t.numpy()[..., 0] for t in tiles.cut_tiles(tf.constant(image), tf.constant(mask), boxes, 16))
    np.testing.assert_array_equal(out[0], image[3:19, 2:18])
    np.testing.assert_array_equal(out_mask[0], mask[3:19, 2:18])
    np.testing.assert_array_equal(out[1][8:, :10], image[0:8, 30:40])
    assert not out[1][:8].any() and not out[1][:, 10:].any()


def test_a_box_twice_the_size_samples_between_pixel_pairs() -> None:
    image = np.tile(np.arange(0, 64, 2, dtype=np.uint8), (32, 1))  # columns 0, 2, 4, ...
    out, _ = tiles.cut_tiles(tf.constant(image), tf.constant(np.zeros_like(image)), tf.constant([[0.0, 32.0, 0.0, 32.0]]), 16)
    np.testing.assert_array_equal(out.numpy()[0, 0, :, 0], np.arange(1, 64, 4))  # the mean of each pair


def _train_epoch(dataset: Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    ds = pipeline.make_dataset(dataset, "train", batch_size=64, random_tiles=True, seed=seed, deterministic=True)
    images, masks = zip(*ds.as_numpy_iterator())
    return np.concatenate(images), np.concatenate(masks)


def test_training_tiles_are_new_every_epoch_and_repeat_for_a_seed(tiny_dataset: Path) -> None:
    manifest = pipeline.read_manifest(tiny_dataset)
    first, first_masks = _train_epoch(tiny_dataset, 0)
    again, again_masks = _train_epoch(tiny_dataset, 0)
    other, _ = _train_epoch(tiny_dataset, 1)
    assert len(first) == int((manifest["split"] == "train").sum())  # as many examples as the fixed list
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first_masks, again_masks)
    assert not np.array_equal(first, other)


def test_random_tiles_keep_their_kinds(tiny_dataset: Path) -> None:
    """Positives show abnormal pixels; negatives, drawn from the pool clear of every abnormality and
    moved by at most 1/8 of their side, almost never do."""
    ds = pipeline._read_examples(pipeline.shard_files(tiny_dataset, "train"), 64, ["positive", "negative"], shuffle=False,
                                 seed=3, deterministic=True, with_metadata=True, random_tiles=True, cache=False)
    positive, negative = [], []
    for ex in ds.as_numpy_iterator():
        (positive if ex["kind"] == b"positive" else negative).append(np.count_nonzero(ex["mask"]) / ex["mask"].size)
    assert positive and negative
    assert np.mean(np.array(positive) > 0) >= 0.9
    assert np.mean(np.array(negative) > 0.01) <= 0.1


def test_evaluation_tiles_are_the_fixed_list(tiny_dataset: Path) -> None:
    def ids_and_pixels() -> tuple[list[str], np.ndarray]:
        batches = list(pipeline.make_dataset(tiny_dataset, "val", batch_size=8, with_metadata=True, deterministic=True).as_numpy_iterator())
        return [e.decode() for b in batches for e in b["example_id"]], np.concatenate([b["image"] for b in batches])

    manifest = pipeline.read_manifest(tiny_dataset)
    ids, pixels = ids_and_pixels()
    assert ids == list(manifest.loc[manifest["split"] == "val", "example_id"])
    np.testing.assert_array_equal(pixels, ids_and_pixels()[1])
