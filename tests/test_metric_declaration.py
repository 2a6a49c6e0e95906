"""A metric is declared once: a new one declared here reaches per_image.csv, metrics.json, summary.csv and the
report with no other file changed; a misspelt key is an error; every declared source is one that is written."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mammoseg.core.errors import MammosegError
from mammoseg.metrics.catalog import METRIC_BY_KEY, Metric, UnknownMetric, declare, forget, metrics
from mammoseg.runs.rundir import flat_metrics, load_run, read_json


@pytest.fixture
def dark_share():
    """A metric of this test: the share of pixels with P(abnormal) below 0.1, on the negative images."""
    metric = declare(Metric("dark_share", "Pixels below 0.1 on negatives", "Negative images", "higher", "image",
                            "negatives", per_image=lambda m: float(np.mean(m.prob < 0.1)), bounds=(0.0, 1.0)))
    yield metric
    forget(metric.key)


def test_a_metric_declared_in_one_place_reaches_every_output(dark_share, tiny_run: Path, tmp_path: Path):
    from mammoseg.evaluation.evaluate import evaluate_run
    from mammoseg.reporting.write import write_report

    run = tmp_path / "dilated_resize-seed0"
    shutil.copytree(tiny_run, run)
    metrics_json = evaluate_run(run, "test")
    per_image = load_run(run).per_image
    negatives = per_image[(per_image["tp"] + per_image["fn"] == 0) & (per_image["kind"] != "normal")]
    value = metrics_json["per_image_means"]["dark_share"]
    assert value == pytest.approx(negatives["dark_share"].mean())
    assert json.loads((run / "eval" / "test" / "metrics.json").read_text())["per_image_means"]["dark_share"] == value
    out = tmp_path / "report"
    write_report([run], out)
    with open(out / "summary.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert float(row["dark_share_mean"]) == pytest.approx(value)
    assert "Pixels below 0.1 on negatives" in (out / "report.md").read_text(encoding="utf-8")


def test_every_declared_run_file_key_is_one_that_training_and_evaluation_write(tiny_run: Path):
    files = {"metrics": read_json(tiny_run / "eval" / "test" / "metrics.json"),
             "config": read_json(tiny_run / "config.json"), "timing": read_json(tiny_run / "timing.json"),
             "checkerboard_init": read_json(tiny_run / "checkerboard_init.json")}
    for metric in metrics():
        if metric.path:
            file, key = metric.run_file
            assert key in flat_metrics(files[file]) or key in _keys(files[file]), metric.key


def _keys(data: dict, prefix: str = "") -> set[str]:
    """Every dotted key of a JSON object, null values included (a metric not measured on this run)."""
    out = set()
    for key, value in data.items():
        out |= _keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return out


def test_a_misspelt_or_clashing_metric_is_an_error():
    with pytest.raises(UnknownMetric, match="did you mean dice_per_image"):
        METRIC_BY_KEY["dice_per_imag"]
    with pytest.raises(MammosegError, match="already declared"):
        declare(Metric("dice_per_image", "x", "Segmentation", "higher", "image", columns=("dice",)))
    with pytest.raises(MammosegError, match="nobody writes"):
        declare(Metric("typo", "x", "Segmentation", "higher", "image", columns=("dcie",)))
    with pytest.raises(MammosegError, match="subset must be"):
        declare(Metric("typo", "x", "Segmentation", "higher", "image", "negative", columns=("dice",)))
    with pytest.raises(MammosegError, match="path must start"):
        declare(Metric("typo", "x", "Cost", "lower", "run", path="metric:ece"))
    assert "typo" not in METRIC_BY_KEY

