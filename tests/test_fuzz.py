"""Bad input at scale: corrupted DICOMs (truncated, wrong header, broken RLE, multi-frame, colour),
description and index CSVs, TOML configs, non-images given to predict, run folders with a broken
config.json, and a prepare run over a tree of them. Each must end in a one-line reason, never a
traceback, and never cost what an earlier run wrote (see input_fuzz.py).

MAMMOSEG_FUZZ_CASES, MAMMOSEG_FUZZ_SEED and MAMMOSEG_FUZZ_SECONDS make a longer or other run; the
same cases run outside pytest with `python benchmarks/fuzz_inputs.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from input_fuzz import ACCEPT, EITHER, REFUSE, WEIGHTS, Fuzzer, run_fuzz, settings_from_env

from mammoseg.errors import InputError


def test_corrupted_inputs_end_in_one_line_reasons(tmp_path: Path) -> None:
    cases, seed, seconds = settings_from_env()
    report = run_fuzz(tmp_path, cases, seed, seconds)
    print(f"seed {seed}, {report.seconds:.1f} s\n{report.table()}")
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
