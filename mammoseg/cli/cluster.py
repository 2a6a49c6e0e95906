"""Commands that run an ablation's grid on a scheduler: submit, and the two its jobs run (ablate-task,
ablate-report). Each reads the plan, whose runs' options are checked against the models (Keras), so each is
marked as running a backend: its start-up noise stays hidden."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mammoseg.cli.backend import BackendCommand

COMMANDS: list[click.Command] = []


def grid_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--config, --seeds, --data, --runs-dir: what decides the plan, given alike to `ablate` and its tasks."""
    for option in reversed((
        click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="Experiment TOML ([experiment], [train], [arms.NAME], [cluster])."),
        click.option("--seeds", type=click.IntRange(min=1), help="Seeds 0..N-1 instead of the config's."),
        click.option("--data", type=click.Path(file_okay=False, path_type=Path),
                     help="Dataset instead of the config's."),
        click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Where run folders go.  [default: runs_dir of the TOML, else env MAMMOSEG_RUNS_DIR, else "
                          "experiments/runs]"),
    )):
        command = option(command)
    return command


def _grid(config_file: Path, seeds: int | None, data: Path | None, runs_dir: Path | None) -> Any:
    from mammoseg.workflows.tasks import GridOptions

    return GridOptions(config_file, seeds, data, runs_dir)


@click.command("submit", cls=BackendCommand)
@grid_options
@click.option("--to", "scheduler", type=click.Choice(["slurm", "kubernetes"]), default="slurm", show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the job scripts (manifests) and submit nothing.")
@click.option("--partition", help="Slurm partition of the run tasks.  [default: [cluster] partition]")
@click.option("--gpus", type=click.IntRange(min=0), help="GPUs per task.  [default: [cluster] gpus, else 0]")
@click.option("--cpus", type=click.IntRange(min=1), help="CPUs per task.  [default: [cluster] cpus, else 4]")
@click.option("--mem", help="Memory per task, e.g. 32G.  [default: [cluster] mem, else the cluster's]")
@click.option("--time", "time_limit", help="Time limit per task, e.g. 12:00:00.  [default: [cluster] time]")
@click.option("--concurrency", type=click.IntRange(min=1), help="Tasks at once (Slurm's %N).  [default: all]")
@click.option("--setup", help="Shell line run before mammoseg in each job, e.g. 'source .venv/bin/activate'.")
@click.option("--image", help="Kubernetes: container image.  [default: [cluster] image]")
def submit_command(config_file: Path, seeds: int | None, data: Path | None, runs_dir: Path | None, scheduler: str,
                   dry_run: bool, time_limit: str | None, **resources: Any) -> None:
    """Submit an ablation's grid to a scheduler: one task per run not yet done, then the report.

    Slurm: a job array (task i = run i of the plan, SLURM_ARRAY_TASK_ID) asking for --requeue and
    --signal=B:USR1@N, so a task stopped by its time limit or a preemption saves and is requeued, and a
    job depending on it (afterany) that runs ablate-report. Scripts and logs: RUNS/EXPERIMENT/slurm/.
    Kubernetes: an Indexed Job (JOB_COMPLETION_INDEX) and a report Job, written to
    RUNS/EXPERIMENT/kubernetes/ for kubectl. Resources: the TOML's [cluster] table, then these options.

    \b
    Examples:
      mammoseg submit --config experiments/ablation.toml --dry-run
      mammoseg submit --config experiments/ablation.toml --partition gpu --gpus 1 --time 12:00:00
      mammoseg submit --config experiments/ablation.toml --to kubernetes --image registry/mammoseg:1
    """
    from mammoseg.workflows.cluster import read_resources

    grid = _grid(config_file, seeds, data, runs_dir)
    chosen = read_resources(config_file, time=time_limit, **resources)
    if scheduler == "kubernetes":
        from mammoseg.workflows.kubernetes import job_name, manifests

        texts = manifests(grid, chosen, write=not dry_run)
        _show(texts, dry_run)
        job, report = list(texts)
        name = job_name(grid.plan().experiment)
        click.echo(f"kubectl apply -f {job}\n# once `kubectl get job {name}` shows it complete (or failed):\n"
                   f"kubectl apply -f {report}")
        return
    from mammoseg.workflows.slurm import submit

    submission = submit(grid, chosen, dry_run=dry_run)
    _show(submission.scripts, dry_run)
    if dry_run:
        click.echo("\n".join(submission.commands))
    else:
        if submission.array_job:
            click.echo(f"array job {submission.array_job}: {len(grid.plan().runs)} runs planned")
        click.echo(f"report job {submission.report_job} (after the array)")


def _show(texts: dict[Path, str], dry_run: bool) -> None:
    for path, text in texts.items():
        click.echo(f"# {path}\n{text}" if dry_run else f"wrote {path}")


COMMANDS.append(submit_command)


@click.command("ablate-task", cls=BackendCommand)
@grid_options
@click.option("--index", type=click.IntRange(min=0),
              help="Which run of the plan.  [default: $SLURM_ARRAY_TASK_ID, else $JOB_COMPLETION_INDEX]")
def ablate_task_command(config_file: Path, seeds: int | None, data: Path | None, runs_dir: Path | None,
                        index: int | None) -> None:
    """Train and evaluate one run of an ablation's plan: what each task of a submitted grid runs.

    A run already finished and evaluated is left as it is; an interrupted one is resumed. Exit status:
    0 done, 75 stopped by SIGUSR1 or SIGTERM after saving (run the task again to resume), 1 failed
    (the run's name and the error are logged and recorded for ablate-report).

    \b
    Example:
      SLURM_ARRAY_TASK_ID=3 mammoseg ablate-task --config experiments/ablation.toml
    """
    from mammoseg.workflows.tasks import run_task, task_index

    sys.exit(run_task(_grid(config_file, seeds, data, runs_dir), task_index(index)))


COMMANDS.append(ablate_task_command)


@click.command("ablate-report", cls=BackendCommand)
@grid_options
def ablate_report_command(config_file: Path, seeds: int | None, data: Path | None, runs_dir: Path | None) -> None:
    """The report of a submitted grid, once its tasks have ended: the comparison of the runs that finished
    (as `ablate` writes it) and tasks.csv beside it, one row per run with its status and error. Exits
    with status 1 when a run did not finish.

    \b
    Example:
      mammoseg ablate-report --config experiments/ablation.toml
    """
    from mammoseg.workflows.tasks import report_grid

    result = report_grid(_grid(config_file, seeds, data, runs_dir))
    click.echo(f"{len(result.done)} of {len(result.rows)} runs finished and evaluated"
               + (f"; report: {result.report}" if result.report else ""))
    if result.unfinished:
        click.echo("not finished: " + ", ".join(f"{row['run']} ({row['status']})" for row in result.unfinished),
                   err=True)
        sys.exit(1)


COMMANDS.append(ablate_report_command)
