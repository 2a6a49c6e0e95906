"""The grid on a real one-node Slurm (scripts/slurm/local_cluster.sh), not a mock: a job array of 2 arms x
2 seeds, the report job after it, one task stopped by SIGUSR1 and requeued; the runs, their weights and
the report equal a serial `ablate` of the same experiment.

Opt-in, since it starts daemons and may install slurm-wlm (`make slurm-check` sets MAMMOSEG_SLURM_CHECK):
unset, the test skips; "1", it runs where Slurm starts and skips, saying why, where it cannot; "require",
a Slurm that cannot start fails it.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mammoseg.metrics.catalog import TIMED
from mammoseg.runs.rundir import RunDir
from train_data import write_easy_dataset

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm" / "local_cluster.sh"
CHECK_ENV = "MAMMOSEG_SLURM_CHECK"
START_SECONDS = 1500  # installing slurm-wlm and munge on a fresh machine included
GRID_SECONDS = 1500
RUNS = [f"{arm}-seed{seed}" for seed in (0, 1) for arm in ("dilated_resize", "dilated_transpose")]
SIGNALLED, REQUEUED = 0, 1  # the tasks stopped by SIGUSR1 (then requeued by themselves) and by `scontrol requeue`


@pytest.fixture(scope="module")
def slurm() -> dict[str, str]:
    """Client environment of a running one-node cluster, stopped after the module's tests."""
    mode = os.environ.get(CHECK_ENV, "")
    if not mode:
        pytest.skip(f"the Slurm check starts daemons (and may install slurm-wlm): set {CHECK_ENV}=1, or run "
                    "`make slurm-check`")
    try:
        started = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=START_SECONDS)
        reason = started.stderr.strip().splitlines()[-1] if started.returncode else ""
    except subprocess.TimeoutExpired:
        reason = f"local_cluster.sh start took over {START_SECONDS}s"
    if reason:
        (pytest.fail if mode == "require" else pytest.skip)(f"Slurm cannot start here: {reason}")
    env = dict(os.environ, SLURM_CONF=started.stdout.strip(), PATH=f"{os.environ['PATH']}:/usr/sbin")
    yield env
    subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=120)


