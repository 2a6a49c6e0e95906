"""Bad input at scale, drawn by Hypothesis: corrupted DICOMs (truncated, wrong header, broken RLE,
multi-frame, colour), description and index CSVs, TOML configs, non-images given to predict, run
folders with a broken config.json, the command line, and a prepare run over a tree of them. Each must
end in a one-line reason, never a traceback, and never cost what an earlier run wrote
(tests/support/outcomes.py); a failing input is shrunk to the smallest one that still fails.

Derandomized by default (the same examples on every run, as CI needs). A longer or other run:
MAMMOSEG_FUZZ_SCALE=10 (ten times the examples) and MAMMOSEG_FUZZ_RANDOM=1 (fresh random examples).
"""

from __future__ import annotations

import json
import os
import shutil
import typing
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.corruptions import (csv_bytes, csv_corruptions, csv_rows, encapsulated, header_mutations, json_corruptions,
                                 not_images, rle_frame_corruptions, toml_configs, toml_text, type_ok, write_input)
from support.fuzz_assets import IMAGE_SHAPES, Assets, check_pixels, run_config_bytes, write_image_dicom
from support.fuzz_prepare import prepare_case
from support.outcomes import ACCEPT, EITHER, FAILED, OUTCOMES, REFUSE, Outcome, judge, judge_cli

from mammoseg.core.errors import InputError

pytestmark = pytest.mark.filterwarnings("ignore")  # pydicom warns about every oddity of the corrupted files

EXAMPLES = {
    "dicom-truncated": 16, "dicom-header": 24, "dicom-rle": 24, "dicom-frames-colour": 8, "csv-description": 16,
    "csv-layout": 8, "toml-config": 16, "predict-input": 9, "run-config": 9, "cli": 11, "prepare": 1,
}  # fmt: skip
"""Examples per category in the default run (a prepare example is one run and a dozen checks)."""
SCALE = float(os.environ.get("MAMMOSEG_FUZZ_SCALE", "1"))
RANDOM = os.environ.get("MAMMOSEG_FUZZ_RANDOM") == "1"


