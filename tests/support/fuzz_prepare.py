"""The fuzzer's prepare case: one run over a tree with corrupted images, masks, a CSV and a CSV row, each of
which must be skipped with a report line and a warning naming the file; then inputs and state files
corrupted after the run, which must never cost the earlier shards and manifest."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from support.corruptions import csv_bytes, csv_rows, encapsulated
from support.fuzz_assets import IMAGE_SHAPES, Assets, write_image_dicom
from support.outcomes import ACCEPT, REFUSE, Outcome, judge, judge_cli

CORRUPTIONS = ("truncated", "no PixelData", "BitsAllocated 12", "Rows 0", "two frames", "RGB", "RLE, empty frame",
               "text", "RLE, header only", "Columns x3")
PLANTED = 5
"""Images or masks corrupted before the run (beside the CSV and the CSV row)."""


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    handler = _Warnings()
    logger = logging.getLogger("mammoseg")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def corrupt_in_place(data: st.DataObject, assets: Assets, path: Path, how: str) -> None:
    if how == "truncated":
        raw = path.read_bytes()
        path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
        return
    if how == "text":
        path.write_text("not a DICOM file\n")
        return
    edits = {
        "no PixelData": lambda ds: delattr(ds, "PixelData"),
        "BitsAllocated 12": lambda ds: setattr(ds, "BitsAllocated", 12),
        "Rows 0": lambda ds: setattr(ds, "Rows", 0),
        "Columns x3": lambda ds: setattr(ds, "Columns", int(ds.Columns) * 3),
        "RLE, empty frame": lambda ds: setattr(ds, "PixelData", encapsulated(b"")),
        "RLE, header only": lambda ds: setattr(ds, "PixelData", encapsulated(bytes(64))),
    }
    write_image_dicom(assets, path, data.draw(IMAGE_SHAPES), rle=how.startswith("RLE"), frames=2 if how == "two frames" else 1,
                      samples=3 if how == "RGB" else 1, bits=8 if how == "RGB" else 16, edit=edits.get(how))


def _plant(data: st.DataObject, assets: Assets, folder: Path) -> tuple[Any, dict, set[str], list[str], dict]:
    """The tree with its corruptions: (tree, expected report rows, unplanned images, good keys, corrupted)."""
    from cbis_factory import Case, build_tree, default_cases

    extra = [Case(data.draw(st.sampled_from(["mass", "calc"])), "train", f"P_{100 + k:05d}",
                  data.draw(st.sampled_from(["LEFT", "RIGHT"])), data.draw(st.sampled_from(["CC", "MLO"])))
             for k in range(max(0, PLANTED - 4))]
    tree = build_tree(folder / "cbis", "csv-paths", default_cases() + extra, seed=data.draw(st.integers(0, 2**16 - 1)))
    # a whole CSV unusable (an unknown column), and one row of another with a value out of its vocabulary
    calc_test = tree.csvs[("calc", "test")]
    calc_test.write_bytes(calc_test.read_bytes().replace(b"subtlety", b"subtlety,notes", 1))
    mass_train = tree.csvs[("mass", "train")]
    rows = csv_rows(mass_train.read_bytes())
    line = data.draw(st.integers(1, len(rows) - 1), label="bad CSV row")
    bad_row_image = rows[line][11].split("/")[0]
    rows[line][9] = "PROBABLY BENIGN"
    mass_train.write_bytes(csv_bytes(rows))
    # report source -> (what, file, what the warning line must also name)
    expected = {calc_test.name: ("unusable CSV", calc_test.name, "file skipped"),
                f"{mass_train.name}:{line}": ("bad CSV row", mass_train.name, f"row {line}:")}
    unplanned = {k for k in tree.image_files if k.startswith("Calc-Test")} | {bad_row_image}
    keys = sorted(k for k in tree.image_files if k not in unplanned)
    size = min(PLANTED, len(keys) - 2)
    victims = data.draw(st.lists(st.sampled_from(keys), min_size=size, max_size=size, unique=True), label="victims")
    corrupted: dict[str, tuple[str, Path]] = {}
    for k, key in enumerate(victims):
        how = CORRUPTIONS[k % len(CORRUPTIONS)]
        rois = [files for (subject, _), files in tree.roi_files.items() if subject == key]
        path = tree.image_files[key] if k % 3 or not rois else rois[0][-1]  # a third of them a mask
        corrupt_in_place(data, assets, path, how)
        corrupted[key] = (how, path)
    expected |= {key: (how, str(path.relative_to(tree.root)), key) for key, (how, path) in corrupted.items()}
    return tree, expected, unplanned, keys, corrupted


def prepare_case(data: st.DataObject, assets: Assets) -> list[tuple[str, Outcome]]:
    """Every check of one prepare run over a corrupted tree, as (label, outcome)."""
    import pandas as pd

    from mammoseg.dataset.prepare import PrepareOptions, prepare

    folder = assets.folder("prepare")
    tree, expected, _, keys, corrupted = _plant(data, assets, folder)
    out = folder / "ds"
    options = PrepareOptions(image_size=32, positive_tiles=1, negative_tiles=1, images_per_shard=3)
    with captured_warnings() as warnings:
        first = judge(lambda: prepare(tree.root, out, options), names=[], expect=ACCEPT)
    if first.kind != "accepted":
        return [("prepare run", first)]
    report = pd.read_csv(out / "prepare_report.csv", keep_default_na=False)
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    prepared = set(manifest.loc[manifest["kind"] == "whole", "source_image"])
    results = []
    for source, (how, name, token) in expected.items():
        rows = report[report["source"] == source]
        if len(rows) != 1 or "\n" in rows["reason"].item() or not rows["file"].item().endswith(name):
            outcome = Outcome("wrong", f"report rows {rows.to_dict('records')}")
        elif not any(name in line and token in line for line in warnings):
            outcome = Outcome("wrong", "no warning line naming it")
        else:
            outcome = Outcome("wrong", "skipped and prepared") if source in prepared else Outcome("skipped")
        results.append((f"{how} in {name}", outcome))
    missing = set(keys) - set(corrupted) - prepared
    results.append(("good images prepared", Outcome("wrong", f"not prepared: {sorted(missing)}") if missing else
                    Outcome("accepted")))
    return results + _later_runs(data, assets, tree, out, options, sorted(prepared)[0])


def _later_runs(data: st.DataObject, assets: Assets, tree: Any, out: Path, options: Any, good: str) -> list[tuple[str, Outcome]]:
    """Inputs and state files corrupted after the run: every later run must keep the earlier output."""
    from mammoseg.dataset.prepare import prepare

    snapshot = {p: p.read_bytes() for p in [out / "manifest.csv", *sorted((out / "shards").glob("*.tfrecord"))]}
    results: list[tuple[str, Outcome]] = []

    def record(label: str, outcome: Outcome, also: dict[Path, bytes] | None = None) -> None:
        changed = [str(p.relative_to(out)) for p, raw in (snapshot | (also or {})).items()
                   if not p.is_file() or p.read_bytes() != raw]
        results.append((label, Outcome("wrong", f"earlier output changed: {changed}") if changed else outcome))

    corrupt_in_place(data, assets, tree.image_files[good], "truncated")
    record(f"re-run after corrupting {good}", judge(
        lambda: prepare(tree.root, out, options), names=[], expect=ACCEPT,
        check=lambda again: again.units_run and f"{again.units_run} unit(s) redone"))
    saved = {path: path.read_bytes() for path in tree.csvs.values()}
    for path in saved:
        path.write_bytes(data.draw(st.sampled_from([b"", b"\xff\xfe", b"patient_id\r\n"])))
    record("every description CSV unusable", judge(lambda: prepare(tree.root, out, options), names=[str(tree.root)],
                                                   expect=REFUSE))
    for path, raw in saved.items():
        path.write_bytes(raw)
    options_file = out / "parts" / "options.json"
    recorded = options_file.read_bytes()
    cut = data.draw(st.integers(0, len(recorded.rstrip()) - 1))
    for raw in (recorded[:cut], b"[1, 2]", b"\xe9"):
        options_file.write_bytes(raw)
        record(f"parts/options.json = {raw[:20]!r}", judge(lambda: prepare(tree.root, out, options),
                                                           names=[str(options_file)], expect=REFUSE), {options_file: raw})
    options_file.unlink()
    dataset_json = out / "dataset.json"
    dataset_json.write_bytes(b"\xff\xfe{")
    results.append(("prepare with dataset.json corrupted", judge_cli(
        ["-q", "prepare", str(tree.root), "--out", str(out), "--image-size", "32", "--images-per-shard", "3"],
        names=[str(dataset_json)], keep=[dataset_json, *snapshot])))
    return results
