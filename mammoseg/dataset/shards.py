"""TFRecord shards of prepared mammograms: the one schema that `prepare` writes and the pipeline reads.

One record per mammogram: the whole breast at the network's size, and for an image with
abnormalities the breast again at working resolution (`BreastView`), from which the pipeline cuts
its tiles.

The writer side needs no TensorFlow: `prepare` runs in worker processes where importing TF would cost
seconds and hundreds of MB each. So records are framed here (length, masked CRC32C, data, masked
CRC32C, as TensorFlow's reader checks them) and the `tf.train.Example` protocol buffer is encoded by
hand; `parse_example` is the TensorFlow side of the same schema.
"""

from __future__ import annotations

import contextlib
import functools
import struct
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

import google_crc32c
import numpy as np

from mammoseg.core.atomic import atomic_path
from mammoseg.core.conventions import KINDS
from mammoseg.dataset.resize import foreground_box

if TYPE_CHECKING:
    import tensorflow as tf

STRING_FEATURES = ("example_id", "kind", "patient_id", "abnormality_type", "pathology")
"""String metadata stored with every example, utf-8 encoded."""

MANIFEST_COLUMNS = (
    "example_id", "patient_id", "source_image", "kind", "abnormality_type", "pathology", "split",
    "positive_fraction", "shard", "height", "width",
)  # fmt: skip
"""Columns of `manifest.csv`, one row per example (a record's whole breast and its fixed evaluation
tiles): what the pipeline finds without reading a shard."""

PNG_COMPRESSION = 1
"""zlib level for the stored PNGs. With the "up" row filter and zlib's run-length strategy (below) a
640x640 breast encodes in ~3 ms instead of ~7 ms (level 1 with libpng's adaptive filters), into a
smaller file that TensorFlow also decodes faster."""


# --------------------------------------------------------------------------- CRC32C (Castagnoli)

_MASK_DELTA = 0xA282EAD8


def crc32c(data: bytes) -> int:
    """CRC32C of `data` (init and final xor 0xFFFFFFFF), as TFRecord framing uses it.

    google-crc32c runs the hardware CRC instruction: ~0.05 ms for a 185 kB record against ~1 ms for
    a vectorised numpy table version (benchmarks/RESULTS.md).
    """
    return google_crc32c.value(data)


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotated and offset so that CRCs of CRCs stay well distributed."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(payload: bytes) -> bytes:
    """One TFRecord: u64 length, masked CRC of the length, payload, masked CRC of the payload."""
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc32c(length)) + payload + struct.pack("<I", masked_crc32c(payload))


# --------------------------------------------------------------------------- tf.train.Example encoding


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(value: bytes) -> bytes:
    return _field(1, _field(1, value))  # Feature.bytes_list { value }


def _float_feature(value: float) -> bytes:
    return _field(2, _field(1, struct.pack("<f", value)))  # Feature.float_list { packed value }


def encode_png(array: np.ndarray) -> bytes:
    """Lossless 8-bit grayscale PNG (see `PNG_COMPRESSION`)."""
    import cv2

    params = [
        cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION,
        cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
        cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
    ]  # fmt: skip
    ok, png = cv2.imencode(".png", array, params)
    if not ok:
        raise ValueError(f"PNG encoding failed for an array of shape {array.shape}")
    return png.tobytes()


@functools.cache
def _empty_mask_png(size: int) -> bytes:
    """The PNG of an all-zero mask, encoded once per size: every negative tile has one."""
    return encode_png(np.zeros((size, size), dtype=np.uint8))


@dataclass(frozen=True)
class BreastView:
    """The breast at working resolution and the tiles the pipeline cuts from it.

    Boxes are (y0, y1, x0, x1) in the image's pixels (floats; they may reach past its edges, which
    read as background). The mask is stored as the part inside its bounding box only.
    """

    image: np.ndarray  # uint8 [h, w]
    mask: np.ndarray  # [h, w], non-zero = abnormal
    abnormality_boxes: list[tuple[float, float, float, float]]  # random positive tiles are centred near these
    negative_pool: list[tuple[float, float, float, float]]  # random negative tiles are drawn from these
    tile_ids: list[str]  # the fixed evaluation tiles: example ids, kinds, boxes
    tile_kinds: list[str]
    tile_boxes: list[tuple[float, float, float, float]]

    def features(self) -> dict[str, bytes]:
        image = np.ascontiguousarray(self.image, dtype=np.uint8)
        if image.ndim != 2 or self.mask.shape != image.shape:
            raise ValueError(f"breast image {image.shape} and mask {self.mask.shape} must be equal 2-D shapes")
        if not len(self.tile_ids) == len(self.tile_kinds) == len(self.tile_boxes):
            raise ValueError("tile_ids, tile_kinds and tile_boxes must have equal lengths")
        box = foreground_box(self.mask)
        y0, y1, x0, x1 = box if box is not None else (0, 0, 0, 0)
        mask = np.where(self.mask[y0:y1, x0:x1] > 0, 255, 0).astype(np.uint8)

        def raw(values: object, dtype: type) -> bytes:
            return _bytes_feature(np.asarray(values, dtype=dtype).tobytes())

        return {
            "breast": _bytes_feature(image.tobytes()),
            "breast_shape": raw(image.shape, "<i4"),
            "breast_mask": _bytes_feature(mask.tobytes()),
            "breast_mask_box": raw((y0, y1, x0, x1), "<i4"),
            "abnormality_boxes": raw(self.abnormality_boxes, "<f4"),
            "negative_pool": raw(self.negative_pool, "<f4"),
            "tile_ids": _bytes_feature(TILE_SEPARATOR.join(self.tile_ids).encode("utf-8")),
            "tile_kinds": _bytes_feature(TILE_SEPARATOR.join(self.tile_kinds).encode("utf-8")),
            "tile_boxes": raw(self.tile_boxes, "<f4"),
        }


