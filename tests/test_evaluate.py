"""Evaluation outputs of the tiny run: files, keys, internal consistency; the ablation's skip logic."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mammoseg.metrics import segmentation as M
from mammoseg.runs.rundir import per_image_columns
from mammoseg.cli import cli
from mammoseg.core.errors import InputError


def test_eval_outputs_and_consistency(tiny_run: Path) -> None:
    out = tiny_run / "eval" / "test"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("dice_per_image_positives", "dice_pooled_positives", "iou_per_image_positives", "iou_pooled_positives",
                "dice_per_image_all", "pixel_precision_pooled", "pixel_recall_pooled", "pixel_f1_pooled",
                "pixel_roc_auc", "pixel_pr_auc", "ece", "negatives_fp_rate_author", "negatives_fp_rate_maxprob",
                "negatives_mean_prob", "negatives_max_prob", "negatives_frac_above_05", "image_roc_auc_maxprob",
                "checkerboard", "inference", "conventions", "n_images"):
        assert key in metrics, key
    assert metrics["n_images"] == 8 and metrics["n_positive_images"] == 4 and metrics["split"] == "test"
    assert {"phase_mean_all", "aliasing_fraction_all"} <= set(metrics["checkerboard"])
    assert metrics["inference"]["images_per_second"] > 0
    assert 0.0 <= metrics["pixel_roc_auc"] <= 1.0
    frame = pd.read_csv(out / "per_image.csv")
    assert tuple(frame.columns) == per_image_columns() and len(frame) == 8
    positives = frame[frame["tp"] + frame["fn"] > 0]
    tp, fp, fn = positives[["tp", "fp", "fn"]].sum()
    pooled = M.dice_iou(tp, fp, fn)[0]
    assert metrics["dice_pooled_positives"] == pytest.approx(pooled)
    assert metrics["dice_per_image_positives"] == pytest.approx(positives["dice"].mean())
    negatives = frame[frame["tp"] + frame["fn"] == 0]
    assert metrics["negatives_fp_rate_author"] == pytest.approx(negatives["predicted_positive"].mean())
    assert (frame[["tp", "fp", "fn", "tn"]].sum(axis=1) == 64 * 64).all()
    with np.load(out / "examples.npz") as ex:
        assert ex["image"].dtype == np.uint8 and ex["prob"].dtype == np.float16
        assert ex["image"].shape == ex["mask"].shape == ex["prob"].shape == (8, 64, 64)
        assert set(ex["example_id"]) <= set(frame["example_id"])
    with np.load(out / "spectrum.npz") as sp:
        assert sp["freqs"].shape == sp["power"].shape and int(sp["n_all"]) == 8
    assert metrics["per_image_means"]["dice_per_image"] == pytest.approx(metrics["dice_per_image_positives"])
    assert metrics["per_image_means"]["neg_fp_rate"] == pytest.approx(metrics["negatives_fp_rate_author"])


def test_eval_detections_and_the_operating_point_chosen_on_validation(tiny_run: Path) -> None:
    from mammoseg.evaluation.detections import detections_from_arrays
    from mammoseg.metrics.detection import froc, froc_summary

    out = tiny_run / "eval" / "test"
    metrics = json.loads((out / "metrics.json").read_text())
    frame = pd.read_csv(out / "per_image.csv")
    with np.load(out / "detections.npz") as arrays:
        images = detections_from_arrays(dict(arrays))
    assert len(images) == len(frame)
    assert [d.n_lesions > 0 for d in images] == (frame["tp"] + frame["fn"] > 0).tolist()
    detection = metrics["detection"]
    summary = froc_summary(froc(images))  # the curve redrawn from the file gives the numbers evaluate wrote
    assert all(detection[k] == pytest.approx(v, nan_ok=True) for k, v in summary.items())
    point = detection["operating_point"]
    assert point["split"] == "val" and point["target_sensitivity"] == 0.8 and point["val_images"] == 8
    threshold = point["threshold"]
    if point["target_reached"]:
        assert point["val_sensitivity"] >= 0.8
    else:  # held at the end of the validation curve: every candidate shown, short of the target
        assert point["val_sensitivity"] < 0.8
    assert (frame["flagged_op"] == (frame["max_prob"] >= 1 / (1 + np.exp(-threshold)) - 1e-6)).all()
    assert metrics["ece_prior_corrected"] >= 0 and metrics["prior_shift"] == pytest.approx(np.log(18.0))


def test_evaluate_command_and_errors(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    result = CliRunner().invoke(cli, ["evaluate", str(run), "--split", "val", "--checkpoint", "last"])
    assert result.exit_code == 0, result.output
    assert (run / "eval" / "val" / "metrics.json").is_file() and "val split, 8 images" in result.output
    (run / "best.keras").unlink()
    result = CliRunner().invoke(cli, ["evaluate", str(run)])
    assert isinstance(result.exception, InputError) and "--checkpoint last" in str(result.exception)


def test_ablate_skips_finished_runs_and_plans_the_grid(tiny_run: Path, tmp_path: Path) -> None:
    from mammoseg.workflows.ablate import load_plan, run_ablation

    config = json.loads((tiny_run / "config.json").read_text())
    toml = tmp_path / "exp.toml"
    toml.write_text(textwrap.dedent(f"""
        [experiment]
        name = "exp"
        data = "{config['dataset']['path']}"
        seeds = 1
        variants = ["dilated_resize"]
        report_dir = "{tmp_path / 'report'}"
        [train]
        width = 0.125
        epochs = 2
        batch_size = 4
        learning_rate = 3e-3
        deterministic = true
        [arms.dilated_transpose-k3]
        variant = "dilated_transpose"
        transpose_kernel = 3
    """))
    plan = load_plan(toml, seeds=2, runs_dir=tmp_path / "runs")
    assert [r.name for r in plan.runs] == ["dilated_resize-seed0", "dilated_transpose-k3-seed0",  # seed by seed
                                           "dilated_resize-seed1", "dilated_transpose-k3-seed1"]
    k3 = plan.runs[1].config
    assert (k3.transpose_kernel, k3.positive_weight, k3.epochs, k3.run_name) == (3, 18.0, 2, "exp/dilated_transpose-k3-seed0")
    # only the finished arm: nothing to train, nothing to re-evaluate, the report is written
    toml.write_text(toml.read_text().split("[arms.")[0])
    shutil.copytree(tiny_run, tmp_path / "runs" / "exp" / "dilated_resize-seed0")
    done = run_ablation(toml, runs_dir=tmp_path / "runs")
    assert done == [tmp_path / "runs" / "exp" / "dilated_resize-seed0"]
    assert any((tmp_path / "report").iterdir())
    # a second seed: trained and evaluated, each in a process of its own, then compared with the first
    done = run_ablation(toml, seeds=2, runs_dir=tmp_path / "runs")
    seed1 = tmp_path / "runs" / "exp" / "dilated_resize-seed1"
    assert done == [tmp_path / "runs" / "exp" / "dilated_resize-seed0", seed1]
    assert json.loads((seed1 / "state.json").read_text())["status"] == "finished"
    assert (seed1 / "eval" / "test" / "metrics.json").is_file()
    bad = tmp_path / "bad.toml"
    bad.write_text('[experiment]\nname = "x"\ndata = "d"\nvariants = ["dilated_resize"]\n[train]\nseed = 3\n')
    with pytest.raises(InputError, match="unknown key"):
        load_plan(bad)