def _jobs(job: str, env: dict[str, str]) -> list[dict[str, str]]:
    """`scontrol show job` of a job (an array: one entry per task) as key -> value."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, env=env,
                         check=True, timeout=60).stdout
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]


def _wait(what: str, condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {seconds}s"
        time.sleep(0.2)


def _experiment(tmp_path: Path) -> Path:
    data = write_easy_dataset(tmp_path / "data")
    setup = (f"export PATH={Path(sys.executable).parent}:$PATH PYTHONPATH={ROOT} CUDA_VISIBLE_DEVICES= "
             "KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2")
    toml = tmp_path / "grid.toml"
    toml.write_text(textwrap.dedent(f"""
        [experiment]
        name = "grid"
        data = "{data}"
        seeds = 2
        variants = ["dilated_resize", "dilated_transpose"]
        [train]
        width = 0.125
        epochs = 6
        batch_size = 4
        learning_rate = 3e-3
        deterministic = true
        [cluster]
        cpus = 1
        mem = "2G"
        concurrency = 2
        signal_seconds = 30
        setup = "{setup}"
    """))
    return toml


def _stop_and_requeue(array: str, runs: Path, env: dict[str, str]) -> None:
    """Once each run has saved epoch 1: SIGUSR1 to task 0's batch shell (what --signal=B:USR1 does before a
    time limit: the task saves and requeues itself), and `scontrol requeue` of task 1 (a preemption: Slurm
    sends SIGTERM, the task saves, Slurm requeues it). Slurm holds a requeued job about two minutes before
    it may start again: the test lets both start at once."""
    pending = {SIGNALLED: RunDir(runs / RUNS[SIGNALLED]), REQUEUED: RunDir(runs / RUNS[REQUEUED])}
    deadline = time.monotonic() + GRID_SECONDS
    while pending:  # each task as soon as its run saved epoch 1, while the run has 5 epochs to go
        assert time.monotonic() < deadline, f"{sorted(pending)}: epoch 1 not saved within {GRID_SECONDS}s"
        for index, run in list(pending.items()):
            if run.state().get("epochs_done", 0) < 1:
                continue
            del pending[index]
            if index == REQUEUED:
                subprocess.run(["scontrol", "requeue", f"{array}_{index}"], env=env, check=True, timeout=60)
                continue
            # scancel signals the task at once, then keeps retrying while slurmctld answers, for the array's
            # pending tasks, "Job can not be altered now": it is stopped before a retry signals it again.
            subprocess.Popen(["timeout", "5", "scancel", "--batch", "--signal=USR1", f"{array}_{index}"], env=env)
        time.sleep(0.1)
    for index in (SIGNALLED, REQUEUED):
        task = f"{array}_{index}"
        _wait(f"task {task} requeued", lambda: _jobs(task, env)[0].get("Restarts") == "1", 300)
        _wait(f"task {task} pending", lambda: _jobs(task, env)[0]["JobState"] == "PENDING", 300)
        subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], env=env, check=True, timeout=60)




def _rows(path: Path) -> list[dict[str, str]]:
    """summary.csv without the timing columns."""
    with open(path) as f:
        return [{k: v for k, v in row.items() if not k.startswith(TIMED)} for row in csv.DictReader(f)]


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(path, compile=False).get_weights()


def test_grid_as_a_job_array_with_a_requeued_task_equals_the_serial_ablate(slurm: dict[str, str],
                                                                            tmp_path: Path) -> None:
    toml = _experiment(tmp_path)
    runs = tmp_path / "slurm" / "runs"
    submitted = subprocess.run([sys.executable, "-m", "mammoseg", "submit", "--config", str(toml), "--runs-dir",
                                str(runs)], capture_output=True, text=True, env=slurm, cwd=tmp_path, timeout=600)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    array = re.search(r"array job (\d+)", submitted.stdout).group(1)
    report = re.search(r"report job (\d+)", submitted.stdout).group(1)
    _stop_and_requeue(array, runs / "grid", slurm)
    _wait("the array and the report job", lambda: not subprocess.run(
        ["squeue", "-h", "-j", f"{array},{report}"], capture_output=True, text=True, env=slurm).stdout.strip(),
        GRID_SECONDS)

    tasks = sorted(_jobs(array, slurm), key=lambda job: int(job["ArrayTaskId"]))
    assert [(t["ArrayTaskId"], t["JobState"], t["ExitCode"]) for t in tasks] == \
        [(str(i), "COMPLETED", "0:0") for i in range(len(RUNS))]
    assert [t["Restarts"] for t in tasks] == ["1" if i in (SIGNALLED, REQUEUED) else "0" for i in range(len(RUNS))]
    (compare,) = _jobs(report, slurm)
    assert (compare["JobState"], compare["ExitCode"]) == ("COMPLETED", "0:0")
    assert compare["StartTime"] >= max(t["EndTime"] for t in tasks)  # ISO times: ordered as text
    for index, signal in ((SIGNALLED, "SIGUSR1"), (REQUEUED, "SIGTERM")):
        log = (runs / "grid" / "slurm" / f"grid-{array}_{index}.out").read_text()
        assert f"stopped by {signal}" in log and "attempt 2" in log and "resuming after epoch" in log, log[-3000:]
    assert "requeueing it" in (runs / "grid" / "slurm" / f"grid-{array}_{SIGNALLED}.out").read_text()
    with open(tmp_path / "slurm" / "reports" / "grid" / "tasks.csv") as f:
        assert [(r["run"], r["status"]) for r in csv.DictReader(f)] == [(name, "finished") for name in RUNS]

    serial = subprocess.run([sys.executable, "-m", "mammoseg", "ablate", "--config", str(toml), "--runs-dir",
                             str(tmp_path / "serial" / "runs")], capture_output=True, text=True, env=slurm,
                            timeout=GRID_SECONDS)
    assert serial.returncode == 0, serial.stderr[-3000:]
    for name in RUNS:
        on_slurm, alone = RunDir(runs / "grid" / name), RunDir(tmp_path / "serial" / "runs" / "grid" / name)
        assert len(on_slurm.read_history()) == 6
        assert all(np.array_equal(a, b) for a, b in zip(_weights(on_slurm.last), _weights(alone.last), strict=True))
    assert _rows(tmp_path / "slurm" / "reports" / "grid" / "summary.csv") == \
        _rows(tmp_path / "serial" / "reports" / "grid" / "summary.csv")
