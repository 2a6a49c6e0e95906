"""One spec is one variant: a network defined in this file alone trains, evaluates, is compared and goes
through `visualize-layer` and `checkerboard` like the article's; so do the registered designs beyond it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mammoseg.cli import cli
from mammoseg.models import get_spec, register, variant_names
from mammoseg.models.steps import SubPixel
from mammoseg.models.variants import dilated_variant

# The final network with fastai's upsampler as its first step (a 1x1 sub-pixel convolution, ICNR), and a loss
# weight of its own: everything the program needs to know about it is on this spec.
PIXEL_SHUFFLE = dataclasses.replace(
    dilated_variant("test_pixel_shuffle_1x1", "dilated, first upsampling by a 1x1 sub-pixel conv, ICNR",
                    (SubPixel("upsample_1", 512, kernel=1, icnr=True),)),
    positive_weight=12.0,
)
TINY = {"width": 0.125, "epochs": 1, "batch_size": 4, "learning_rate": 3e-3, "deterministic": True}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spec above trained one epoch at 64 px and evaluated."""
    from mammoseg.evaluation.evaluate import evaluate_run
    from mammoseg.training.config import build_config
    from mammoseg.training.train import train
    from train_data import write_easy_dataset

    register(PIXEL_SHUFFLE)
    data = write_easy_dataset(tmp_path_factory.mktemp("easy"), counts={"train": 8, "val": 4, "test": 4})
    config = build_config({"variant": PIXEL_SHUFFLE.name, "data": str(data), **TINY})
    run = train(config, tmp_path_factory.mktemp("runs"))
    evaluate_run(run.path, "test")
    return run.path


def test_a_spec_defined_outside_the_package_is_a_variant(trained_run, tmp_path):
    run = trained_run
    assert PIXEL_SHUFFLE.name in variant_names() and get_spec(PIXEL_SHUFFLE.name) is PIXEL_SHUFFLE
    config = json.loads((run / "config.json").read_text())
    assert config["positive_weight"] == 12.0 and config["transpose_kernel"] == 4
    init = json.loads((run / "checkerboard_init.json").read_text())
    assert init["overlap"]["upsample_1"] == {"taps_per_phase": [[1, 1], [1, 1]], "uneven": False}
    assert init["kernel"]["upsample_1"] == 0.0  # ICNR
    assert init["upsampling"]["probe_layer"] == "up_conv2_relu"
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    at_init = metrics["checkerboard"]["upsampling"]["init"]  # NaN scores (too small a map) read back as null
    assert {k: at_init[k] for k in ("probe_layer", "period", "decoder")} == {
        k: init["upsampling"][k] for k in ("probe_layer", "period", "decoder")}
    assert set(metrics["checkerboard"]["upsampling"]["trained"]) == {"probe_layer", "period", "decoder", "output"}

    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["-q", "compare", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert PIXEL_SHUFFLE.name in (out / "report.md").read_text()


def test_register_refuses_another_spec_under_a_taken_name():
    register(PIXEL_SHUFFLE)  # the same spec again: nothing changes
    with pytest.raises(ValueError, match="already registered"):
        register(dataclasses.replace(PIXEL_SHUFFLE, positive_weight=1.0))
    with pytest.raises(ValueError, match="probe step"):
        register(dataclasses.replace(PIXEL_SHUFFLE, name="test_no_probe", probe_step="up_conv9"))


def test_visualize_layer_and_checkerboard_take_every_design(trained_run, tmp_path):
    run = trained_run
    runner = CliRunner()
    for layer in ("upsample_1", "upsample_1_shuffle"):
        result = runner.invoke(cli, ["-q", "visualize-layer", str(run), "--layer", layer, "--out", str(tmp_path)])
        assert result.exit_code == 0, result.output
    scores = json.loads(next(tmp_path.glob("upsample_1_shuffle_*.json")).read_text())["scores"]
    assert scores["map"]["phase_mean"] >= 0.0 and "kernel" not in scores
    conv = json.loads(next(tmp_path.glob("upsample_1_[!s]*.json")).read_text())["scores"]["kernel"]
    assert conv["strides"] == [2, 2] and conv["kernel_size"] == [2, 2]  # the 1x1 sub-pixel conv as a 2x2/2 transpose

    result = runner.invoke(cli, ["-q", "checkerboard", str(run / "best.keras")])
    assert result.exit_code == 0 and "upsample_1" in result.output, result.output

    out = tmp_path / "init.json"
    result = runner.invoke(cli, ["-q", "checkerboard", "--at-init", "--image-size", "64", "--width", "0.125",
                                 "--seeds", "1", "--variant", "dilated_subpixel_icnr", "--variant", "dilated_bilinear",
                                 "--variant", "dilated_bilinear_additive", "--out", str(out)])
    assert result.exit_code == 0, result.output
    variants = json.loads(out.read_text())["variants"]
    assert variants["dilated_subpixel_icnr"]["kernel"]["upsample_1"]["mean"] == 0.0
    assert "upsample_1" not in variants["dilated_bilinear"]["kernel"]

    result = runner.invoke(cli, ["-q", "variants", "--image-size", "64", "--width", "0.125"])
    assert result.exit_code == 0 and all(name in result.output for name in variant_names()), result.output


def test_a_spec_in_a_file_of_ones_own_is_a_variant_in_every_process(tmp_path: Path) -> None:
    """MAMMOSEG_VARIANTS names a file outside the package: the CLI (a process of its own, as every run's is)
    lists its variant; a file that does not import is a one-line warning naming it, and the rest works."""
    import os
    import subprocess
    import sys

    mine = tmp_path / "my_designs.py"
    mine.write_text('from mammoseg.models import register\nfrom mammoseg.models.steps import Resize\n'
                    'from mammoseg.models.variants import dilated_variant\n'
                    'register(dilated_variant("dilated_bicubic", "dilated, first upsampling by bicubic resize+conv",\n'
                    '                         (Resize("resize_1", 2, interpolation="bicubic"),)))\n')
    env = {**os.environ, "MAMMOSEG_VARIANTS": str(mine)}
    listed = subprocess.run([sys.executable, "-m", "mammoseg", "variants"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and "dilated_bicubic" in listed.stdout, listed.stderr
    (tmp_path / "broken.py").write_text("this is not python\n")
    env["MAMMOSEG_VARIANTS"] = str(tmp_path / "broken.py")
    failed = subprocess.run([sys.executable, "-m", "mammoseg", "variants"], env=env, capture_output=True, text=True)
    assert failed.returncode == 0 and "dilated_resize" in failed.stdout and "Traceback" not in failed.stderr
    assert "broken.py: MAMMOSEG_VARIANTS names it, and it does not import (NameError" in failed.stderr
