"""The input pipeline on tiny shards written with the shard writer: shapes, ranges, alignment, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mammoseg.dataset import pipeline, shards
from mammoseg.core.errors import InputError

SIZE = 32
THRESHOLD = 160


def _image(rng: np.random.Generator, index: int) -> np.ndarray:
    """A smooth random image, so that bilinear resampling moves few pixels across the mask threshold,
    with a unique value at a corner: asymmetric, so every flip is visible."""
    coarse = rng.integers(0, 256, (SIZE // 8, SIZE // 8)).astype(np.float32)
    image = np.kron(coarse, np.ones((8, 8), np.float32)).astype(np.uint8)
    image[0, 0] = 255
    image[-1, -1] = index % 100
    return image


def write_dataset(root: Path, counts: dict[str, int], shards_per_split: int = 2) -> Path:
    """A prepared-dataset folder whose masks are (image > THRESHOLD)."""
    rng = np.random.default_rng(0)
    rows = []
    (root / "shards").mkdir(parents=True)
    index = 0
    for split, count in counts.items():
        for shard in range(shards_per_split):
            name = f"shards/{split}-{shard:05d}.tfrecord"
            with shards.ShardWriter(root / name) as writer:
                for _ in range(shard, count, shards_per_split):
                    image = _image(rng, index)
                    mask = image > THRESHOLD
                    kind = shards.KINDS[index % 3]
                    meta = dict(
                        example_id=f"ex{index:04d}", kind=kind, patient_id=f"P_{index // 2:05d}",
                        abnormality_type="mass", pathology="BENIGN", positive_fraction=float(mask.mean()),
                    )  # fmt: skip
                    writer.write(shards.serialize_example(image, mask.astype(np.uint8), **meta))
                    rows.append(dict(meta, source_image="x.dcm", split=split, shard=name, height=SIZE, width=SIZE))
                    index += 1
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "dataset.json").write_text(json.dumps({"format_version": 1, "image_size": SIZE, "counts": counts}))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("prepared"), {"train": 24, "val": 9})


def _all(ds) -> tuple[np.ndarray, np.ndarray]:
    images, masks = zip(*[(i.numpy(), m.numpy()) for i, m in ds])
    return np.concatenate(images), np.concatenate(masks)


def test_shapes_dtypes_ranges(dataset: Path) -> None:
    ds = pipeline.make_dataset(dataset, "train", batch_size=5)
    image, mask = next(iter(ds))
    assert image.shape == (5, SIZE, SIZE, 1) and mask.shape == (5, SIZE, SIZE, 1)
    assert image.dtype.name == "float32" and mask.dtype.name == "float32"
    images, masks = _all(ds)
    assert len(images) == 24
    assert images.min() >= -127 / 255 and images.max() <= 128 / 255
    assert set(np.unique(masks)) <= {0.0, 1.0}
    # Unaugmented: the mask is exactly the thresholded image.
    np.testing.assert_array_equal(masks, (pipeline.denormalize(images) > THRESHOLD).astype(np.float32))


def test_normalize_round_trip() -> None:
    pixels = np.arange(256, dtype=np.uint8)
    np.testing.assert_allclose(pipeline.normalize(pixels), (pixels.astype(np.float32) - 127) / 255)
    np.testing.assert_array_equal(pipeline.denormalize(pipeline.normalize(pixels)), pixels)


def test_drop_remainder_and_repeat(dataset: Path) -> None:
    ds = pipeline.make_dataset(dataset, "val", batch_size=4, drop_remainder=True)
    assert [int(i.shape[0]) for i, _ in ds] == [4, 4]
    ds = pipeline.make_dataset(dataset, "val", batch_size=4, repeat=True, shuffle=True, cache=True)
    assert len(list(ds.take(7))) == 7


def test_kind_filter(dataset: Path) -> None:
    manifest = pipeline.read_manifest(dataset)
    ds = pipeline.make_dataset(dataset, "train", batch_size=4, kinds=["positive", "negative"], with_metadata=True)
    kinds = [k.decode() for batch in ds for k in batch["kind"].numpy()]
    ids = sorted(e.decode() for batch in ds for e in batch["example_id"].numpy())
    expected = manifest[(manifest.split == "train") & manifest.kind.isin(["positive", "negative"])]
    assert set(kinds) == {"positive", "negative"}
    assert ids == sorted(expected.example_id)


def test_with_metadata(dataset: Path) -> None:
    batch = next(iter(pipeline.make_dataset(dataset, "val", batch_size=3, with_metadata=True, augment=pipeline.Augmentation())))
    assert set(batch) == {"image", "mask", "example_id", "kind"}
    assert batch["example_id"].dtype.name == "string" and batch["kind"].shape == (3,)
    # Metadata batches are never augmented: the masks still match the images exactly.
    np.testing.assert_array_equal(batch["mask"].numpy(), pipeline.denormalize(batch["image"].numpy()) > THRESHOLD)


def test_flips_keep_image_and_mask_aligned(dataset: Path) -> None:
    ds = pipeline.make_dataset(dataset, "train", batch_size=8, shuffle=True, augment=pipeline.Augmentation(), seed=3,
                               deterministic=True)
    images, masks = _all(ds)
    assert set(np.unique(masks)) <= {0.0, 1.0}
    np.testing.assert_array_equal(masks, pipeline.denormalize(images) > THRESHOLD)
    # The corner marker moved: some examples really were flipped.
    assert np.mean(pipeline.denormalize(images)[:, 0, 0, 0] == 255) < 0.95


def test_determinism_with_a_seed(dataset: Path) -> None:
    augment = pipeline.Augmentation()

    def epochs(seed: int) -> list[np.ndarray]:
        ds = pipeline.make_dataset(dataset, "train", batch_size=6, shuffle=True, augment=augment, seed=seed, deterministic=True)
        return [_all(ds)[0] for _ in range(2)]

    first, again, other = epochs(7), epochs(7), epochs(8)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1]), "each epoch must be shuffled and augmented anew"
    assert not np.array_equal(first[0], other[0])


def test_missing_dataset_and_split(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(InputError, match="no such dataset folder"):
        pipeline.make_dataset(tmp_path / "nowhere", "train", batch_size=2)
    with pytest.raises(InputError, match="no test shards"):
        pipeline.make_dataset(dataset, "test", batch_size=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="dataset.json"):
        pipeline.make_dataset(tmp_path / "empty", "train", batch_size=2)
    with pytest.raises(InputError, match="manifest.csv"):
        pipeline.read_manifest(tmp_path / "empty")


def test_bad_arguments(dataset: Path) -> None:
    with pytest.raises(ValueError, match="kinds"):
        pipeline.make_dataset(dataset, "train", batch_size=2, kinds=["crop"])
    with pytest.raises(ValueError, match="split"):
        pipeline.make_dataset(dataset, "training", batch_size=2)


def test_flips_cover_the_four_maps_and_only_those() -> None:
    import tensorflow as tf

    base = np.arange(16, dtype=np.float32).reshape(4, 4)
    maps = {"identity": base, "flip_h": base[:, ::-1], "flip_v": base[::-1], "rot180": np.rot90(base, 2)}
    planes = tf.constant(np.repeat(base[None], 64, axis=0))
    images, masks = pipeline.Augmentation().warp(planes, tf.cast(planes, tf.uint8), tf.constant([1, 2]))
    images = images.numpy()
    assert masks.dtype == tf.uint8
    np.testing.assert_array_equal(images, masks.numpy())
    seen = {name for o in images for name, m in maps.items() if np.array_equal(o, m)}
    assert len(seen) == len({tuple(o.ravel()) for o in images})  # every output is a known map
    assert seen == set(maps)
    again, _ = pipeline.Augmentation().warp(planes, tf.cast(planes, tf.uint8), tf.constant([1, 2]))
    np.testing.assert_array_equal(again.numpy(), images)
