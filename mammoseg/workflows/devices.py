"""`ablate --devices 0,1,2,3`: the grid on one machine's accelerators, one run per device at a time.

Each run is a task (`mammoseg ablate-task --index I`, as in a Slurm array) in a process of its own whose
only visible device is its own (CUDA_VISIBLE_DEVICES), so the runs neither share memory nor see each
other's GPUs; a device takes the next pending run as soon as its run ends. The report is the grid's
(`report_grid`), written once every task has ended.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mammoseg.core.errors import InputError
from mammoseg.workflows.tasks import REQUEUE_EXIT, TASKS_FOLDER, GridOptions, GridReport, pending_tasks, report_grid

logger = logging.getLogger("mammoseg.ablate")

DEVICE_ENV = "CUDA_VISIBLE_DEVICES"
STOP_GRACE_SECONDS = 120
"""How long an interrupted `ablate --devices` waits for its workers to save and stop."""


def parse_devices(text: str) -> list[str]:
    """"0,1,2,3" -> ["0", "1", "2", "3"]; a device may be listed twice to run two runs on it at once."""
    devices = [part.strip() for part in text.split(",")]
    if not all(devices):
        raise InputError("--devices", f"expected a comma-separated list of device ids such as 0,1,2,3, got {text!r}")
    return devices


@dataclass
class _Worker:
    index: int
    name: str
    device: str
    process: subprocess.Popen
    log: IO[str]


def run_on_devices(options: GridOptions, devices: list[str], poll_seconds: float = 0.5) -> GridReport:
    """Every run of the plan that is not done, at most one per device at a time; then the grid's report."""
    plan = options.plan()
    pending = pending_tasks(plan)
    logger.info("experiment %s: %d of %d runs to do on %d devices (%s)", plan.experiment, len(pending),
                len(plan.runs), len(devices), ",".join(devices))
    free, running = list(devices), []
    try:
        while pending or running:
            while pending and free:
                running.append(_start(options, plan.runs[pending[0]].name, pending.pop(0), free.pop(0),
                                      plan.folder / TASKS_FOLDER, len(plan.runs)))
            time.sleep(poll_seconds)
            for worker in [w for w in running if w.process.poll() is not None]:
                running.remove(worker)
                free.append(worker.device)
                _ended(worker)
    except KeyboardInterrupt:
        _stop(running)
        raise
    return report_grid(options)


def _start(options: GridOptions, name: str, index: int, device: str, log_dir: Path, total: int) -> _Worker:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{name}.log", "a")  # noqa: SIM115  closed when the worker ends
    level = logging.getLogger("mammoseg").level
    verbosity = ["-q"] if level >= logging.WARNING else ["-v"] if level <= logging.DEBUG else []
    command = [sys.executable, "-m", "mammoseg", *verbosity, "ablate-task", *options.arguments(), "--index", str(index)]
    process = subprocess.Popen(command, env=os.environ | {DEVICE_ENV: device}, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    logger.info("run %d of %d: %s on device %s (log %s)", index + 1, total, name, device, log.name)
    return _Worker(index, name, device, process, log)


def _ended(worker: _Worker) -> None:
    worker.log.close()
    code = worker.process.returncode
    if code == 0:
        logger.info("%s: done on device %s", worker.name, worker.device)
    elif code == REQUEUE_EXIT:
        logger.warning("%s: stopped after saving; the same command resumes it", worker.name)
    else:
        logger.error("%s: failed on device %s (exit status %d; log %s)", worker.name, worker.device, code,
                     worker.log.name)


def _stop(running: list[_Worker]) -> None:
    """Ask every worker to save and stop (SIGTERM: the training loop stops at its next batch), then wait."""
    for worker in running:
        worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for worker in running:
        try:
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
        worker.log.close()
