"""Hypothesis strategies of corrupted inputs: each draws one corruption of a valid file's bytes (or of a
DICOM dataset, a TOML document, a run's config.json) with what a strict reader must do with it."""

from __future__ import annotations

import csv
import io
import json
import struct
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from support.outcomes import ACCEPT, EITHER, REFUSE, Corruption

# --------------------------------------------------------------------------- DICOM


def header_mutations(rows: int, cols: int) -> st.SearchStrategy[Corruption]:
    """An edit of a valid image's dataset (Corruption.data: a function of the dataset)."""

    def setter(name: str, value: Any) -> Callable[[Any], None]:
        return lambda ds: setattr(ds, name, value)

    def delete(name: str) -> Callable[[Any], None]:
        return lambda ds: delattr(ds, name)

    def empty_pixels(ds: Any) -> None:
        ds.PixelData = encapsulated(None) if ds.file_meta.TransferSyntaxUID.is_compressed else b""

    def unknown_syntax(ds: Any) -> None:
        ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"

    def signed(v: int) -> Callable[[Any], None]:
        return lambda ds: (setattr(ds, "PixelRepresentation", 1), setattr(ds, "BitsStored", v))

    mutations = [Corruption(f"BitsAllocated {v}", setter("BitsAllocated", v), REFUSE) for v in (0, 1, 7, 12, 32, 64)]
    mutations += [Corruption(f"Rows {v}", setter("Rows", v), EITHER if 0 < v <= rows else REFUSE)
                  for v in (0, 1, rows // 2, rows * 2, 65535)]
    mutations += [Corruption(f"Columns {v}", setter("Columns", v), EITHER if 0 < v <= cols else REFUSE)
                  for v in (0, 1, cols - 1, cols * 3, 65535)]
    mutations += [Corruption(f"BitsStored {v}", setter("BitsStored", v), EITHER) for v in (0, 1, 17, 40)]
    mutations += [Corruption(f"PixelRepresentation 1, BitsStored {v}", signed(v), EITHER) for v in (0, 8, 16, 33)]
    mutations += [Corruption(f"PhotometricInterpretation {v!r}", setter("PhotometricInterpretation", v),
                             EITHER if v == "MONOCHROME1" else REFUSE)
                  for v in ("RGB", "PALETTE COLOR", "YBR_FULL", "MONOCHROME3", "MONOCHROME1")]
    # a zero count is read as the default of one, like an empty one
    mutations += [Corruption(f"SamplesPerPixel {v}", setter("SamplesPerPixel", v), EITHER if v == 0 else REFUSE)
                  for v in (0, 3, 4)]
    mutations += [Corruption(f"NumberOfFrames {v!r}", setter("NumberOfFrames", v), EITHER if v in ("0", "1") else REFUSE)
                  for v in ("0", "1", "2", "-1")]
    mutations += [Corruption(f"{name} with two values", setter(name, value), REFUSE) for name, value in (
        ("Rows", [rows, rows]), ("Columns", [cols, 1]), ("BitsAllocated", [16, 8]), ("BitsStored", [16, 16]),
        ("SamplesPerPixel", [1, 1]), ("NumberOfFrames", ["1", "2"]), ("PixelRepresentation", [0, 1]),
        ("PhotometricInterpretation", ["MONOCHROME2", "MONOCHROME1"]))]
    mutations += [Corruption("no PixelData", delete("PixelData"), REFUSE),
                  Corruption("empty PixelData", empty_pixels, REFUSE), Corruption("no Rows", delete("Rows"), REFUSE),
                  Corruption("no BitsAllocated", delete("BitsAllocated"), REFUSE),
                  Corruption("unknown transfer syntax", unknown_syntax, EITHER)]
    return st.sampled_from(mutations)


def encapsulated(frame: bytes | None) -> bytes:
    """Encapsulated pixel data of one frame of any length (pydicom's `encapsulate` refuses an empty
    one), or of no frame at all (None)."""

    def item(data: bytes) -> bytes:
        return b"\xfe\xff\x00\xe0" + struct.pack("<I", len(data)) + data

    frames = b"" if frame is None else item(frame + b"\0" * (len(frame) % 2))
    return item(b"") + frames + b"\xfe\xff\xdd\xe0" + bytes(4)


def changed_bytes(data: bytes, start: int = 0) -> st.SearchStrategy[tuple[int, bytes]]:
    """1-5 bytes at or after `start` set to drawn values: (how many, the bytes)."""
    spots = st.lists(st.tuples(st.integers(start, len(data) - 1), st.integers(0, 255)), min_size=1, max_size=5)

    def apply(changes: list[tuple[int, int]]) -> tuple[int, bytes]:
        raw = bytearray(data)
        for spot, value in changes:
            raw[spot] = value
        return len(changes), bytes(raw)

    return spots.map(apply)


def rle_frame_corruptions(frame: bytes) -> st.SearchStrategy[Corruption]:
    """One corruption of an RLE frame (64-byte header of segment count and offsets, then segments)."""
    header = np.frombuffer(frame[:64], "<u4")
    segments = int(header[0])

    def with_header(k: int, value: int) -> bytes:
        edited = header.copy()
        edited[k] = value
        return edited.tobytes() + frame[64:]

    last = int(header[segments]) if segments else 64
    first = int(header[1]) if segments else 64
    overrun = frame[:first] + b"\x81\x07" * ((len(frame) - first) // 2 + 64)
    return st.one_of(
        st.sampled_from([0, 1, 3, 15, 16, 255, 2**31]).map(
            lambda v: Corruption(f"segment count {v}", with_header(0, v), EITHER if v == segments else REFUSE)),
        st.tuples(st.integers(1, segments), st.sampled_from([0, 1, 63, len(frame), len(frame) + 1000, 2**32 - 1])).map(
            lambda kv: Corruption(f"offset of segment {kv[0]} -> {kv[1]}", with_header(*kv), EITHER)),
        changed_bytes(frame, 64).map(lambda nb: Corruption(f"{nb[0]} segment byte(s) changed", nb[1], EITHER)),
        st.integers(0, len(frame) - 1).map(
            lambda cut: Corruption(f"frame cut to {cut} of {len(frame)} bytes", frame[:cut] + b"\0" * (cut % 2), EITHER)),
        st.just(Corruption("empty frame", b"", REFUSE)),
        st.binary(min_size=1, max_size=199).map(
            lambda junk: Corruption(f"{2 * len(junk)} junk bytes appended", frame + junk * 2, EITHER)),
        st.just(Corruption("last segment is a literal run past the end", frame[:last] + b"\x7f\x01\x02\0", EITHER)),
        st.just(Corruption("first segment replaced by runs that overrun the frame", overrun, EITHER)),
        st.just(Corruption("header only", frame[:64], REFUSE)),
    )


# --------------------------------------------------------------------------- CSV


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def csv_bytes(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue().encode()


def _latin1_row(rows: list[list[str]], k: int) -> bytes:
    latin = rows[k][:]
    latin[0] = latin[0] + "\udce9"  # a lone Latin-1 é, as a Windows editor would save it
    return csv_bytes(rows[:k]) + ",".join(latin).encode("utf-8", "surrogateescape") + b"\r\n" + csv_bytes(rows[k + 1:])


def _blank_row(data: bytes, blank: bytes, k: int) -> bytes:
    lines = data.split(b"\r\n")
    return b"\r\n".join(lines[:k]) + b"\r\n" + blank + b"\r\n".join(lines[k:])


def csv_corruptions(data: bytes, key_columns: tuple[str, ...]) -> st.SearchStrategy[Corruption]:
    """One corruption of a CSV file's bytes, with the outcome a strict reader of `key_columns` owes it."""
    rows = csv_rows(data)
    header = rows[0]
    column = st.integers(0, len(header) - 1)

    def removed(k: int) -> Corruption:
        return Corruption(f"column {header[k]!r} removed", csv_bytes([r[:k] + r[k + 1:] for r in rows]),
                          REFUSE if header[k] in key_columns else EITHER)

    def renamed(k_new: tuple[int, int]) -> Corruption:
        k, which = k_new
        new = [header[k].upper(), header[k] + " ", header[k].replace(" ", "_") + "x", header[k][:-1]][which]
        return Corruption(f"column {header[k]!r} renamed {new!r}", csv_bytes([header[:k] + [new] + header[k + 1:]] + rows[1:]),
                          REFUSE if header[k] in key_columns else EITHER)

    blanks = st.sampled_from([b"\r\n", b"\r\n\r\n", b"," * (len(header) - 1) + b"\r\n", b" \r\n"])
    line_count = len(data.split(b"\r\n"))
    return st.one_of(
        column.map(removed),
        st.just(Corruption("extra column", csv_bytes([rows[0] + ["comment"]] + [r + ["x"] for r in rows[1:]]), EITHER)),
        st.tuples(column, st.integers(0, 3)).map(renamed),
        st.just(Corruption("UTF-8 byte order mark", b"\xef\xbb\xbf" + data, ACCEPT)),
        st.just(Corruption("LF line ends", data.replace(b"\r\n", b"\n"), ACCEPT)),
        st.just(Corruption("CR line ends", data.replace(b"\r\n", b"\r"), EITHER)),
        st.integers(min(1, len(rows) - 1), len(rows) - 1).map(
            lambda k: Corruption(f"Latin-1 byte in row {k}", _latin1_row(rows, k), EITHER)),
        st.tuples(blanks, st.integers(1, line_count)).map(
            lambda bk: Corruption(f"empty row {bk[0]!r} at line {bk[1]}", _blank_row(data, *bk), EITHER)),
        st.integers(0, len(data) - 1).map(lambda cut: Corruption(f"cut at byte {cut} of {len(data)}", data[:cut], EITHER)),
        st.just(Corruption("header only", data.split(b"\r\n")[0] + b"\r\n", EITHER)),
        st.just(Corruption("empty file", b"", REFUSE)),
        changed_bytes(data).map(lambda nb: Corruption(f"{nb[0]} byte(s) changed", nb[1], EITHER)),
        st.integers(0, len(data) - 1).map(
            lambda spot: Corruption(f"NUL byte at {spot}", data[:spot] + b"\0" + data[spot:], EITHER)),
        st.integers(len(data) // 2, len(data) - 1).map(
            lambda spot: Corruption(f"unbalanced quote at {spot}", data[:spot] + b'"' + data[spot:], EITHER)),
        st.just(Corruption("header twice", csv_bytes([header] + rows), EITHER)),
    )


# --------------------------------------------------------------------------- JSON (a run's config.json)


def json_corruptions(data: bytes) -> st.SearchStrategy[Corruption]:
    """One corruption of a JSON document's bytes (always something no reader should take as is)."""
    config = json.loads(data)

    def replaced(key: str, value: Any) -> Corruption:
        return Corruption(f"{key} = {value!r}", json.dumps({**config, key: value}).encode(), REFUSE)

    return st.one_of(
        st.integers(0, len(data) - 2).map(lambda cut: Corruption(f"cut at byte {cut} of {len(data)}", data[:cut], REFUSE)),
        st.just(Corruption("empty", b"", REFUSE)),
        st.binary(min_size=64, max_size=64).map(lambda junk: Corruption("binary garbage", junk, REFUSE)),
        st.just(Corruption("Latin-1 bytes", data.replace(b'"seed"', b'"s\xe9ed"'), REFUSE)),
        st.just(Corruption("UTF-16", data.decode().encode("utf-16"), REFUSE)),
        st.sampled_from([[], [config], "config", None, 3]).map(
            lambda v: Corruption(f"JSON {type(v).__name__}", json.dumps(v).encode(), REFUSE)),
        st.sampled_from(["x", [], None, {"where": "elsewhere"}, 5]).map(lambda v: replaced("dataset", v)),
        st.sampled_from(["abc", -64, [64], {"s": 1}, 1e9, True]).map(lambda v: replaced("image_size", v)),
        st.tuples(st.sampled_from(["variant", "epochs", "batch_size", "seed", "width", "data"]),
                  st.sampled_from([None, "", -1, [], {"a": 1}, "nope"])).map(lambda kv: replaced(*kv)),
        st.integers(0, len(data) - 1).map(
            lambda spot: Corruption(f"NUL at byte {spot}", data[:spot] + b"\0" + data[spot:], REFUSE)),
    )


# --------------------------------------------------------------------------- TOML configs


def toml_value(value: Any) -> str:
    """A TOML literal (strings, numbers, booleans, arrays, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value > 0 else "-inf") if abs(value) == float("inf") else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_text(doc: dict[str, Any]) -> str:
    """A TOML document: top-level values, then each dict marked `__table__` as a [table]."""
    lines = [f"{k} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict) or not v.get("__table__")]
    for name, table in doc.items():
        if isinstance(table, dict) and table.get("__table__"):
            lines.append(f"[{name}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if k != "__table__"]
    return "\n".join(lines) + "\n"


WRONG_VALUES: list[Any] = ["ten", -3, 0, 2.5, True, [1, 2], {"a": 1}, float("inf"), float("nan"), "", -0.5]


def type_ok(value: Any, hint: Any) -> bool:
    """Whether `value` fits a TrainConfig annotation (bool is not an int here, int is a float)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        if option is bool and isinstance(value, bool):
            return True
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if option is str and isinstance(value, str):
            return True
    return False


def _toml_document(ablation: bool) -> tuple[dict[str, Any], list[str]]:
    train = {"variant": "dilated_resize", "epochs": 2, "batch_size": 4, "width": 0.25, "learning_rate": 0.001,
             "dropout": True, "precision": "float32"}
    if not ablation:
        return {**train, "data": "data/prepared", "seed": 1}, [""]
    del train["variant"]
    return {
        "experiment": {"__table__": True, "name": "fuzz", "data": "data/prepared", "seeds": 2,
                       "variants": ["fcn_skips", "dilated_resize"], "eval_split": "test"},
        "train": {"__table__": True, **train},
        "arms": {"__table__": True, "k3": {"variant": "dilated_transpose", "transpose_kernel": 3}},
    }, ["experiment", "train", "arms.k3"]


@st.composite
def toml_configs(draw: st.DrawFn, ablation: bool, hints: dict[str, Any], experiment_keys: tuple[str, ...]) -> Corruption:
    """A training (or, with `ablation`, an ablation) TOML config with one thing wrong: its bytes."""
    doc, tables = _toml_document(ablation)
    table_name = draw(st.sampled_from(tables))
    table = doc if not table_name else doc["arms"]["k3"] if table_name == "arms.k3" else doc[table_name]
    choice = draw(st.integers(0, 6))
    if choice == 0:
        name = draw(st.sampled_from(["epoch", "learningrate", "varient", "foo", "image-size", "Seed"]))
        table[name] = 3
        return Corruption(f"unknown key {name!r} in [{table_name}]", toml_text(doc).encode(), REFUSE)
    if choice == 1:
        name = draw(st.sampled_from([k for k in table if k != "__table__" and not isinstance(table[k], dict)]))
        value = table[name] = draw(st.sampled_from(WRONG_VALUES))
        expect = REFUSE if name in hints and not type_ok(value, hints[name]) else EITHER
        return Corruption(f"{name} = {toml_value(value)} in [{table_name}]", toml_text(doc).encode(), expect)
    if choice == 2:
        value = (doc["train"] if ablation else doc)["epochs"] = draw(st.sampled_from([-1, 0, -30, -(2**62)]))
        return Corruption(f"epochs = {value}", toml_text(doc).encode(), REFUSE)
    base = toml_text(doc).encode()
    if choice == 3:
        cut = draw(st.integers(0, len(base) - 1))
        return Corruption(f"cut at byte {cut} of {len(base)}", base[:cut], EITHER)
    if choice == 4:
        junk = draw(st.sampled_from([b"\xff\xfe", b"= = =", b"[train", b"\x00", b"epochs = 1\nepochs = 2", b"\xe9t\xe9 = 1"]))
        spot = base.rfind(b"\n", 0, draw(st.integers(0, len(base) - 1))) + 1
        return Corruption(f"{junk!r} inserted at byte {spot}", base[:spot] + junk + b"\n" + base[spot:], REFUSE)
    if choice == 5 and ablation:
        name = draw(st.sampled_from(["train", "experiment", "arms", "arms.k3"]))
        value = draw(st.sampled_from([3, "x", [1], True]))
        (doc["arms"] if name == "arms.k3" else doc)[name.removeprefix("arms.")] = value
        return Corruption(f"{name} = {toml_value(value)} instead of a table", toml_text(doc).encode(), REFUSE)
    if ablation:
        name = draw(st.sampled_from(list(experiment_keys)))
        value = doc["experiment"][name] = draw(st.sampled_from([2.5, "3", [], [-1], [1.5], 0, -2, 5, {"a": 1}, ["nope"], ""]))
        return Corruption(f"[experiment] {name} = {toml_value(value)}", toml_text(doc).encode(), EITHER)
    doc["data"] = draw(st.sampled_from([5, [], {"a": 1}, True]))
    return Corruption(f"data = {toml_value(doc['data'])}", toml_text(doc).encode(), REFUSE)


# --------------------------------------------------------------------------- what predict is given


def _png(array: np.ndarray, ext: str = ".png") -> bytes:
    import cv2

    ok, encoded = cv2.imencode(ext, array)
    assert ok
    return encoded.tobytes()


def _fake(h: int, w: int) -> np.ndarray:
    from mammo_fakes import fake_mammogram

    return fake_mammogram(h, w, bits=8)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _noise(seed: int, shape: tuple[int, ...], high: int, dtype: str) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, shape, dtype=dtype)


def _mask() -> np.ndarray:
    mask = np.zeros((300, 200), np.uint8)
    mask[100:150, 50:90] = 255
    return mask


def not_images() -> st.SearchStrategy[tuple[str, str, bytes | None]]:
    """Something given to predict that is not a mammogram: (label, file name, bytes; None for a folder)."""
    seed = st.integers(0, 2**16)
    return st.one_of(
        st.sampled_from(["notes.png", "scan.jpg", "scan.dcm", "scan", "scan.JPEG"]).map(
            lambda name: ("text", name, b"patient notes, not pixels\n" * 20)),
        st.tuples(st.sampled_from(["noise.png", "noise.dcm", "noise.jpg"]), st.binary(min_size=1, max_size=4999)).map(
            lambda nd: ("random bytes", *nd)),
        st.tuples(st.sampled_from(["report.png", "report.dcm"]),
                  st.sampled_from([b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", b"PK\x03\x04" + bytes(100), b"\x89PNG\r\n\x1a\n"])).map(
            lambda nd: ("another format's header", *nd)),
        st.sampled_from(["empty.png", "empty.dcm"]).map(lambda name: ("empty file", name, b"")),
        st.just(("a folder", "folder.png", None)),
        st.tuples(st.integers(1, 39), st.integers(1, 39), seed).map(
            lambda hws: ("too small", "tiny.png", _png(_noise(hws[2], hws[:2], 256, "uint8")))),
        seed.map(lambda s: ("colour", "photo.png", _png(_noise(s, (200, 150, 3), 256, "uint8")))),
        st.just(("a two-level mask", "mask.png", _png(_mask()))),
        st.integers(0, 255).map(lambda v: ("blank", "blank.png", _png(np.full((300, 200), v, np.uint16)))),
        seed.map(lambda s: ("pixel noise", "noise16.png", _png(_noise(s, (300, 220), 65536, "uint16")))),
        st.integers(8, 1000).map(lambda cut: ("truncated PNG", "cut.png", _png(_fake(300, 200))[:cut])),
        st.just(("a strip (aspect ratio)", "strip.png", _png(_fake(70, 600)))),
        seed.map(lambda s: (".npy under a .png name", "array.png", _npy(np.random.default_rng(s).random((64, 64))))),
        seed.map(lambda s: ("float TIFF under a .png name", "float.png",
                            _png(np.random.default_rng(s).random((128, 128)).astype(np.float32), ".tiff"))),
    )


def write_input(folder: Path, name: str, data: bytes | None) -> Path:
    path = folder / name
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)
    return path
