"""Commands of this concern: bench, the project's performance measurement."""

from __future__ import annotations

from pathlib import Path

import click

from mammoseg.cli.backend import BackendCommand
from mammoseg.core.conventions import PRECISIONS
from mammoseg.models.registry import article_variant_names, variant_names

VARIANT_CHOICES = ("all", "article", "none", *variant_names())


@click.command("bench", cls=BackendCommand)
@click.option("--variant", type=click.Choice(VARIANT_CHOICES), default="dilated_resize", show_default=True,
              help="Network to time; `all` for every registered variant, `article` for the article's five, `none` to "
                   "time only the pipeline and prepare.")
@click.option("--image-size", "image_sizes", type=click.IntRange(min=8), multiple=True, default=(640,), show_default=True,
              help="Model input size; repeat it (320, 640, 1280) to time every variant at each and summarise the scaling.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Batch of the model timings and of the input pipeline.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="float32",
              show_default=True, help="Keras dtype policy of the model timings.")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Filter-count multiplier.")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True, help="Timed steps per measurement.")
@click.option("--warmup", type=click.IntRange(min=1), default=3, show_default=True,
              help="Untimed steps first (the first one compiles).")
@click.option("--jit-compile", type=click.Choice(["auto", "true", "false"]), default="auto", show_default=True,
              help="XLA compilation; the JSON records what `auto` resolved to.")
@click.option("--no-inference", is_flag=True, help="Skip the inference timing.")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path),
              help="Prepared dataset: time the input pipeline on its train shards.")
@click.option("--pipeline-seconds", type=click.FloatRange(min=0, min_open=True), default=15.0, show_default=True,
              help="Measuring time of each pipeline configuration.")
@click.option("--dicom-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of full-size DICOMs: time prepare against a bare pydicom read.")
@click.option("--prepare-images", type=click.IntRange(min=1), default=16, show_default=True,
              help="How many of the largest DICOMs to time.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Results JSON to write.")
def bench(variant: str, image_sizes: tuple[int, ...], batch_size: int, precision: str, width: float, steps: int, warmup: int,
          jit_compile: str, no_inference: bool, data: Path | None, pipeline_seconds: float, dicom_dir: Path | None,
          prepare_images: int, out: Path) -> None:
    """Measure training and inference speed under the active Keras backend (KERAS_BACKEND), and
    optionally the input pipeline (--data) and prepare (--dicom-dir). Prints a table and writes
    every figure with the environment to --out.

    \b
    The GPU comparison with the plain PyTorch network:
      KERAS_BACKEND=jax mammoseg bench --variant dilated_resize --image-size 640 \\
          --batch-size 64 --precision mixed_bfloat16 --out bench-jax.json
      python benchmarks/performance/torch_dilated_resize.py --batch-size 64
    \b
    Cost and memory per image as the size grows:
      mammoseg bench --variant article --image-size 320 --image-size 640 --image-size 1280 \\
          --batch-size 4 --out bench-scaling.json
    \b
    Input pipeline only, per CPU core:
      mammoseg bench --variant none --data data/prepared --out bench-pipeline.json
    """
    from mammoseg.workflows import bench as impl

    groups = {"all": tuple(variant_names()), "article": tuple(article_variant_names()), "none": ()}
    variants = groups.get(variant, (variant,))
    options = impl.BenchOptions(
        variants=variants, image_sizes=image_sizes, batch_size=batch_size, precision=precision, steps=steps,
        warmup=warmup, width=width, jit_compile={"auto": "auto", "true": True, "false": False}[jit_compile],
        inference=not no_inference, data=data, pipeline_seconds=pipeline_seconds, dicom_dir=dicom_dir,
        prepare_images=prepare_images,
    )  # fmt: skip
    result = impl.run(options)
    impl.write(out, result)
    click.echo(impl.format_table(result))
    click.echo(f"wrote {out}")


COMMANDS: list[click.Command] = [bench]
