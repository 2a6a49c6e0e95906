"""Commands of this concern: train, evaluate, ablate."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from mammoseg.cli.backend import BackendCommand
from mammoseg.core.conventions import SPLITS
from mammoseg.runs.rundir import CHECKPOINTS, RunDir
from mammoseg.training.config import DISTRIBUTIONS, LOSS_NORMALIZATIONS, PRECISION_CHOICES

COMMANDS: list[click.Command] = []

TRAIN_OPTIONS = (
    "variant", "data", "epochs", "batch_size", "image_size", "width", "seed", "run_name", "learning_rate",
    "positive_weight", "loss_normalization", "transpose_kernel", "init_encoder_from", "freeze_encoder", "precision", "jit_compile",
    "distribute", "deterministic",
)  # fmt: skip


def _given(ctx: click.Context, names: tuple[str, ...]) -> dict[str, object]:
    """Only the values the user actually typed (or set through an environment variable), not click's defaults."""
    sources = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {n: ctx.params[n] for n in names if ctx.get_parameter_source(n) in sources}


@click.command("train", cls=BackendCommand)
@click.option("--variant", help="Network variant: a registered spec (`mammoseg variants` lists them; the article's "
                                "are fcn_skips, fcn_bottleneck, fcn_resize_mid, dilated_transpose, dilated_resize).")
@click.option("--data", help="Prepared dataset folder (from `mammoseg prepare`).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file of options (keys as the option names with underscores); command-line values win.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs to train.  [default: 30]")
@click.option("--batch-size", type=click.IntRange(min=1), help="Global batch size.  [default: 16]")
@click.option("--image-size", type=click.IntRange(min=8), help="Model input size.  [default: the dataset's]")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), help="Filter-count multiplier.  [default: 1.0]")
@click.option("--seed", type=click.IntRange(min=0), help="Seed of weights, data order, augmentation.  [default: 0]")
@click.option("--run-name", help="Run folder name under the runs dir.  [default: <variant>-seed<seed>]")
@click.option("--learning-rate", type=float, help="Adam learning rate, x0.85 every 10 epochs.  [default: 7e-4]")
@click.option("--positive-weight", type=float,
              help="Loss weight of abnormal pixels.  [default: the variant's spec, the author's for his networks: 18 "
                   "dilated_*, 33 fcn_skips/fcn_bottleneck, 20 fcn_resize_mid]")
@click.option("--loss-normalization", type=click.Choice(LOSS_NORMALIZATIONS),
              help="Divide the weighted cross-entropy sum by the pixel count (the author's) or by the sum of the "
                   "weights (a scale that ignores how many pixels are abnormal).  [default: pixels]")
@click.option("--transpose-kernel", type=click.IntRange(min=2),
              help="Kernel of dilated_transpose's upsample_1 (4 even overlap, 3 uneven).  [default: the spec's, 4]")
@click.option("--init-encoder-from", metavar="RUN",
              help="Copy conv1 ... conv5.1 (and their BatchNorms) from this run folder or .keras file.")
@click.option("--freeze-encoder", is_flag=True, default=None,
              help="Train only the layers after the copied encoder (the article's five-epoch step).")
@click.option("--precision", type=click.Choice(PRECISION_CHOICES),
              help="Keras dtype policy.  [default: auto = mixed_bfloat16 on GPUs of compute capability >= 8.0, "
                   "else float32]")
@click.option("--jit-compile/--no-jit-compile", default=None,
              help="XLA compilation.  [default: Keras' auto; config.json records what it resolved to]")
@click.option("--distribute", type=click.Choice(DISTRIBUTIONS),
              help="Data parallelism over devices.  [default: none]")
@click.option("--deterministic", is_flag=True, default=None,
              help="Op determinism and an ordered input pipeline: same seed, same numbers (slower).")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where run folders go.  [default: runs_dir of the TOML, else env MAMMOSEG_RUNS_DIR, else "
                   "experiments/runs]")
@click.option("--resume", is_flag=False, flag_value="", default=None, metavar="[RUN_DIR]",
              help="Continue an interrupted run: RUN_DIR, or the run named by --run-name.")
@click.pass_context
def train_command(ctx: click.Context, config_file: Path | None, runs_dir: Path | None, resume: str | None,
                  **_: object) -> None:
    """Train one variant into a run folder (config.json, history.csv, checkpoints, previews, timing).

    Defaults are the author's: weighted softmax cross-entropy + L2, Adam 7e-4 decayed x0.85 every
    10 epochs, batch 16, 30 epochs, random flips. A killed run continues with --resume from its last
    finished epoch; in --deterministic mode it ends exactly where an uninterrupted run would.

    \b
    Examples:
      mammoseg train --variant dilated_resize --data data/prepared
      mammoseg train --config experiments/demo.toml --variant fcn_skips --epochs 2
      mammoseg train --variant dilated_resize --data data/prepared --run-name final \\
          --init-encoder-from experiments/runs/fcn_skips-seed0 --freeze-encoder --epochs 5
      mammoseg train --resume experiments/runs/dilated_resize-seed0
    """
    from mammoseg.training.config import merge_options
    from mammoseg.training.train import train_or_resume

    given = _given(ctx, TRAIN_OPTIONS)
    values = merge_options(config_file, given)
    if resume == "" and not (values.get("run_name") or values.get("variant")):
        raise click.UsageError("--resume needs a run folder or --run-name")
    run = train_or_resume(values, config_file or "command line", runs_dir=runs_dir, resume_from=resume, given=given)
    click.echo(f"run folder: {run.path}")


