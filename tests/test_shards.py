"""The shard schema: records written without TensorFlow read back exactly through TensorFlow's reader."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mammoseg.dataset import shards


def _example(rng: np.random.Generator, size: int, index: int) -> dict:
    image = rng.integers(0, 256, (size, size), dtype=np.uint8)
    mask = (image > 200).astype(np.uint8)  # 0/1 on input, stored as 0/255
    return {
        "image": image,
        "mask": mask,
        "example_id": f"P_{index:05d}_LEFT_CC",
        "kind": shards.KINDS[index % 3],
        "patient_id": f"P_{index:05d}",
        "abnormality_type": "mass",
        "pathology": "MALIGNANT",
        "positive_fraction": float(mask.mean()),
    }


def _reference_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.mark.parametrize("length", [0, 9, 1023, 1024, 1025, 4099, 70001])
def test_crc32c_matches_bitwise_definition(length: int) -> None:
    data = os.urandom(length)
    assert shards.crc32c(data) == _reference_crc32c(data)


def test_crc32c_check_value() -> None:
    assert shards.crc32c(b"123456789") == 0xE3069283


def test_round_trip_through_tensorflow(tmp_path) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    examples = [_example(rng, size, i) for i, size in enumerate([32, 32, 64, 128])]
    examples[1]["mask"][:] = 0  # empty masks share one cached PNG
    examples[1]["positive_fraction"] = 0.0
    path = tmp_path / "shards" / "train-00000.tfrecord"
    with shards.ShardWriter(path) as writer:
        for ex in examples:
            writer.write(shards.serialize_example(ex["image"], ex["mask"], **{k: v for k, v in ex.items() if k not in ("image", "mask")}))
    assert writer.count == len(examples)
    assert path.stat().st_size == writer.nbytes
    assert [p.name for p in path.parent.iterdir()] == [path.name]

    # TensorFlow's reader verifies both masked CRCs of every record: a wrong one raises DataLossError.
    records = list(tf.data.TFRecordDataset(str(path)).map(shards.parse_example))
    assert len(records) == len(examples)
    for got, ex in zip(records, examples):
        image = tf.io.decode_png(got["image"], channels=1).numpy()[..., 0]
        mask = tf.io.decode_png(got["mask"], channels=1).numpy()[..., 0]
        np.testing.assert_array_equal(image, ex["image"])
        np.testing.assert_array_equal(mask, ex["mask"] * 255)
        for name in shards.STRING_FEATURES:
            assert got[name].numpy().decode() == ex[name]
        assert got["positive_fraction"].numpy() == np.float32(ex["positive_fraction"])


def test_batched_parse(tmp_path) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(1)
    path = tmp_path / "val-00000.tfrecord"
    with shards.ShardWriter(path) as writer:
        for i in range(5):
            ex = _example(rng, 16, i)
            writer.write(shards.serialize_example(ex.pop("image"), ex.pop("mask"), **ex))
    batch = next(iter(tf.data.TFRecordDataset(str(path)).batch(5).map(shards.parse_example)))
    assert [k.decode() for k in batch["kind"].numpy()] == [shards.KINDS[i % 3] for i in range(5)]


def test_failed_write_leaves_nothing(tmp_path) -> None:
    path = tmp_path / "train-00000.tfrecord"
    with pytest.raises(RuntimeError, match="boom"):
        with shards.ShardWriter(path) as writer:
            writer.write(b"x" * 100)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_shard(tmp_path) -> None:
    path = tmp_path / "train-00000.tfrecord"
    with shards.ShardWriter(path) as writer:
        writer.write(b"first")
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with shards.ShardWriter(path) as writer:
            writer.write(b"second")
            raise KeyboardInterrupt
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    "image, mask, kind, message",
    [
        (np.zeros((8, 8), np.float32), np.zeros((8, 8), np.uint8), "whole", "uint8"),
        (np.zeros((8, 9), np.uint8), np.zeros((8, 9), np.uint8), "whole", "square"),
        (np.zeros((8, 8), np.uint8), np.zeros((4, 4), np.uint8), "whole", "mask shape"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), "crop", "kind"),
    ],
)
def test_serialize_rejects_bad_arrays(image, mask, kind, message) -> None:
    meta = dict(example_id="x", patient_id="p", abnormality_type="none", pathology="NONE", positive_fraction=0.0)
    with pytest.raises(ValueError, match=message):
        shards.serialize_example(image, mask, kind=kind, **meta)


def test_writer_side_does_not_import_tensorflow(tmp_path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from mammoseg.dataset import shards\n"
        "z = np.zeros((8, 8), np.uint8)\n"
        f"with shards.ShardWriter({str(tmp_path / 'a.tfrecord')!r}) as w:\n"
        "    w.write(shards.serialize_example(z, z, example_id='a', kind='whole', patient_id='p',\n"
        "            abnormality_type='none', pathology='NONE', positive_fraction=0.0))\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tensorflow_checks_the_crcs_it_reads(tmp_path) -> None:
    """Guards the round-trip test: a record with a wrong CRC must not read back."""
    import tensorflow as tf

    path = tmp_path / "bad.tfrecord"
    with shards.ShardWriter(path) as writer:
        writer.write(b"payload" * 200)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # last byte of the payload's masked CRC
    path.write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(path)))
