"""Reading mammogram pixels (DICOM, or the JPEG/PNG/TIFF/PGM of re-packaged copies and other
collections) and the header fields the layouts and the grouping of normal mammograms need.

Only `SeriesInstanceUID`, `PatientID`, the pixel description and the pixels are ever read from a
header: other fields may carry personal data in other datasets and must not reach shards, logs or
reports. `PatientID` is only used to keep one woman's images together, and callers store a hash of
it, never the value. Error messages therefore name the file and the problem, never a header value.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from mammoseg.core.atomic import atomic_path
from mammoseg.core.errors import InputError

logger = logging.getLogger("mammoseg.dataset")

RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".pgm")
"""Read with OpenCV (8- or 16-bit grayscale); anything else is read as DICOM."""
_PIXEL_TAGS = (
    "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored",
    "PixelRepresentation", "NumberOfFrames", "PixelData",
)  # fmt: skip
_DEFER_BYTES = 1 << 16
"""Values larger than this (in practice only the pixel data) are left in the file by `dcmread`."""
_PREFETCH_PIECE = 4 << 20  # see `prefetch`


def _header_errors() -> tuple[type[BaseException], ...]:
    """What pydicom raises for a file that is not DICOM or whose header is cut or damaged."""
    from pydicom.errors import BytesLengthException, InvalidDicomError

    return (InvalidDicomError, BytesLengthException, struct.error, EOFError, OSError, ValueError, KeyError,
            AttributeError, TypeError)


def read_series_uid(path: str | Path) -> str:
    """The SeriesInstanceUID of a DICOM file, reading the header only (not the pixels)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
    except FileNotFoundError as exc:
        raise InputError(path, "file not found") from exc
    except _header_errors() as exc:
        raise InputError(path, f"not a readable DICOM file ({type(exc).__name__})") from exc
    uid = ds.get("SeriesInstanceUID")
    if not uid:
        raise InputError(path, "DICOM header has no SeriesInstanceUID")
    return str(uid)


