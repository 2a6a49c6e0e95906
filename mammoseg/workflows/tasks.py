"""One run of an ablation as a scheduler's task, and the grid's report once every task has ended.

A task is given only its index: `SLURM_ARRAY_TASK_ID` in a Slurm job array, `JOB_COMPLETION_INDEX` in
a Kubernetes Indexed Job, `--index` for `ablate --devices`. The index is the run's position in
`load_plan(...).runs`, the order the serial `ablate` follows, so every way of running the grid agrees on
which run is which, and a task of a resubmitted grid finds its run finished and does nothing.

A task's outcome is recorded in EXPERIMENT/.tasks/<run>.json (status, error, host, device, scheduler
task, attempt, times), so the report names each run that failed and why, even when the run failed
before its folder held anything.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammoseg.core.atomic import write_json, write_text
from mammoseg.core.errors import InputError, MammosegError
from mammoseg.core.stopping import ignore_stop_signals, stop_requested, stop_signals_caught
from mammoseg.runs.rundir import LOCK_OWNER_ENV, RunDir, RunLocked, read_json
from mammoseg.training.train import RunStopped
from mammoseg.workflows.ablate import (Plan, PlannedRun, load_plan, next_step, train_and_evaluate,
                                       wait_until_one_is_free, write_plan_report)

logger = logging.getLogger("mammoseg.ablate")

REQUEUE_EXIT = 75
"""A task's exit status when a stop signal ended it after saving (EX_TEMPFAIL): run it again to resume."""
FAILED_EXIT = 1
INDEX_ENVS = ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX")
"""Where a scheduler puts a task's index: Slurm's job arrays, Kubernetes' Indexed Jobs."""
JOB_NAME_ENV = "MAMMOSEG_JOB"
"""The Kubernetes Job's name, set in its manifest: with the index, the name every attempt of a task shares."""
TASKS_FOLDER = ".tasks"
TASK_TABLE = "tasks.csv"
TASK_COLUMNS = ("index", "run", "status", "error", "host", "device", "scheduler_task", "attempt")


@dataclass(frozen=True)
class GridOptions:
    """What `ablate` was given that decides its plan; a task is given the same, so its plan is the same."""

    config: Path
    seeds: int | None = None
    data: Path | None = None
    runs_dir: Path | None = None

    def plan(self) -> Plan:
        return load_plan(self.config, seeds=self.seeds, runs_dir=self.runs_dir, data=self.data)

    def arguments(self, absolute: bool = False) -> list[str]:
        """These options on a `mammoseg` command line; `absolute`: paths resolved from here (for a job that
        may start elsewhere)."""
        def path(value: Path) -> str:
            return str(Path(value).resolve() if absolute else value)

        out = ["--config", path(self.config)]
        if self.seeds is not None:
            out += ["--seeds", str(self.seeds)]
        if self.data is not None:
            out += ["--data", path(self.data)]
        if self.runs_dir is not None:
            out += ["--runs-dir", path(self.runs_dir)]
        return out


def task_index(given: int | None) -> int:
    """The task's index: `given` (--index), else the scheduler's (INDEX_ENVS)."""
    if given is not None:
        return given
    for name in INDEX_ENVS:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    raise InputError("--index", f"no task index: give --index or run as a scheduler task ({', '.join(INDEX_ENVS)})")


def scheduler_task() -> str | None:
    """The name every attempt of this scheduler task shares (a requeued Slurm task keeps its job id), or None."""
    if os.environ.get("SLURM_JOB_ID"):
        return f"slurm:{os.environ['SLURM_JOB_ID']}"
    if os.environ.get("JOB_COMPLETION_INDEX") and os.environ.get(JOB_NAME_ENV):
        return f"kubernetes:{os.environ[JOB_NAME_ENV]}:{os.environ['JOB_COMPLETION_INDEX']}"
    return None


def is_done(plan: Plan, item: PlannedRun) -> bool:
    """Trained to its epochs and evaluated since its checkpoint: nothing left for its task."""
    run = RunDir(plan.folder / item.name)
    return next_step(item, run)[0] == "finished" and run.is_evaluated(plan.eval_split, plan.eval_checkpoint)


def pending_tasks(plan: Plan) -> list[int]:
    """The indices of the runs that are not done, in the plan's order."""
    return [index for index, item in enumerate(plan.runs) if not is_done(plan, item)]


def record_path(plan: Plan, item: PlannedRun) -> Path:
    return plan.folder / TASKS_FOLDER / f"{item.name}.json"


