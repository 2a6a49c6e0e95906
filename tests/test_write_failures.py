"""A write that fails (disk full, I/O error) in prepare, train, evaluate or compare: the command stops
with one line, `error: <file>: <problem>`, exit status 2, and the file keeps its previous content."""

from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path

import pytest

from mammoseg.cli import main

PREPARE = ["--image-size", "64", "--positive-tiles", "1", "--negative-tiles", "1", "--images-per-shard", "4"]


def _fail_writes_of(monkeypatch: pytest.MonkeyPatch, name: str, code: int) -> None:
    """Make writes of files called `name` fail with `code`: ENOSPC when moved into place, EIO when flushed."""
    if code == errno.ENOSPC:
        replace = os.replace

        def failing_replace(src: str | Path, dst: str | Path, **kwargs: object) -> None:
            if Path(dst).name == name:
                raise OSError(code, os.strerror(code))
            replace(src, dst, **kwargs)

        monkeypatch.setattr(os, "replace", failing_replace)
    else:
        fsync = os.fsync

        def failing_fsync(fd: int) -> None:
            if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{Path(name).stem}."):
                raise OSError(code, os.strerror(code))
            fsync(fd)

        monkeypatch.setattr(os, "fsync", failing_fsync)


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["mammoseg", *args])
    try:
        main()
    except SystemExit as exited:
        return int(exited.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().err


def _assert_kept(code: int, err: str, path: Path, before: bytes, reason: str) -> None:
    assert code == 2
    assert err.strip().splitlines()[-1] == (f"error: {path}: cannot write this output ({reason}); "
                                            "its previous version, if any, is unchanged")
    assert "Traceback" not in err and err.count("error:") == 1
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if ".tmp" in p.name]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name a file descriptor's file")
def test_prepare_and_compare_keep_their_outputs(synthetic_cbis: Path, tiny_run: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "prepared"
    assert _main(monkeypatch, capsys, "prepare", str(synthetic_cbis), "--out", str(out), *PREPARE)[0] == 0
    before = (out / "dataset.json").read_bytes()
    with monkeypatch.context() as m:
        _fail_writes_of(m, "dataset.json", errno.ENOSPC)
        code, err = _main(m, capsys, "prepare", str(synthetic_cbis), "--out", str(out), *PREPARE)
    _assert_kept(code, err, out / "dataset.json", before, "disk full")

    report = tmp_path / "report"
    assert _main(monkeypatch, capsys, "compare", str(tiny_run), "--out", str(report))[0] == 0
    before = (report / "summary.csv").read_bytes()
    with monkeypatch.context() as m:
        _fail_writes_of(m, "summary.csv", errno.EIO)
        code, err = _main(m, capsys, "compare", str(tiny_run), "--out", str(report))
    _assert_kept(code, err, report / "summary.csv", before, os.strerror(errno.EIO))


def test_train_and_evaluate_keep_their_outputs(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    metrics = run / "eval" / "test" / "metrics.json"
    before = metrics.read_bytes()
    with monkeypatch.context() as m:
        _fail_writes_of(m, "metrics.json", errno.ENOSPC)
        code, err = _main(m, capsys, "evaluate", str(run))
    _assert_kept(code, err, metrics, before, "disk full")

    state, last = (run / "state.json").read_bytes(), (run / "last.keras").read_bytes()
    with monkeypatch.context() as m:
        _fail_writes_of(m, "state.json", errno.ENOSPC)
        code, err = _main(m, capsys, "--quiet", "train", "--resume", str(run), "--epochs", "3")
    _assert_kept(code, err, run / "state.json", state, "disk full")
    assert (run / "last.keras").read_bytes() == last and not (run / ".lock").exists()