def fuzz(category: str) -> Callable:
    """The category's Hypothesis settings: its example count, no per-example deadline (a case may
    write files and load a model), derandomized unless MAMMOSEG_FUZZ_RANDOM=1."""
    return settings(max_examples=max(1, round(EXAMPLES[category] * SCALE)), deadline=None, derandomize=not RANDOM,
                    database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return Assets(tmp_path_factory.mktemp("fuzz"))


class Tally:
    """Outcome counts of one category; every example must end in neither a traceback nor a wrong outcome."""

    def __init__(self, category: str) -> None:
        self.category = category
        self.counts: Counter = Counter()

    def add(self, label: str, outcome: Outcome) -> None:
        self.counts[outcome.kind] += 1
        assert outcome.kind not in FAILED, f"[{self.category}] {label}: {outcome.kind}: {outcome.detail}"

    def report(self, *, least: str = "refused") -> None:
        print(f"{self.category}: " + ", ".join(f"{o} {self.counts[o]}" for o in OUTCOMES))
        assert self.counts[least] >= 1, (self.category, self.counts)


# --------------------------------------------------------------------------- DICOM


def test_truncated_dicoms(assets: Assets) -> None:
    from mammoseg.dataset.dicom import read_pixels

    tally = Tally("dicom-truncated")
    kinds = [("RLE", 16, False), ("RLE", 8, False), ("native", 16, False), ("native", 16, True), ("native", 8, True)]
    kinds += [("real CBIS-DDSM scan (RLE Lossless)", 16, False)] if assets.real_scan else []

    @fuzz(tally.category)
    @given(data=st.data(), kind=st.sampled_from(kinds), shape=IMAGE_SHAPES)
    def case(data: st.DataObject, kind: tuple[str, int, bool], shape: tuple[int, int, int]) -> None:
        folder = assets.folder(tally.category)
        name, bits, implicit = kind
        if name.startswith("real"):
            source, label = assets.real_scan, name
        else:
            source = write_image_dicom(assets, folder / "full.dcm", shape, rle=name == "RLE", bits=bits, implicit=implicit)
            label = f"{name} {bits}-bit{' implicit VR' if implicit else ''}"
        raw = source.read_bytes()
        cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
        path = folder / "truncated.dcm"
        path.write_bytes(raw[:cut])
        # encapsulated pixel data ends in an 8-byte delimiter, which pydicom does without
        expect = EITHER if "RLE" in label and cut >= len(raw) - 8 else REFUSE
        tally.add(f"{label} cut at {cut} of {len(raw)} bytes",
                  judge(lambda: read_pixels(path), names=[str(path)], expect=expect, check=check_pixels(path)))

    case()
    tally.report()


def test_dicom_headers(assets: Assets) -> None:
    from mammoseg.dataset.dicom import read_pixels

    tally = Tally("dicom-header")

    @fuzz(tally.category)
    @given(data=st.data(), kind=st.sampled_from([(True, 16), (True, 8), (False, 16), (False, 8)]), shape=IMAGE_SHAPES)
    def case(data: st.DataObject, kind: tuple[bool, int], shape: tuple[int, int, int]) -> None:
        rle, bits = kind
        mutation = data.draw(header_mutations(shape[0], shape[1]), label="mutation")
        path = write_image_dicom(assets, assets.folder(tally.category) / "header.dcm", shape, rle=rle, bits=bits,
                                 edit=mutation.data)
        tally.add(f"{'RLE' if rle else 'native'} {bits}-bit, {mutation.label}",
                  judge(lambda: read_pixels(path), names=[str(path)], expect=mutation.expect, check=check_pixels(path)))

    case()
    tally.report()


def test_rle_frames(assets: Assets) -> None:
    from pydicom.encaps import generate_frames

    from mammoseg.dataset.dicom import read_pixels

    tally = Tally("dicom-rle")

    @fuzz(tally.category)
    @given(data=st.data(), bits=st.sampled_from([8, 16]), shape=IMAGE_SHAPES)
    def case(data: st.DataObject, bits: int, shape: tuple[int, int, int]) -> None:
        chosen = []

        def edit(ds: Any) -> None:
            corruption = data.draw(rle_frame_corruptions(next(generate_frames(ds.PixelData, number_of_frames=1))))
            chosen.append(corruption)
            ds.PixelData = encapsulated(corruption.data)

        path = write_image_dicom(assets, assets.folder(tally.category) / "rle.dcm", shape, rle=True, bits=bits, edit=edit)
        tally.add(f"RLE {bits}-bit, {chosen[0].label}",
                  judge(lambda: read_pixels(path), names=[str(path)], expect=chosen[0].expect, check=check_pixels(path)))

    case()
    tally.report()


def test_frames_and_colour(assets: Assets) -> None:
    from mammoseg.dataset.dicom import read_pixels

    tally = Tally("dicom-frames-colour")

    @fuzz(tally.category)
    @given(rle=st.booleans(), kind=st.sampled_from(["frames", "rgb", "ybr", "palette"]), frames=st.integers(2, 3),
           shape=IMAGE_SHAPES)
    def case(rle: bool, kind: str, frames: int, shape: tuple[int, int, int]) -> None:
        folder = assets.folder(tally.category)
        if kind == "frames":
            path = write_image_dicom(assets, folder / "multi.dcm", shape, rle=rle, frames=frames)
            kind = f"{frames} frames"
        else:
            def edit(ds: Any) -> None:
                if kind == "ybr":
                    ds.PhotometricInterpretation = "YBR_FULL"
                elif kind == "palette":
                    ds.PhotometricInterpretation = "PALETTE COLOR"
                    ds.SamplesPerPixel = 1

            path = write_image_dicom(assets, folder / "colour.dcm", shape, rle=rle, bits=8, samples=3, edit=edit)
        tally.add(f"{'RLE' if rle else 'native'} {kind}", judge(lambda: read_pixels(path), names=[str(path)], expect=REFUSE))

    case()
    tally.report()


# --------------------------------------------------------------------------- CSV


def test_description_csvs(assets: Assets) -> None:
    from mammoseg.dataset import cbis

    tally = Tally("csv-description")
    tree = assets.tree("csv-paths")

    @fuzz(tally.category)
    @given(data=st.data(), key=st.sampled_from(list(cbis.OFFICIAL_NAMES)))
    def case(data: st.DataObject, key: tuple[str, str]) -> None:
        source = tree.csvs[key]
        if not csv_rows(source.read_bytes())[1:]:
            key, source = ("mass", "train"), tree.csvs[("mass", "train")]
        columns = (*cbis._COMMON_COLUMNS, *cbis._TYPE_COLUMNS[key[0]], *cbis._DENSITY_SPELLINGS)
        corruption = data.draw(csv_corruptions(source.read_bytes(), columns), label="corruption")
        # description CSVs have a closed set of columns
        expect = REFUSE if corruption.label.startswith("extra column") or "renamed" in corruption.label else corruption.expect
        path = assets.folder(tally.category) / source.name
        path.write_bytes(corruption.data)
        good = len(cbis.read_description_csv(source))

        def check(table: Any) -> str | None:
            if list(table.columns) != cbis.TIDY_COLUMNS:
                return f"columns {list(table.columns)}"
            return f"{len(table)} rows kept of {good}" if expect == ACCEPT and len(table) != good else None

        tally.add(f"{source.name}: {corruption.label}", judge(lambda: cbis.read_description_csv(path, []),
                                                             names=[str(path)], expect=expect, check=check))

    case()
    tally.report()


def test_layout_indexes(assets: Assets) -> None:
    """NBIA's metadata.csv or the Kaggle copy's dicom_info.csv corrupted in place, then restored."""
    from cbis_factory import read_table

    from mammoseg.dataset.layouts import open_layout

    tally = Tally("csv-layout")

    @fuzz(tally.category)
    @given(data=st.data(), layout=st.sampled_from(["nbia", "kaggle-jpeg"]))
    def case(data: st.DataObject, layout: str) -> None:
        tree = assets.tree(layout)
        index = tree.root / ("metadata.csv" if layout == "nbia" else "csv/dicom_info.csv")
        original = index.read_bytes()
        keys = ("Series UID", "File Location") if layout == "nbia" else ("image_path", "SeriesInstanceUID")
        label, corrupted, expect = data.draw(csv_corruptions(original, keys), label="corruption")
        if data.draw(st.integers(0, 4), label="path instead") == 4:
            rows = csv_rows(original)
            rows[1][rows[0].index(keys[1] if layout == "nbia" else keys[0])] = value = data.draw(
                st.sampled_from(["../../../etc", "/etc", "./nowhere", "", "CBIS-DDSM/../../x.jpg"]))
            label, corrupted, expect = f"path {value!r} in row 1", csv_bytes(rows), EITHER
        abnormalities = read_table(tree.csvs)
        index.write_bytes(corrupted)
        try:
            tally.add(f"{layout} {index.name}: {label}", judge(lambda: open_layout(tree.root, layout, abnormalities),
                                                              names=[str(index)], expect=expect))
        finally:
            index.write_bytes(original)

    case()
    tally.report()


# --------------------------------------------------------------------------- TOML configs


def _config_types_ok(config: Any) -> str | None:
    from mammoseg.training.config import TrainConfig

    for name, hint in typing.get_type_hints(TrainConfig).items():
        value = getattr(config, name)
        if value is not None and not type_ok(value, hint):
            return f"{name} = {value!r} accepted for a {hint}"
    return None


def _plan_ok(plan: Any) -> str | None:
    for run in plan.runs:
        problem = _config_types_ok(run.config)
        if problem:
            return problem
    if not isinstance(plan.experiment, str) or plan.eval_split not in ("train", "val", "test") \
            or plan.eval_checkpoint not in ("best", "last") or not isinstance(plan.baseline, (str, type(None))):
        return (f"experiment {plan.experiment!r}, split {plan.eval_split!r}, "
                f"checkpoint {plan.eval_checkpoint!r}, baseline {plan.baseline!r}")
    return None


def test_toml_configs(assets: Assets) -> None:
    from mammoseg.training.config import TrainConfig, build_config, merge_options
    from mammoseg.workflows.ablate import EXPERIMENT_KEYS, load_plan

    tally = Tally("toml-config")
    hints = typing.get_type_hints(TrainConfig)

    @fuzz(tally.category)
    @given(data=st.data(), ablation=st.booleans())
    def case(data: st.DataObject, ablation: bool) -> None:
        corruption = data.draw(toml_configs(ablation, hints, tuple(EXPERIMENT_KEYS)), label="config")
        path = assets.folder(tally.category) / ("ablation.toml" if ablation else "train.toml")
        path.write_bytes(corruption.data)
        if ablation:
            outcome = judge(lambda: load_plan(path), names=[str(path)], expect=corruption.expect, check=_plan_ok)
        else:
            outcome = judge(lambda: build_config(merge_options(path, {}), path), names=[str(path)],
                            expect=corruption.expect, check=_config_types_ok)
        tally.add(f"{path.name}: {corruption.label}", outcome)

    case()
    tally.report()


# --------------------------------------------------------------------------- predict inputs and run folders


def test_predict_inputs(assets: Assets) -> None:
    from mammoseg.inference.predict import predict

    tally = Tally("predict-input")

    @fuzz(tally.category)
    @given(given_input=not_images())
    def case(given_input: tuple[str, str, bytes | None]) -> None:
        folder = assets.folder(tally.category)
        label, name, raw = given_input
        path, out = write_input(folder, name, raw), folder / "out"
        outcome = judge(lambda: predict(folder / "no-run", path, out), names=[str(path)], expect=REFUSE)
        tally.add(f"{label} ({name})", Outcome("wrong", f"refused, yet {out} was created") if out.exists() else outcome)

    case()
    tally.report()


class _NoModel:
    inputs = [type("Input", (), {"shape": (None, 64, 64, 1)})()]


def test_run_configs(assets: Assets) -> None:
    """A run folder whose config.json is corrupted, read by each command that reads one."""
    from mammoseg.evaluation.evaluate import evaluate_run
    from mammoseg.inference.predict import run_image_size
    from mammoseg.training.train import resume

    tally = Tally("run-config")

    @fuzz(tally.category)
    @given(data=st.data(), target=st.sampled_from(["evaluate", "resume", "predict (image size)"]))
    def case(data: st.DataObject, target: str) -> None:
        folder = assets.folder(tally.category) / "run"
        folder.mkdir()
        label, raw, _ = data.draw(json_corruptions(run_config_bytes(folder)), label="config.json")
        config = folder / "config.json"
        config.write_bytes(raw)
        call = {"evaluate": lambda: evaluate_run(folder, "test"), "resume": lambda: resume(folder),
                "predict (image size)": lambda: run_image_size(folder, _NoModel())}[target]
        predicting = target.startswith("predict")

        def positive_size(size: Any) -> str | None:
            return None if isinstance(size, int) and size > 0 else f"image size {size!r}"

        try:  # a refusal may name the dataset the corrupted config.json points to
            recorded = json.loads(raw)
            dataset = [recorded["data"]] if isinstance(recorded["data"], str) and recorded["data"] else []
        except (ValueError, TypeError, KeyError):
            dataset = []
        outcome = judge(call, names=[str(config), str(folder), str(folder.parent / "gone"), *dataset],
                        expect=EITHER if predicting else REFUSE, check=positive_size if predicting else None)
        if config.read_bytes() != raw:
            outcome = Outcome("wrong", "config.json was rewritten")
        tally.add(f"{target}, config.json {label}", outcome)

    case()
    tally.report()


# --------------------------------------------------------------------------- the command line

CLI_KINDS = ("train --config", "ablate --config", "predict", "evaluate", "visualize-layer", "train --resume",
             "predict (run)", "train (same run name)")


def _cli_bad_config(data: st.DataObject, folder: Path, kind: str) -> tuple[str, Outcome]:
    path = folder / "bad.toml"
    doc: dict[str, Any] = {"variant": "dilated_resize", "data": str(folder / "gone"),
                           "epochs": data.draw(st.sampled_from([-1, 0, "two", 2.5]))}
    if kind == "ablate --config":
        doc = {"experiment": {"__table__": True, "data": str(folder / "gone"), "variants": ["dilated_resize"],
                              data.draw(st.sampled_from(["seed", "epochs", "name2"])): 1}}
    path.write_text(toml_text(doc))
    args = ["-q", kind.split()[0], "--config", str(path), "--runs-dir", str(folder / "runs")]
    outcome = judge_cli(args, names=[str(path)])
    if (folder / "runs").exists():
        outcome = Outcome("wrong", f"refused, yet {folder / 'runs'} was created")
    return f"{kind} {path.read_text()!r}", outcome


def _cli_broken_run(data: st.DataObject, assets: Assets, folder: Path, kind: str) -> tuple[str, Outcome]:
    run = folder / "run"
    shutil.copytree(assets.run_folder(), run)
    label, raw, _ = data.draw(json_corruptions(run_config_bytes(run)), label="config.json")
    config = run / "config.json"
    config.write_bytes(raw)
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
        expect = EITHER if isinstance(json.loads(raw), dict) and not kind.startswith("train (") else REFUSE
    except ValueError:
        expect = REFUSE
    keep = [config] if expect == EITHER else [p for p in run.rglob("*") if p.is_file()]
    return f"{kind}, config.json {label}", judge_cli(["-q", *args], names=[str(config), str(run), str(folder / "gone")],
                                                     keep=keep, expect=expect)


def test_command_line(assets: Assets) -> None:
    tally = Tally("cli")

    @fuzz(tally.category)
    @given(data=st.data(), kind=st.sampled_from(CLI_KINDS))
    def case(data: st.DataObject, kind: str) -> None:
        folder = assets.folder(tally.category)
        if kind in ("train --config", "ablate --config"):
            tally.add(*_cli_bad_config(data, folder, kind))
        elif kind == "predict":
            label, name, raw = data.draw(not_images(), label="image")
            image, out = write_input(folder, name, raw), folder / "out"
            outcome = judge_cli(["-q", "predict", str(assets.run_folder()), str(image), "--out", str(out)],
                                names=[str(image)])
            tally.add(f"predict on {label}", Outcome("wrong", f"refused, yet {out} was created") if out.exists() else outcome)
        else:
            tally.add(*_cli_broken_run(data, assets, folder, kind))

    case()
    tally.report()


# --------------------------------------------------------------------------- prepare


def test_prepare_over_corrupted_tree(assets: Assets) -> None:
    tally = Tally("prepare")

    @fuzz(tally.category)
    @given(data=st.data())
    def case(data: st.DataObject) -> None:
        for label, outcome in prepare_case(data, assets):
            tally.add(label, outcome)

    case()
    tally.report(least="skipped")
    assert tally.counts["skipped"] >= 3  # corrupted images, a CSV, a CSV row


# --------------------------------------------------------------------------- the rules themselves


@pytest.mark.parametrize(("raised", "expect", "outcome"), [
    (None, REFUSE, "wrong"),  # a corrupted input read without complaint
    (None, ACCEPT, "accepted"),
    (InputError("scan.dcm", "truncated pixel data"), EITHER, "refused"),
    (InputError("scan.dcm", "truncated pixel data"), ACCEPT, "wrong"),  # a valid input refused
    (InputError("other.dcm", "truncated pixel data"), REFUSE, "wrong"),  # names another file
    (InputError("scan.dcm", "first line\nsecond line"), REFUSE, "wrong"),  # not one line
    (KeyError("PixelData"), REFUSE, "traceback"),
])
def test_outcomes_are_told_apart(raised: Exception | None, expect: str, outcome: str) -> None:
    def call() -> int:
        if raised is not None:
            raise raised
        return 1

    assert judge(call, names=["scan.dcm"], expect=expect).kind == outcome


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _dicom(tmp_path: Path, *, rle: bool = False, **header: object) -> Path:
    from mammo_fakes import fake_mammogram, write_dicom

    path = write_dicom(tmp_path / "scan.dcm", fake_mammogram(64, 48))
    if header:
        import pydicom
        from pydicom.uid import RLELossless

        ds = pydicom.dcmread(path)
        if rle:
            ds.compress(RLELossless)
        for name, value in header.items():
            setattr(ds.file_meta if name == "TransferSyntaxUID" else ds, name, value)
        ds.save_as(path)
    return path


def test_inputs_that_gave_tracebacks(tmp_path: Path) -> None:
    """One of each input the fuzzing found a traceback or a silent acceptance for, now refused."""
    from mammoseg.dataset.dicom import read_pixels
    from mammoseg.dataset.layouts import open_layout
    from mammoseg.inference.predict import run_image_size
    from mammoseg.workflows.ablate import load_plan
    from mammoseg.training.config import build_config, merge_options
    from mammoseg.runs.rundir import RunDir

    cut = tmp_path / "cut.dcm"
    cut.write_bytes(_dicom(tmp_path).read_bytes()[:143])  # inside a value of the file meta
    toml = tmp_path / "bad.toml"
    index = tmp_path / "nbia" / "metadata.csv"
    index.parent.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    cases = [
        (cut, lambda: read_pixels(cut)),
        (tmp_path / "scan.dcm", lambda: read_pixels(_dicom(tmp_path, TransferSyntaxUID="1.2.3.4"))),
        (tmp_path / "scan.dcm", lambda: read_pixels(_dicom(tmp_path, PixelRepresentation=1, BitsStored=33))),
        (tmp_path / "scan.dcm", lambda: read_pixels(_dicom(tmp_path, Rows=[64, 64]))),
        (tmp_path / "scan.dcm", lambda: read_pixels(_dicom(tmp_path, rle=True, PhotometricInterpretation=["MONOCHROME2"] * 2))),
        (index, lambda: _write(index, b"") and open_layout(index.parent, "nbia")),
        (index, lambda: _write(index, b"Series UID,File Location\r\n1.2,caf\xe9\r\n") and open_layout(index.parent, "nbia")),
        (toml, lambda: merge_options(_write(toml, b'variant = "caf\xe9"\n'), {})),
        (toml, lambda: load_plan(_write(toml, b'[experiment]\ndata = "d"\nvariants = ["fcn_skips"]\n[arms]\nk3 = 3\n'))),
        (toml, lambda: merge_options(_write(toml, b"train = [1]\n"), {})),
        (toml, lambda: build_config({"variant": "fcn_skips", "data": "d", "dropout": 2.5}, toml)),
        (toml, lambda: build_config({"variant": "fcn_skips", "data": 5}, toml)),
        (run / "config.json", lambda: _write(run / "config.json", b'"config"') and RunDir(run).config()),
        (run / "config.json", lambda: _write(run / "config.json", b'{"image_size": -64}') and run_image_size(run, None)),
    ]
    for path, call in cases:
        with pytest.raises(InputError) as info:
            call()
        assert str(path) in str(info.value) and "\n" not in str(info.value)