TILE_SEPARATOR = "\n"
"""Joins a record's tile ids and kinds into one string feature each."""

BREAST_FEATURES = ("breast", "breast_shape", "breast_mask", "breast_mask_box", "abnormality_boxes",
                   "negative_pool", "tile_ids", "tile_kinds", "tile_boxes")
"""The `BreastView` fields of a record: raw little-endian arrays and joined strings, empty in a record
without tiles (a normal image)."""


def serialize_example(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    example_id: str,
    kind: str,
    patient_id: str,
    abnormality_type: str,
    pathology: str,
    positive_fraction: float,
    breast: BreastView | None = None,
) -> bytes:
    """A `tf.train.Example` of one prepared mammogram: the uint8 SxS whole image and binary mask
    (0/1 or 0/255, stored as 0/255 so the PNG is viewable), with its metadata, and the breast at
    working resolution when tiles are to be cut from it."""
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.dtype != np.uint8 or image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"image must be a square 2-D uint8 array, got {image.dtype} {image.shape}")
    if mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if mask.any():
        mask_png = encode_png(np.where(mask > 0, 255, 0).astype(np.uint8))
    else:
        mask_png = _empty_mask_png(mask.shape[0])
    features = {
        "image": _bytes_feature(encode_png(image)),
        "mask": _bytes_feature(mask_png),
        "example_id": _bytes_feature(example_id.encode("utf-8")),
        "kind": _bytes_feature(kind.encode("utf-8")),
        "patient_id": _bytes_feature(patient_id.encode("utf-8")),
        "abnormality_type": _bytes_feature(abnormality_type.encode("utf-8")),
        "pathology": _bytes_feature(pathology.encode("utf-8")),
        "positive_fraction": _float_feature(float(positive_fraction)),
    }
    if breast is not None:
        features.update(breast.features())
    entries = b"".join(_field(1, _field(1, key.encode()) + _field(2, value)) for key, value in features.items())
    return _field(1, entries)  # Example.features { feature: map<string, Feature> }


# --------------------------------------------------------------------------- writer


class ShardWriter:
    """Writes framed records to a temporary file that replaces `path` only on a clean exit.

    A failed or interrupted `prepare` therefore never leaves a truncated shard behind::

        with ShardWriter("shards/train-00000.tfrecord") as writer:
            writer.write(serialize_example(...))
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.count = 0
        self.nbytes = 0
        self._stack: contextlib.ExitStack | None = None
        self._file: BinaryIO | None = None

    def __enter__(self) -> ShardWriter:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path))
            self._file = stack.enter_context(open(tmp, "wb"))
            self._stack = stack.pop_all()
        return self

    def write(self, record: bytes) -> None:
        """Append one serialized example."""
        if self._file is None:
            raise RuntimeError("ShardWriter.write outside its `with` block")
        framed = frame_record(record)
        self._file.write(framed)
        self.count += 1
        self.nbytes += len(framed)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack, self._file = self._stack, None, None
        if stack is not None:
            stack.__exit__(exc_type, exc, tb)


# --------------------------------------------------------------------------- TensorFlow side


def feature_spec() -> dict[str, Any]:
    """The parsing spec of the schema for `tf.io.parse_example` / `parse_single_example`."""
    import tensorflow as tf

    spec: dict[str, Any] = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "mask": tf.io.FixedLenFeature([], tf.string),
        "positive_fraction": tf.io.FixedLenFeature([], tf.float32),
    }
    spec.update({name: tf.io.FixedLenFeature([], tf.string) for name in STRING_FEATURES})
    spec.update({name: tf.io.FixedLenFeature([], tf.string, default_value=b"") for name in BREAST_FEATURES})
    return spec


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parse one serialized example (or a batch of them) into its fields. `image` and `mask` stay
    PNG bytes so that a pipeline can filter on metadata before paying for decoding; decode them with
    `tf.io.decode_png(..., channels=1)`."""
    import tensorflow as tf

    if serialized.shape.rank == 0:
        return tf.io.parse_single_example(serialized, feature_spec())
    return tf.io.parse_example(serialized, feature_spec())
