"""Commands about the networks themselves: their cost, and their checkerboard artifacts."""

from __future__ import annotations

from pathlib import Path

import click

from mammoseg.cli.backend import BackendCommand
from mammoseg.core.errors import MammosegError


@click.command("variants", cls=BackendCommand)
@click.option("--image-size", default=640, show_default=True, type=int,
              help="Input side: dilated variants take multiples of 32, FCN variants multiples of 128.")
@click.option("--width", default=1.0, show_default=True, type=float, help="Multiplier on every filter count.")
@click.option("--transpose-kernel", type=click.IntRange(min=2),
              help="Kernel of dilated_transpose's upsample_1 (4 as the author, 3 for uneven overlap).  [default: the "
                   "spec's, 4]")
def variants(image_size: int, width: float, transpose_kernel: int | None) -> None:
    """List every registered network (the article's five first): parameters, forward GFLOPs per image,
    transposed and sub-pixel layers, and the shape the decoder starts from.

    GFLOPs count 2 x multiply-adds of convolutions, transposed and sub-pixel convolutions; BatchNorm,
    activations, resizes and additions are left out (well under 2% here).

    \b
    Examples:
      mammoseg variants
      mammoseg variants --image-size 256 --width 0.25
    """
    from mammoseg.models.flops import variant_costs

    if width <= 0:
        raise click.BadParameter("must be positive", param_hint="--width")
    click.echo(f"image size {image_size}, width {width}")
    click.echo(f"{'variant':<26} {'params':>12} {'GFLOP/img':>10} {'transposed':>10} {'sub-pixel':>9}  decoder input")
    try:
        for cost in variant_costs(image_size, width, transpose_kernel):
            if cost.unsupported:
                click.echo(f"{cost.name:<26} {'-':>12} {'-':>10} {'-':>10} {'-':>9}  n/a: {cost.unsupported}")
                continue
            shape = "x".join(str(d) for d in cost.decoder_input)
            click.echo(f"{cost.name:<26} {cost.params:>12,} {cost.flops / 1e9:>10.2f} {cost.transposed:>10} "
                       f"{cost.subpixel:>9}  {shape}")
    except ValueError as exc:
        raise MammosegError(str(exc)) from None


@click.command("checkerboard", cls=BackendCommand)
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@click.option("--at-init", is_flag=True, help="Score every variant at random initialisation instead of saved models.")
@click.option("--variant", "only", multiple=True, help="With --at-init: only this variant (repeatable).")
@click.option("--image-size", default=640, show_default=True, type=int, help="With --at-init: input side.")
@click.option("--width", default=1.0, show_default=True, type=float,
              help="With --at-init: filter multiplier (1: the article's networks, about a minute per seed on a CPU).")
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(min=1), help="With --at-init: seeds 0..N-1.")
@click.option("--transpose-kernel", type=click.IntRange(min=2),
              help="With --at-init: kernel of dilated_transpose's upsample_1.  [default: the spec's, 4]")
@click.option("--out", "out_file", type=click.Path(path_type=Path), help="Also write all scores to this JSON file.")
def checkerboard(models: tuple[Path, ...], at_init: bool, only: tuple[str, ...], image_size: int, width: float,
                 seeds: int, transpose_kernel: int | None, out_file: Path | None) -> None:
    """Checkerboard scores: of every variant before training (--at-init), or of saved models' kernels.

    At initialisation each variant sees a constant and a smooth image; the table shows the
    phase-mean score of the output log-odds map at stride 2 (a last stride-2 layer) and the
    largest at periods 4-32 (stride-2 layers inside the decoder), the per-channel score after
    up_conv2, and each transposed layer's kernel checkerboard score in [0, 1] (the share of its
    response to a constant input that is checkerboard, per output channel; 0 = none possible)
    with its taps per output phase (uneven when k mod s != 0). BatchNorm runs in inference mode
    (its initial statistics: the identity).

    \b
    Examples:
      mammoseg checkerboard --at-init --seeds 3 --out experiments/checkerboard_init.json
      mammoseg checkerboard --at-init --width 1 --variant dilated_transpose --transpose-kernel 3
      mammoseg checkerboard experiments/runs/demo/dilated_resize-seed0/best.keras
    """
    from mammoseg.core.atomic import write_json

    if at_init == bool(models):
        raise click.UsageError("give either --at-init or saved MODELS (.keras files), not both")
    if at_init:
        from mammoseg.evaluation.init_study import format_table, run_init_study
        from mammoseg.core.runtime import environment

        try:
            result = run_init_study(list(only) or None, image_size=image_size, width=width, seeds=seeds,
                                    transpose_kernel=transpose_kernel)
        except ValueError as exc:
            raise MammosegError(str(exc)) from None
        result["environment"] = environment()
        click.echo(format_table(result))
    else:
        from mammoseg.models.kernels import model_kernel_overlap, model_kernel_scores
        from mammoseg.models.saving import load_model

        result = {}
        for path in models:
            model = load_model(path)
            result[str(path)] = model_kernel_scores(model)
            overlap = model_kernel_overlap(model)
            click.echo(str(path))
            for layer, score in result[str(path)].items():
                taps = overlap[layer]["taps_per_phase"]
                click.echo(f"  {layer:<14} {score:.4f}  taps per phase {taps}{' (uneven)' if overlap[layer]['uneven'] else ''}")
    if out_file:
        write_json(out_file, result)
        click.echo(f"wrote {out_file}")


COMMANDS: list[click.Command] = [variants, checkerboard]
