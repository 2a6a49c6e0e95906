"""Commands that read finished runs: the comparison report, layer activations, and prediction."""

from __future__ import annotations

from pathlib import Path

import click

from mammoseg.cli.backend import BackendCommand
from mammoseg.runs.folds import find_experiment_runs
from mammoseg.runs.rundir import CHECKPOINTS, RunDir, resolve_runs_dir

CHECKPOINT = click.Choice(CHECKPOINTS)


@click.command("compare")
@click.argument("runs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--experiment", help="Compare every run of this ablation (RUNS_DIR/EXPERIMENT/*).")
@click.option("--runs-dir", type=click.Path(path_type=Path),
              help="Where runs live.  [default: env MAMMOSEG_RUNS_DIR, else experiments/runs]")
@click.option("--baseline", help="Arm the paired differences are taken against [default: dilated_resize if present].")
@click.option("--split", default="test", show_default=True, help="Evaluated split to compare on.")
@click.option("--data-name", help="Compare on the split of this external dataset (RUN/eval/<split>@NAME/).")
@click.option("--primary", "primary", help="Comma-separated metrics the verdict makes claims on "
              "[default: neg_fp_rate,dice_per_image,phase_mean_trained].")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Report folder.")
def compare(runs: tuple[Path, ...], experiment: str | None, runs_dir: Path | None, baseline: str | None, split: str,
            data_name: str | None, primary: str | None, out_dir: Path) -> None:
    """Compare evaluated runs: report.html (self-contained), report.md and summary.csv.

    Runs of the same variant (and transpose kernel) are seeds of one arm. Every number comes with
    mean ± sd over seeds and a 95% Student-t interval over seeds; the verdict claims a difference from
    the baseline only on the primary metrics, Holm-corrected over all of them, and leaves out runs
    that did not learn. One seed per arm: no claim.

    \b
    Examples:
      mammoseg compare --experiment demo --out reports/demo
      mammoseg compare experiments/runs/a experiments/runs/b --baseline fcn_skips --out reports/ab
      mammoseg compare --experiment demo --data-name prepared-digital --out reports/demo-digital
    """
    from mammoseg.reporting import write_report

    if bool(runs) == bool(experiment):
        raise click.UsageError("give either RUN folders or --experiment NAME (not both)")
    run_dirs = list(runs) or find_experiment_runs(resolve_runs_dir(runs_dir), experiment)  # type: ignore[arg-type]
    keys = [k.strip() for k in primary.split(",") if k.strip()] if primary is not None else None
    click.echo(write_report(run_dirs, out_dir, baseline=baseline, split=split, primary=keys, data_name=data_name))


@click.command("visualize-layer", cls=BackendCommand)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--layer", help="Layer name, e.g. up_conv2 or upsample_4 (see --list).")
@click.option("--image", help="Example id from the run's evaluation examples or dataset, or an image file "
                               "(DICOM/PNG/JPEG). Default: the first saved positive example.")
@click.option("--checkpoint", type=CHECKPOINT, default="best", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Output folder [default: RUN/layers].")
@click.option("--list", "list_layers", is_flag=True, help="Print the layers and their output shapes, then stop.")
def visualize_layer(run: Path, layer: str | None, image: str | None, checkpoint: str, out_dir: Path | None,
                    list_layers: bool) -> None:
    """Show one layer's activations: channel grid, mean map, its spectrum, checkerboard scores.

    Writes LAYER_IMAGE.png and LAYER_IMAGE.json (map scores of the mean activation; the kernel
    score too for a transposed layer), as in the article's Figure 10.

    \b
    Examples:
      mammoseg visualize-layer experiments/runs/demo/fcn_skips-seed1 --list
      mammoseg visualize-layer experiments/runs/demo/fcn_skips-seed1 --layer up_conv2
      mammoseg visualize-layer RUN --layer upsample_1 --image scan.dcm --checkpoint last
    """
    from mammoseg.inference.activations import layer_table, visualize_layer as run_visualize

    if list_layers:
        for name, kind, shape in layer_table(RunDir(run).load_model(checkpoint)):
            click.echo(f"{name:<28} {kind:<22} {'x'.join(str(d) for d in shape)}")
        return
    if not layer:
        raise click.UsageError("give --layer NAME (or --list to see the names)")
    png, scores = run_visualize(run, layer, image=image, checkpoint=checkpoint, out_dir=out_dir)
    click.echo(png)
    click.echo(scores)


@click.command("predict", cls=BackendCommand)
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--checkpoint", type=CHECKPOINT, default="best", show_default=True)
def predict(run: Path, images: tuple[Path, ...], out_dir: Path, checkpoint: str) -> None:
    """Predict P(abnormal) on mammograms (DICOM, PNG or JPEG, any size), the model loaded once.

    Writes, per IMAGE at its original resolution: IMAGE_overlay.png (soft heatmap with colour bar),
    IMAGE_prob16.png (P x 65535, 16-bit), IMAGE_prob.npy (float32), IMAGE_mask.png (0/255,
    P > 0.5) and IMAGE_summary.json, which holds, once the run is evaluated, the lesion candidates at its
    operating point chosen on validation (how many, their scores and places).

    \b
    Example:
      mammoseg predict experiments/runs/demo/dilated_resize-seed1 scan.dcm --out predictions/
      mammoseg predict experiments/runs/demo/dilated_resize-seed1 scans/*.dcm --out predictions/
    """
    from mammoseg.inference.predict import predict_many

    for written in predict_many(run, images, out_dir, checkpoint=checkpoint):
        for path in written.values():
            click.echo(path)


COMMANDS: list[click.Command] = [compare, visualize_layer, predict]