def run_task(options: GridOptions, index: int) -> int:
    """Train and evaluate run `index` of the plan unless it is done; returns the task's exit status: 0 done,
    REQUEUE_EXIT stopped by a signal after saving, FAILED_EXIT failed (the log and the record say why)."""
    with stop_signals_caught():  # from the start: a signal while the plan loads is kept, not fatal
        plan = options.plan()
        if not 0 <= index < len(plan.runs):
            raise InputError(options.config, f"task index {index} is outside the plan's {len(plan.runs)} runs "
                                             f"(0-{len(plan.runs) - 1})")
        item = plan.runs[index]
        owner = scheduler_task()
        if owner:
            os.environ[LOCK_OWNER_ENV] = owner
        record = {"index": index, "run": item.name, "host": socket.gethostname(),
                  "device": os.environ.get("CUDA_VISIBLE_DEVICES"), "scheduler_task": owner,
                  "attempt": int(os.environ.get("SLURM_RESTART_COUNT") or 0) + 1, "started": time.time()}
        _write_record(plan, item, record, "running")
        logger.info("task %d of %d: %s (%s)", index, len(plan.runs), item.name, owner or "local")
        status = _attempt(plan, item, record)
    if status == REQUEUE_EXIT:
        ignore_stop_signals()
    return status


def _attempt(plan: Plan, item: PlannedRun, record: dict[str, Any]) -> int:
    """The task's work, its outcome recorded and logged with the run's name; the exit status."""
    index = record["index"]
    try:
        _work(plan, item)
    except RunStopped as exc:
        _write_record(plan, item, record, "stopped")
        logger.warning("task %d: %s; exit status %d asks for the task to be run again", index, exc, REQUEUE_EXIT)
        return REQUEUE_EXIT
    except MammosegError as exc:
        _write_record(plan, item, record, "failed", str(exc))
        logger.error("task %d: %s failed: %s", index, item.name, exc)
        return FAILED_EXIT
    except Exception as exc:  # a bug: recorded and named like any failure, then shown in full
        _write_record(plan, item, record, "failed", f"{type(exc).__name__}: {exc}")
        logger.exception("task %d: %s failed: %s: %s", index, item.name, type(exc).__name__, exc)
        return FAILED_EXIT
    _write_record(plan, item, record, "finished")
    logger.info("task %d: %s finished and evaluated", index, item.name)
    return 0


def _work(plan: Plan, item: PlannedRun) -> None:
    from mammoseg.core.runtime import start_backend_quietly

    run = RunDir(plan.folder / item.name)
    while True:
        step, state = next_step(item, run)
        if step == "failed":
            raise MammosegError(f"failed earlier ({state.get('error') or 'no message'}); "
                                f"delete {run.path} to train it again")
        if is_done(plan, item):
            logger.info("%s: already finished and evaluated", item.name)
            return
        if stop_requested():
            raise RunStopped(f"{run.path}: stopped by {stop_requested()} before it started")
        logger.info("%s: %s", item.name, {"finished": "evaluating", "resume": f"resuming after epoch "
                                          f"{state.get('epochs_done', 0)}", "train": "training"}[step])
        start_backend_quietly()
        try:
            train_and_evaluate(item.config, plan.runs_dir, run.path, plan.eval_split, plan.eval_checkpoint)
            return
        except RunLocked as exc:
            logger.info("%s; waiting until it is free", exc)
            wait_until_one_is_free([run])


def _write_record(plan: Plan, item: PlannedRun, record: dict[str, Any], status: str, error: str | None = None) -> None:
    record.update(status=status, error=error, **({} if status == "running" else {"ended": time.time()}))
    write_json(record_path(plan, item), record)


@dataclass
class GridReport:
    """The grid after its tasks: the comparison report (None when no run finished), the evaluated runs
    in the plan's order, and one row per planned run (TASK_COLUMNS)."""

    report: Path | None
    done: list[Path]
    rows: list[dict[str, Any]]

    @property
    def unfinished(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] != "finished"]


def report_grid(options: GridOptions) -> GridReport:
    """What each planned run came to, the comparison report of those that finished (the serial `ablate`'s
    report when all did) and REPORT_DIR/tasks.csv; every run that did not finish is logged with its error."""
    plan = options.plan()
    done: list[Path] = []
    rows = []
    for index, item in enumerate(plan.runs):
        run = RunDir(plan.folder / item.name)
        step, state = next_step(item, run)
        record = read_json(record_path(plan, item), required=False) or {}
        row = {key: record.get(key) for key in TASK_COLUMNS} | {"index": index, "run": item.name}
        if is_done(plan, item):
            row.update(status="finished", error=None)
            done.append(run.path)
        elif step == "failed":
            row.update(status="failed", error=record.get("error") or state.get("error"))
        else:
            row["status"] = record.get("status") if record.get("status") in ("failed", "stopped") else (
                "unfinished" if run.exists() else "not run")
        rows.append(row)
    result = GridReport(write_plan_report(plan, done), done, rows)
    for row in result.unfinished:
        logger.error("run %s (task %d) %s%s", row["run"], row["index"], row["status"],
                     f": {row['error']}" if row["error"] else "")
    write_text(plan.report_dir / TASK_TABLE, _csv(rows))
    return result


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TASK_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if row.get(k) is None else row[k] for k in TASK_COLUMNS} for row in rows)
    return buffer.getvalue()
