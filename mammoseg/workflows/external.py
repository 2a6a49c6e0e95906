"""External validation of an experiment: its runs evaluated on other prepared datasets, one report each.

An experiment lists them in an `[external]` table, name = prepared dataset (`prepare --test-only` puts
every image of a small outside set in the test split):

    [external]
    real-pairs = "experiments/runs/mias-data/real-pairs"

After the experiment's own report, each run is evaluated on the eval split of each dataset, at the
experiment's common operating point (chosen on the runs' own validation images, never on the external
ones), into RUN/eval/<split>@<name>/, and compared into <report_dir>/external-<name>/. In a cross-validated
experiment the models of the first fold stand for their arm and seed: every fold's model would test the same
outside images, and a seed would then count twice.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mammoseg.core.errors import InputError, MammosegError
from mammoseg.runs.rundir import RunDir, operating_point_of, read_json

if TYPE_CHECKING:
    from mammoseg.workflows.ablate import Plan

logger = logging.getLogger("mammoseg.ablate")

TABLE = "external"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def read_external(doc: dict[str, Any], path: Path) -> dict[str, Path]:
    """The experiment's [external] table: name -> prepared dataset folder (relative to the working folder,
    as `data` is)."""
    table = doc.get(TABLE, {})
    if not isinstance(table, dict):
        raise InputError(path, f"[{TABLE}] must be a table of name = \"prepared dataset folder\"")
    for name, folder in table.items():
        if not _NAME.match(name) or not isinstance(folder, str) or not folder:
            raise InputError(path, f"[{TABLE}] {name} = {folder!r}: a name of letters, digits, '.', '_' or '-', "
                                   "and the folder of a prepared dataset")
    return {name: Path(folder) for name, folder in table.items()}


def external_report_dir(plan: Plan, name: str) -> Path:
    return plan.report_dir / f"{TABLE}-{name}"


def validate_externally(plan: Plan, done: list[Path], target: float) -> list[Path]:
    """Evaluate the runs that stand for their arm and seed on every external dataset where that evaluation is
    missing or targets another sensitivity, each in a process of its own, and write one report per dataset;
    returns the reports written. A dataset not prepared yet is skipped with a warning."""
    from mammoseg.core.runtime import run_in_fresh_process
    from mammoseg.evaluation.evaluate import evaluate_run
    from mammoseg.reporting import write_report

    first = next((item.fold for item in plan.runs), None)
    standing = {plan.folder / item.name for item in plan.runs if item.fold == first}
    runs = [path for path in done if path in standing]
    reports = []
    for name, data in plan.external.items():
        if not (data / "dataset.json").is_file():
            logger.warning("external dataset %s: %s is not a prepared dataset (run `mammoseg prepare ... "
                           "--test-only` first); skipped", name, data)
            continue
        stale = [p for p in runs if not _current(RunDir(p), plan.eval_split, plan.eval_checkpoint, name, data, target)]
        for index, path in enumerate(stale, 1):
            logger.info("external dataset %s: evaluating %d of %d: %s", name, index, len(stale), path)
            run_in_fresh_process(partial(evaluate_run, data=data, data_name=name, target=target), path,
                                 plan.eval_split, plan.eval_checkpoint, what=f"evaluation of {path} on {name}")
        try:
            reports.append(write_report(runs, external_report_dir(plan, name), baseline=plan.baseline,
                                        split=plan.eval_split, primary=plan.primary_metrics, data_name=name,
                                        claims=plan.claims))
        except MammosegError as exc:
            logger.warning("external dataset %s: report not written: %s", name, exc)
    return reports


def _current(run: RunDir, split: str, checkpoint: str, name: str, data: Path, target: float) -> bool:
    """Whether the run holds an evaluation of this dataset at `target`, newer than its checkpoint."""
    metrics = read_json(run.eval_dir(split, name) / "metrics.json", required=False) or {}
    return (metrics.get("dataset") == str(data.resolve()) and operating_point_of(metrics).get("target_sensitivity") == target
            and run.is_evaluated(split, checkpoint, name))
