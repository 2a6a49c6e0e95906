"""Commands that read finished runs: the comparison report, layer activations, and prediction."""

from __future__ import annotations

from pathlib import Path

import click

from mammoseg.errors import MammosegError

CHECKPOINT = click.Choice(["best", "last"])


@click.command("compare")
@click.argument("runs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--experiment", help="Compare every run of this ablation (RUNS_DIR/EXPERIMENT/*).")
@click.option("--runs-dir", type=click.Path(path_type=Path), default="experiments/runs", show_default=True,
              envvar="MAMMOSEG_RUNS_DIR", help="Where runs live (env MAMMOSEG_RUNS_DIR).")
@click.option("--baseline", help="Arm the paired differences are taken against [default: dilated_resize if present].")
@click.option("--split", default="test", show_default=True, help="Evaluated split to compare on.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Report folder.")
def compare(runs: tuple[Path, ...], experiment: str | None, runs_dir: Path, baseline: str | None, split: str,
            out_dir: Path) -> None:
    """Compare evaluated runs: report.html (self-contained), report.md and summary.csv.

    Runs of the same variant (and transpose kernel) are seeds of one arm. Every number comes with
    mean ± sd over seeds and a 95% bootstrap interval over images; the verdict names a winner only
    where the intervals separate.

    \b
    Examples:
      mammoseg compare --experiment demo --out reports/demo
      mammoseg compare experiments/runs/a experiments/runs/b --baseline fcn_skips --out reports/ab
    """
    from mammoseg.analysis.report import write_report
    from mammoseg.analysis.runs import find_experiment_runs

    if bool(runs) == bool(experiment):
        raise click.UsageError("give either RUN folders or --experiment NAME (not both)")
    run_dirs = list(runs) if runs else find_experiment_runs(runs_dir, experiment)  # type: ignore[arg-type]
    click.echo(write_report(run_dirs, out_dir, baseline=baseline, split=split))


COMMANDS: list[click.Command] = [compare]
