"""`mammoseg visualize-layer`: any named layer of any variant, with checkerboard scores."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner
from mammo_fakes import fake_mammogram, save_untrained_run

from mammoseg.inference.activations import visualize_layer
from mammoseg.cli import cli
from mammoseg.core.errors import InputError

# variant -> (image size, layers to look at: the article's up_conv2 where it is transposed, the
# first stride-2 transpose of the dilated control, and a resize-path conv of the final model)
CASES = {
    "fcn_skips": (128, ["up_conv2"]),
    "fcn_bottleneck": (128, ["up_conv2"]),
    "fcn_resize_mid": (128, ["up_conv2", "up_conv4"]),
    "dilated_transpose": (64, ["upsample_1"]),
    "dilated_resize": (64, ["up_conv2", "upsample_4"]),
}
CONVOLUTIONS = {("fcn_resize_mid", "up_conv4"), ("dilated_resize", "up_conv2")}  # the rest are transposed


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {variant: save_untrained_run(root, variant, size) for variant, (size, _) in CASES.items()}


@pytest.mark.parametrize("variant", list(CASES))
def test_named_layers_of_each_variant(runs, variant, tmp_path):
    for layer in CASES[variant][1]:
        png, scores_path = visualize_layer(runs[variant], layer, out_dir=tmp_path)
        assert cv2.imread(str(png)) is not None
        scores = json.loads(scores_path.read_text())
        assert scores["layer"] == layer and scores["image"] == "P_00001_LEFT_CC_1"
        assert {"phase_mean", "aliasing_fraction"} <= set(scores["scores"]["map"])
        transposed = (variant, layer) not in CONVOLUTIONS
        assert (scores["layer_class"] == "Conv2DTranspose") == transposed
        assert ("kernel" in scores["scores"]) == transposed
        if transposed:
            assert scores["scores"]["kernel"]["score"] >= 0


def test_list_and_unknown_layer(runs, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["visualize-layer", str(runs["dilated_resize"]), "--list"])
    assert result.exit_code == 0, result.output
    line = next(l for l in result.output.splitlines() if l.startswith("upsample_4 "))
    assert "Conv2DTranspose" in line and "64x64x2" in line  # width 0.125 of 16 filters
    with pytest.raises(InputError, match="valid layers: .*upsample_4"):
        visualize_layer(runs["dilated_resize"], "no_such_layer", out_dir=tmp_path)
    with pytest.raises(InputError, match="neither an image file nor an example id"):
        visualize_layer(runs["dilated_resize"], "upsample_4", image="P_99999", out_dir=tmp_path)


def test_image_file_and_example_id_via_cli(runs, tmp_path):
    png = tmp_path / "scan.png"
    cv2.imwrite(str(png), fake_mammogram(300, 200, bits=8))
    runner = CliRunner()
    run = str(runs["dilated_transpose"])
    result = runner.invoke(cli, ["visualize-layer", run, "--layer", "upsample_1", "--image", str(png),
                                 "--checkpoint", "last", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "upsample_1_scan.png").is_file() and (tmp_path / "a" / "upsample_1_scan.json").is_file()
    result = runner.invoke(cli, ["visualize-layer", run, "--layer", "up_conv2", "--image", "N_00002",
                                 "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "up_conv2_N_00002.json").is_file()


def test_trained_run_with_dataset_example(tiny_run, tmp_path):
    """An id that evaluation did not save is found in the run's prepared dataset."""
    import numpy as np
    import pandas as pd

    config = json.loads((tiny_run / "config.json").read_text())
    saved = set(np.load(tiny_run / "eval" / "test" / "examples.npz")["example_id"].tolist())
    manifest = pd.read_csv(Path(config["data"]) / "manifest.csv")
    example_id = next(i for i in manifest["example_id"].astype(str) if i not in saved)
    png, scores_path = visualize_layer(tiny_run, "upsample_4", image=example_id, out_dir=tmp_path)
    scores = json.loads(scores_path.read_text())
    assert scores["image"] == example_id and scores["scores"]["kernel"]["strides"] == [2, 2]
