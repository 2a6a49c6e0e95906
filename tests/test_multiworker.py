"""`train --distribute multi-worker` across two processes on 127.0.0.1, as on a cluster: TF_CONFIG per
worker, MultiWorkerMirroredStrategy, the chief writing the run folder; a lost worker stops the other
with a clear message, and the run resumes from its last finished epoch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mammoseg.runs.rundir import RunDir
from train_data import write_easy_dataset

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240
OPTIONS = ["--variant", "dilated_resize", "--width", "0.125", "--batch-size", "4", "--deterministic"]


def _free_ports(count: int) -> list[int]:
    """Ports the system hands out now (bound then released), or skip where the loopback cannot be bound."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    except OSError as exc:
        pytest.skip(f"cannot bind a port on 127.0.0.1 ({exc}): no multi-worker cluster here")
    finally:
        for s in sockets:
            s.close()


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, CUDA_VISIBLE_DEVICES="", KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
                PYTHONPATH=str(ROOT), **extra)


def _workers(args: list[str], count: int = 2) -> list[subprocess.Popen]:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(count)]}
    return [subprocess.Popen([sys.executable, "-m", "mammoseg", "train", *args],
                             env=_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})),
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(count)]


def _finish(process: subprocess.Popen, timeout: float = TIMEOUT) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"worker did not end within {timeout} s: {err[-2000:]}")
    return process.returncode, err


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_easy_dataset(tmp_path_factory.mktemp("easy"))


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    return [v.numpy() for v in keras.saving.load_model(path, compile=False).weights]


def test_two_workers_train_like_one_process_and_survive_a_lost_worker(data: Path, tmp_path: Path) -> None:
    """Two workers and, beside them, one process at the same global batch; one worker is killed after
    the first epoch is committed: the other stops with a clear message, both resume, and the finished
    run is the single process's run up to the order of float sums."""
    # Without dropout: each replica draws its masks for its part of the batch, not the global batch's.
    (tmp_path / "no-dropout.toml").write_text("dropout = false\n")
    args = [*OPTIONS, "--data", str(data), "--epochs", "3", "--runs-dir", str(tmp_path),
            "--config", str(tmp_path / "no-dropout.toml")]
    single = subprocess.Popen([sys.executable, "-m", "mammoseg", "train", *args, "--run-name", "single"],
                              env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    chief_process, other_process = _workers([*args, "--run-name", "mw", "--distribute", "multi-worker"])
    run = RunDir(tmp_path / "mw")
    deadline = time.monotonic() + TIMEOUT
    while run.state().get("epochs_done", 0) < 1 and time.monotonic() < deadline:
        assert chief_process.poll() is None, chief_process.communicate()[1][-3000:]
        time.sleep(0.2)
    other_process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    code, err = _finish(chief_process, timeout=90)
    stopped_after = time.monotonic() - killed_at
    other_process.communicate()
    assert code == 2, err[-3000:]
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"error: {run.path}: another worker stopped or cannot be reached"), err[-3000:]
    assert "--resume" in message and stopped_after < 60
    assert run.state()["status"] == "running" and 1 <= run.state()["epochs_done"] < 3

    results = [_finish(w) for w in _workers(["--resume", str(run.path)])]
    assert all(c == 0 for c, _ in results), results[0][1][-3000:] + results[1][1][-3000:]
    assert _finish(single)[0] == 0
    other, alone = RunDir(run.path / ".workers" / "worker-1"), RunDir(tmp_path / "single")
    assert run.state()["status"] == "finished" and run.config()["distribution"]["replicas"] == 2
    assert [r["epoch"] for r in run.read_history()] == [1, 2, 3] and not (run.path / ".lock").exists()
    # the workers hold one model: identical checkpoints and (all-reduced) logs
    assert all(np.array_equal(a, b) for a, b in zip(_weights(run.last), _weights(other.last)))
    columns = ("loss", "val_loss", "val_pixel_f1")
    assert [[r[c] for c in columns] for r in run.read_history()] == [[r[c] for c in columns] for r in other.read_history()]
    # one process, same global batch: the same losses up to float summation order (README, RESULTS.md)
    losses = [(mw[c], one[c]) for mw, one in zip(run.read_history(), alone.read_history()) for c in ("loss", "val_loss")]
    assert all(a == pytest.approx(b, rel=2e-3) for a, b in losses), losses
