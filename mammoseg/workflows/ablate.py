"""`mammoseg ablate`: the arm × seed grid of an experiment config, trained, evaluated and compared.

Idempotent: finished runs are skipped, interrupted ones resumed, evaluations redone only when missing
or older than their checkpoint. So an ablation killed at any point is continued by running the same
command again.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from mammoseg.core.conventions import SPLITS
from mammoseg.core.errors import InputError, MammosegError
from mammoseg.dataset.prepare import fold_datasets
from mammoseg.evaluation.evaluate import GATE_KEY
from mammoseg.metrics.detection import TARGET_SENSITIVITY
from mammoseg.training.config import TRAIN_KEYS, TrainConfig, build_config, check_keys, read_toml, sub_table
from mammoseg.reporting.claims import CLAIMS, Claim, read_claims
from mammoseg.runs.rundir import CHECKPOINTS, RunDir, RunLocked, operating_point_of, resolve_runs_dir, run_name
from mammoseg.workflows.evidence import TABLES, EvidenceSettings, gather_evidence, read_settings
from mammoseg.workflows.external import TABLE as EXTERNAL
from mammoseg.workflows.external import read_external, validate_externally

logger = logging.getLogger("mammoseg.ablate")

EXPERIMENT_KEYS = ("name", "data", "seeds", "variants", "eval_split", "eval_checkpoint", "runs_dir", "report_dir",
                   "baseline", "primary_metrics")
ARM_KEYS = tuple(k for k in TRAIN_KEYS if k not in ("data", "seed", "run_name"))


@dataclass
class PlannedRun:
    arm: str
    seed: int
    config: TrainConfig
    fold: str | None = None  # the fold dataset's folder (fold-k) in a cross-validated experiment

    @property
    def name(self) -> str:
        return run_folder(self.arm, self.seed, self.fold)


def run_folder(arm: str, seed: int, fold: str | None) -> str:
    """A run's folder in its experiment's: `<arm>-seed<s>`, or `fold-k/<arm>-seed<s>` (`runs.folds`)."""
    return run_name(arm, seed) if fold is None else f"{fold}/{run_name(arm, seed)}"


@dataclass
class Plan:
    experiment: str
    runs: list[PlannedRun]
    runs_dir: Path
    eval_split: str
    eval_checkpoint: str
    report_dir: Path
    baseline: str | None
    primary_metrics: tuple[str, ...]
    evidence: EvidenceSettings = EvidenceSettings()
    claims: tuple[Claim, ...] = CLAIMS  # declared in the experiment's [claims.KEY] tables, else the article's
    external: dict[str, Path] = field(default_factory=dict)  # [external]: name -> dataset (`workflows.external`)

    @property
    def folder(self) -> Path:
        return self.runs_dir / self.experiment


def load_plan(config_path: str | Path, *, seeds: int | None = None, runs_dir: str | Path | None = None,
              data: str | Path | None = None) -> Plan:
    """Read an experiment TOML: [experiment], shared [train] options, optional [arms.NAME] overrides.

    Arms are the `variants` listed (named after the variant) plus each `[arms.NAME]` table, whose
    `variant` key is required. Seeds: an integer N (seeds 0..N-1) or an explicit list. Data prepared with
    `--folds K` (a folder holding folds.json) is cross-validated: every arm and seed is run on each fold
    dataset, one more factor of the grid.
    """
    from mammoseg.reporting import check_primary

    path = Path(config_path)
    doc = read_toml(path)
    check_keys(doc, path, ("experiment", "train", "arms", "claims", "cluster", EXTERNAL, *TABLES))
    experiment = sub_table(doc, "experiment", path)
    check_keys(experiment, f"{path} [experiment]", EXPERIMENT_KEYS)
    _check_experiment(experiment, path)
    shared = sub_table(doc, "train", path)
    check_keys(shared, f"{path} [train]", ARM_KEYS)
    name = experiment.get("name") or path.stem
    data = str(data or experiment.get("data") or "")
    if not data:
        raise InputError(path, "no dataset: set data in [experiment] or pass --data")
    seed_spec = seeds if seeds is not None else experiment.get("seeds", 1)
    seed_list = list(range(seed_spec)) if isinstance(seed_spec, int) else list(seed_spec) if isinstance(seed_spec, list) else []
    if isinstance(seed_spec, bool) or not seed_list or not all(isinstance(s, int) and s >= 0 for s in seed_list):
        raise InputError(path, f"seeds must be a positive count or a list of non-negative integers, got {seed_spec!r}")

    arms: dict[str, dict[str, Any]] = {v: {"variant": v} for v in experiment.get("variants", [])}
    for arm_name in sub_table(doc, "arms", path):
        table = sub_table(doc["arms"], arm_name, path, f"arms.{arm_name}")
        check_keys(table, f"{path} [arms.{arm_name}]", ARM_KEYS)
        if "variant" not in table:
            raise InputError(path, f"[arms.{arm_name}] needs a variant")
        arms[arm_name] = dict(table)
    if not arms:
        raise InputError(path, "no arms: list variants in [experiment] or add [arms.NAME] tables")

    folds: list[str | None] = list(fold_datasets(data) or [None])
    runs = []  # seed-major: an ablation stopped part-way still has every arm (and fold) at the seeds it reached
    for seed in seed_list:
        for fold in folds:
            for arm_name, overrides in arms.items():
                values = {**shared, **overrides, "data": data if fold is None else str(Path(data) / fold),
                          "seed": seed, "run_name": f"{name}/{run_folder(arm_name, seed, fold)}"}
                values["init_encoder_from"] = _encoder_source(values.get("init_encoder_from"), arm_name, seed, path)
                runs.append(PlannedRun(arm_name, seed, build_config(values, f"{path} [arms.{arm_name}]"), fold))
    primary = experiment.get("primary_metrics")
    if primary is not None and not (isinstance(primary, list) and all(isinstance(k, str) for k in primary)):
        raise InputError(path, f"primary_metrics must be a list of metric names, got {primary!r}")
    try:
        primary = check_primary(primary)
    except MammosegError as exc:
        raise InputError(path, str(exc)) from exc
    root = resolve_runs_dir(runs_dir, experiment.get("runs_dir"))
    report_dir = Path(experiment.get("report_dir") or root.parent / "reports" / name)
    return Plan(name, runs, root, experiment.get("eval_split", "test"), experiment.get("eval_checkpoint", "best"),
                report_dir, experiment.get("baseline"), primary, read_settings(doc, path),
                read_claims(doc.get("claims"), str(path), list(arms)), read_external(doc, path))


def _encoder_source(template: Any, arm: str, seed: int, path: Path) -> Any:
    """`init_encoder_from` for one run: `{arm}` and `{seed}` filled in, so that each arm and seed starts from its
    own earlier run (`"experiments/runs/study/{arm}-seed{seed}"`: the synthetic study's run of that arm and seed).
    A list gives seed k its entry k mod n: every arm of a seed starts from the same encoder, and the sources
    take turns over the seeds (a crossover, so that no one source's network family is favoured)."""
    if isinstance(template, list):
        if not template or not all(isinstance(t, str) for t in template):
            raise InputError(path, f"init_encoder_from must be a run folder or a list of them, got {template!r}")
        template = template[seed % len(template)]
    if not isinstance(template, str):
        return template
    try:
        return template.format(arm=arm, seed=seed)
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(path, f"init_encoder_from {template!r}: only {{arm}} and {{seed}} can be filled in "
                               f"({exc})") from None


def _check_experiment(experiment: dict[str, Any], path: Path) -> None:
    """Types and choices of the [experiment] values, before they reach paths and the runs."""
    where = f"{path} [experiment]"
    for key in ("name", "data", "runs_dir", "report_dir", "baseline"):
        if not isinstance(experiment.get(key, ""), str):
            raise InputError(where, f"{key} must be a string, got {experiment[key]!r}")
    variants = experiment.get("variants", [])
    if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
        raise InputError(where, f"variants must be a list of variant names, got {variants!r}")
    for key, choices in (("eval_split", SPLITS), ("eval_checkpoint", CHECKPOINTS)):
        if key in experiment and experiment[key] not in choices:
            raise InputError(where, f"{key} must be one of {', '.join(choices)}, got {experiment[key]!r}")


def run_ablation(config_path: str | Path, *, seeds: int | None = None, runs_dir: str | Path | None = None,
                 data: str | Path | None = None) -> list[Path]:
    """Train, evaluate and compare every planned run; returns the evaluated run folders.

    Each run is trained and evaluated in a process of its own (`run_in_fresh_process`), so memory
    that TensorFlow keeps after one run cannot add up over a long ablation."""
    from mammoseg.core.runtime import run_in_fresh_process
    plan = load_plan(config_path, seeds=seeds, runs_dir=runs_dir, data=data)
    total = len(plan.runs)
    logger.info("experiment %s: %d runs into %s", plan.experiment, total, plan.folder)
    done: list[Path] = []
    pending = list(enumerate(plan.runs, 1))
    while pending:
        held: list[tuple[int, PlannedRun]] = []
        for index, item in pending:
            run = RunDir(plan.folder / item.name)
            step, state = next_step(item, run)
            if step == "finished":
                logger.info("run %d of %d: %s already finished", index, total, item.name)
            elif step == "failed":
                logger.warning("run %d of %d: %s failed earlier (%s); skipped — delete the folder to retry",
                               index, total, item.name, state.get("error", "no message"))
                continue
            elif step == "resume":
                logger.info("run %d of %d: resuming %s after epoch %d", index, total, item.name,
                            state.get("epochs_done", 0))
            else:
                logger.info("run %d of %d: training %s", index, total, item.name)
            if step == "finished" and run.is_evaluated(plan.eval_split, plan.eval_checkpoint):
                logger.info("run %d of %d: evaluation of %s up to date", index, total, item.name)
            else:
                try:
                    run_in_fresh_process(train_and_evaluate, item.config, plan.runs_dir, run.path,
                                         plan.eval_split, plan.eval_checkpoint, what=f"run {run.path}")
                except RunLocked as exc:
                    logger.info("run %d of %d: %s; coming back to it when it is free", index, total, exc)
                    held.append((index, item))
                    continue
            done.append(run.path)
        if held:
            wait_until_one_is_free([RunDir(plan.folder / item.name) for _, item in held])
        pending = held
    order = {plan.folder / item.name: i for i, item in enumerate(plan.runs)}
    done.sort(key=order.__getitem__)
    write_plan_report(plan, done)
    return done


def next_step(item: PlannedRun, run: RunDir) -> tuple[str, dict[str, Any]]:
    """What a planned run needs next, as its folder says, and its state: "finished" (trained to its epochs;
    its evaluation may still be due), "failed" (an earlier attempt failed: left alone until its folder is
    deleted), "resume" or "train"."""
    state = run.state() if run.exists() else {"status": "new"}
    if state["status"] == "finished" and state.get("epochs_done", 0) >= item.config.epochs:
        return "finished", state
    if state["status"] == "failed":
        return "failed", state
    return ("resume" if run.exists() else "train"), state


def write_plan_report(plan: Plan, done: list[Path]) -> Path | None:
    """The comparison report of the plan's evaluated runs `done` (in the plan's order); None (with a warning
    saying why) when there is nothing to compare."""
    from mammoseg.reporting import write_report

    if not done:
        return None
    target = align_operating_points(plan, done)
    gather_evidence(plan)
    try:
        out = write_report(done, plan.report_dir, baseline=plan.baseline, split=plan.eval_split,
                           primary=plan.primary_metrics, claims=plan.claims)
    except MammosegError as exc:
        logger.warning("comparison report not written: %s", exc)
        return None
    logger.info("report: %s", out)
    for report in validate_externally(plan, done, target):
        logger.info("external validation report: %s", report)
    return out


def common_target(metrics: list[dict[str, Any]]) -> float:
    """The lesion sensitivity every run's operating point targets: the declared TARGET_SENSITIVITY, or the
    highest that every run reaches on its validation split, if lower. Chosen on validation alone, the same for
    every arm, so arms are compared at equal validation sensitivity and no test image chooses it. A run that did
    not learn (left out of every claim) does not lower it."""
    reach = []
    for m in metrics:
        if m.get(GATE_KEY, {}).get("learned") is False:
            continue
        point = operating_point_of(m)
        best = point.get("val_max_sensitivity")
        if best is None:  # evaluated before the maximum was recorded: a run short of its target stops at it
            best = point.get("val_sensitivity") if point.get("target_reached") is False else TARGET_SENSITIVITY
        if best is not None and math.isfinite(best):
            reach.append(float(best))
    return min([TARGET_SENSITIVITY, *reach])


def align_operating_points(plan: Plan, done: list[Path]) -> float:
    """Re-evaluate, each in a process of its own, the runs whose operating point targets another sensitivity
    than `common_target` of them all; returns that target."""
    from mammoseg.core.runtime import run_in_fresh_process
    from mammoseg.evaluation.evaluate import evaluate_run
    from mammoseg.runs.rundir import read_json

    def read(path: Path) -> dict[str, Any]:
        return read_json(RunDir(path).eval_dir(plan.eval_split) / "metrics.json", required=False) or {}

    target = common_target([read(path) for path in done])
    stale = [p for p in done if operating_point_of(read(p)).get("target_sensitivity")
             != target]
    if stale:
        logger.info("operating point: %.3f lesion sensitivity on validation, the most every run reaches (%s "
                    "declared); re-evaluating %d runs at it", target, TARGET_SENSITIVITY, len(stale))
    for index, path in enumerate(stale, 1):
        logger.info("re-evaluating %d of %d: %s", index, len(stale), path.name)
        run_in_fresh_process(partial(evaluate_run, target=target), path, plan.eval_split, plan.eval_checkpoint,
                             what=f"evaluation of {path}")
    return target


def wait_until_one_is_free(runs: list[RunDir], poll_seconds: float = 1.0) -> None:
    """Block while another live process holds every one of `runs`."""
    while all(run.holder() is not None for run in runs):
        time.sleep(poll_seconds)


def train_and_evaluate(config: TrainConfig, runs_dir: Path, run_path: Path, split: str, checkpoint: str) -> None:
    """One run's work in its own process, holding the run's lock throughout (another `ablate` on the same
    experiment skips the run meanwhile): train it new, resume it or leave it finished, as its folder
    says once locked, then evaluate it unless its evaluation is current."""
    from mammoseg.evaluation.evaluate import evaluate_run
    from mammoseg.training.train import resume, train

    run = RunDir(run_path)
    with run.lock():
        if not run.exists():
            train(config, runs_dir)
        elif not (run.is_finished() and run.state().get("epochs_done", 0) >= config.epochs):
            resume(run_path, {"epochs": config.epochs})
        if not run.is_evaluated(split, checkpoint):
            logger.info("evaluating %s on %s", run_path.name, split)
            evaluate_run(run_path, split, checkpoint)