def read_patient_id(path: str | Path) -> str | None:
    """The PatientID of a DICOM file (header only), None when absent, empty or unreadable: the
    reader of the pixels reports an unreadable file, this only groups images by woman."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError):
        return None
    value = str(ds.get("PatientID", "") or "").strip()
    return value or None


def prefetch(paths: Iterable[str | Path]) -> None:
    """Ask the kernel to start reading files into the page cache and return at once, so that disk
    reads overlap with processing. Files that cannot be opened are left for the reader to report.

    The advice is given in 4 MB pieces: Linux reads at most its read-ahead size (often 128 kB to
    8 MB) per call and silently drops the rest of a larger range."""
    if not hasattr(os, "posix_fadvise"):
        return
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            for offset in range(0, os.fstat(fd).st_size, _PREFETCH_PIECE):
                os.posix_fadvise(fd, offset, _PREFETCH_PIECE, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def read_pixels(path: str | Path) -> np.ndarray:
    """The 2-D grayscale pixels of one image as uint8 or uint16, MONOCHROME1 already inverted so that
    dense tissue is always bright.

    Uncompressed little-endian DICOM is memory-mapped (a read-only view: no copy of the 15-45 MB of
    pixels, and pages are read as they are used; the file must not shrink while the array lives);
    compressed transfer syntaxes go through pydicom's decoders. Raises InputError (file missing, not
    DICOM, truncated pixel data, compressed with no decoder installed, colour or multi-frame).
    """
    path = Path(path)
    if path.suffix.lower() in RASTER_SUFFIXES:
        return _read_raster(path)
    import pydicom

    try:
        ds = pydicom.dcmread(path, specific_tags=list(_PIXEL_TAGS), defer_size=_DEFER_BYTES)
    except FileNotFoundError as exc:
        raise InputError(path, "file not found") from exc
    except _header_errors() as exc:
        raise InputError(path, f"not a readable DICOM file ({type(exc).__name__})") from exc
    if "PixelData" not in ds:
        raise InputError(path, "DICOM file has no pixel data (truncated or not an image)")
    rows, cols = _number(ds, path, "Rows", 0), _number(ds, path, "Columns", 0)
    samples, frames = _number(ds, path, "SamplesPerPixel", 1), _number(ds, path, "NumberOfFrames", 1)
    bits = _number(ds, path, "BitsAllocated", 0)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if samples != 1 or frames != 1:
        raise InputError(path, f"expected one grayscale frame, found {frames} frame(s) of {samples} sample(s)")
    if rows < 1 or cols < 1 or bits not in (8, 16):
        raise InputError(path, f"unsupported pixel layout ({rows}x{cols}, {bits} bits allocated)")
    if not 1 <= _number(ds, path, "BitsStored", bits) <= bits:
        raise InputError(path, f"BitsStored is not between 1 and the {bits} bits allocated")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(path, f"unsupported photometric interpretation {photometric!r}")
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and not syntax.is_transfer_syntax:
        raise InputError(path, "the file meta names no known transfer syntax")
    if syntax is not None and syntax.is_compressed:
        pixels = _decode(ds, path, syntax)
    else:
        pixels = _native(ds, path, rows, cols, bits, mappable=syntax is None or not syntax.is_deflated)
    pixels = _to_unsigned(pixels, _number(ds, path, "PixelRepresentation", 0), _number(ds, path, "BitsStored", bits))
    if photometric == "MONOCHROME1":
        top = np.iinfo(pixels.dtype).max if pixels.dtype == np.uint8 else (1 << _number(ds, path, "BitsStored", 16)) - 1
        pixels = (np.asarray(top, dtype=pixels.dtype) - np.minimum(pixels, top)).astype(pixels.dtype)
    return pixels


def _number(ds: object, path: Path, name: str, default: int) -> int:
    """An integer field of the pixel description (`default` when absent or empty); InputError when
    it holds several values or text."""
    try:
        return int(ds.get(name, default) or default)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"{name} in the DICOM header is not a single number") from exc


def _native(ds: object, path: Path, rows: int, cols: int, bits: int, *, mappable: bool) -> np.ndarray:
    dtype = np.dtype("<u2") if bits == 16 else np.dtype(np.uint8)
    need = rows * cols * dtype.itemsize
    raw = ds.get_item("PixelData", keep_deferred=True)  # type: ignore[attr-defined]
    if mappable and raw.value is None and raw.is_little_endian:  # deferred: still in the file at value_tell
        with open(path, "rb") as file:
            size = file.seek(0, 2)
            have = max(0, min(raw.length, size - raw.value_tell))
            if have < need:
                raise InputError(path, f"truncated pixel data ({have} of {need} bytes)")
            view = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        return np.frombuffer(view, dtype=dtype, count=rows * cols, offset=raw.value_tell).reshape(rows, cols)
    data = ds.PixelData  # type: ignore[attr-defined]
    if len(data) < need:
        raise InputError(path, f"truncated pixel data ({len(data)} of {need} bytes)")
    return np.frombuffer(data, dtype=dtype, count=rows * cols).reshape(rows, cols)


def _decode(ds: object, path: Path, syntax: object) -> np.ndarray:
    try:
        return np.asarray(ds.pixel_array)  # type: ignore[attr-defined]
    except (RuntimeError, NotImplementedError, ImportError) as exc:
        name = getattr(syntax, "name", str(syntax))
        raise InputError(path, f"compressed DICOM ({name}) that no installed decoder could read (pylibjpeg or gdcm may help)") from exc
    except (ValueError, EOFError, OSError, AttributeError, TypeError, KeyError) as exc:
        raise InputError(path, f"compressed pixel data could not be decoded ({type(exc).__name__})") from exc


def _to_unsigned(pixels: np.ndarray, signed: int, bits_stored: int) -> np.ndarray:
    """Signed or odd-width pixels shifted into uint16 so that downstream code sees two dtypes only."""
    if pixels.dtype in (np.uint8, np.uint16) and not signed:
        return pixels
    wide = pixels.astype(np.int32)
    if signed and pixels.dtype.kind == "u":  # pydicom may hand raw two's complement in an unsigned view
        wide = np.where(wide >= 1 << (bits_stored - 1), wide - (1 << bits_stored), wide)
    wide -= int(wide.min())
    return np.clip(wide, 0, 65535).astype(np.uint16)


def _read_raster(path: Path) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise InputError(path, "file not found")
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise InputError(path, "not a readable image file")
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels[..., :3], cv2.COLOR_BGR2GRAY)
    if pixels.dtype not in (np.uint8, np.uint16):
        raise InputError(path, f"unsupported pixel type {pixels.dtype}")
    return pixels


def write_dicom(path: str | Path, pixels: np.ndarray, fields: Mapping[str, object] | None = None) -> Path:
    """Write `pixels` (uint8 or uint16, 2-D) as a Secondary Capture DICOM, Implicit VR Little Endian
    like CBIS-DDSM's files, atomically; `fields` are header attributes by keyword, over defaults
    that describe the pixels (MONOCHROME2, a fresh SOPInstanceUID). The one DICOM writer of the
    project: synthetic data and the tests' fixtures both use it."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"DICOM pixels must be a 2-D uint8 or uint16 array, got {pixels.dtype} {pixels.shape}")
    bits = pixels.dtype.itemsize * 8
    header: dict[str, object] = {
        "SOPClassUID": SecondaryCaptureImageStorage, "SOPInstanceUID": generate_uid(), "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2", "Rows": pixels.shape[0], "Columns": pixels.shape[1],
        "BitsAllocated": bits, "BitsStored": bits, "HighBit": bits - 1, "PixelRepresentation": 0,
        **(fields or {}),
    }  # fmt: skip
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = header["SOPClassUID"]
    meta.MediaStorageSOPInstanceUID = header["SOPInstanceUID"]
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    meta.ImplementationVersionName = "MAMMOSEG_SYNTH"
    path = Path(path)
    with atomic_path(path) as tmp:
        ds = FileDataset(str(tmp), {}, file_meta=meta, preamble=b"\0" * 128)
        for key, value in header.items():
            setattr(ds, key, value)
        data = np.ascontiguousarray(pixels, dtype="<u2" if bits == 16 else np.uint8).tobytes()
        ds.PixelData = data + (b"\0" if len(data) % 2 else b"")
        ds.save_as(tmp, enforce_file_format=True)
    return path