COMMANDS.append(train_command)


@click.command("evaluate", cls=BackendCommand)
@click.argument("run", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
@click.option("--checkpoint", type=click.Choice(CHECKPOINTS), default="best", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), help="Inference batch.  [default: the run's]")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path),
              help="Another prepared dataset (external validation), or the run's own if it moved.  [default: the run's]")
@click.option("--data-name", help="Name of the external dataset in RUN/eval/<split>@NAME/.  [default: its folder's]")
def evaluate_command(run: Path, split: str, checkpoint: str, batch_size: int | None, data: Path | None,
                     data_name: str | None) -> None:
    """Evaluate a run's checkpoint on a split: RUN/eval/<split>/metrics.json, per_image.csv, examples.npz,
    spectrum.npz.

    External validation: with --data naming another prepared dataset than the run's own, the split of
    that dataset is evaluated into RUN/eval/<split>@<dataset>/, labelled external; compare such runs
    with `compare RUNS --data-name <dataset>`.

    Metrics name their convention: per-image Dice/IoU (NaN when truth and prediction are empty,
    nanmean) vs pooled; pixel ROC/PR-AUC of the logit margin from histograms whose bins follow the float32
    number line (ties within 0.05% of a score); ECE (15 bins); false positives on
    negative images by the author's rule (> S²/750 pixels above 0.5); checkerboard scores of the maps.

    \b
    Example:
      mammoseg evaluate experiments/runs/dilated_resize-seed0 --split test
      mammoseg evaluate experiments/runs/dilated_resize-seed0 --data data/prepared-digital
    """
    from mammoseg.evaluation.evaluate import evaluate_run

    metrics = evaluate_run(run, split, checkpoint, batch_size=batch_size, data=data, data_name=data_name)
    name = metrics["dataset_name"] if metrics["external"] else None
    where = f"{split} split" + (f" of the external dataset {name!r}" if name else "")
    click.echo(f"{run}: {where}, {metrics['n_images']} images: dice per image (positives) "
               f"{_fmt(metrics['dice_per_image_positives'])}, pooled {_fmt(metrics['dice_pooled_positives'])}; "
               f"FP rate on negatives {_fmt(metrics['negatives_fp_rate_author'])}"
               + (f", on {metrics['n_normal_images']} normal images {_fmt(metrics['normals_fp_rate_author'])}"
                  if "n_normal_images" in metrics else "")
               + f"; written to {RunDir(run).eval_dir(split, name)}")


def _fmt(value: object) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


COMMANDS.append(evaluate_command)


@click.command("ablate", cls=BackendCommand)
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Experiment TOML ([experiment], [train], [arms.NAME]).")
@click.option("--seeds", type=click.IntRange(min=1), help="Seeds 0..N-1 instead of the config's.")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), help="Dataset instead of the config's.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where run folders go.  [default: runs_dir of the TOML, else env MAMMOSEG_RUNS_DIR, else "
                   "experiments/runs]")
@click.option("--devices", help="Run in parallel, one run per listed GPU (CUDA_VISIBLE_DEVICES of each worker), "
                                "e.g. 0,1,2,3.  [default: one run after another]")
def ablate_command(config_file: Path, seeds: int | None, data: Path | None, runs_dir: Path | None,
                   devices: str | None) -> None:
    """Train and evaluate every arm x seed of an experiment, then write the comparison report.

    Runs go to <runs-dir>/<experiment>/<arm>-seed<k>/. Finished runs are skipped and interrupted ones
    resumed, so the same command continues an ablation that stopped. With --devices each run is a task
    (as `mammoseg submit` gives a cluster) in a process that sees one device; logs in
    <runs-dir>/<experiment>/.tasks/.

    \b
    Examples:
      mammoseg ablate --config experiments/demo.toml
      mammoseg ablate --config experiments/ablation.toml --seeds 5
      mammoseg ablate --config experiments/ablation.toml --devices 0,1,2,3
    """
    if devices is not None:
        from mammoseg.workflows.devices import parse_devices, run_on_devices
        from mammoseg.workflows.tasks import GridOptions

        result = run_on_devices(GridOptions(config_file, seeds, data, runs_dir), parse_devices(devices))
        click.echo(f"{len(result.done)} of {len(result.rows)} runs trained and evaluated")
        if result.unfinished:
            raise click.ClickException("not finished: " + ", ".join(row["run"] for row in result.unfinished))
        return
    from mammoseg.workflows.ablate import run_ablation

    done = run_ablation(config_file, seeds=seeds, runs_dir=runs_dir, data=data)
    click.echo(f"{len(done)} runs trained and evaluated")


COMMANDS.append(ablate_command)
