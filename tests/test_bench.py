"""`mammoseg bench` end to end at a toy size: every section runs and is recorded (no speed is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mammoseg.cli import cli


def test_bench_smoke(tmp_path: Path, tiny_dataset: Path, synthetic_cbis: Path) -> None:
    out = tmp_path / "bench.json"
    args = [
        "bench", "--variant", "dilated_resize", "--image-size", "64", "--width", "0.125", "--batch-size", "2",
        "--steps", "2", "--warmup", "1", "--data", str(tiny_dataset), "--pipeline-seconds", "0.3",
        "--dicom-dir", str(synthetic_cbis), "--prepare-images", "2", "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["environment"]["keras_backend"] == "tensorflow"
    (model,) = record["models"]
    assert model["variant"] == "dilated_resize" and model["params"] > 0 and model["flops_forward_per_image"] > 0
    assert isinstance(model["jit_compile"], bool)
    assert model["train"]["images_per_second"] > 0 and model["train"]["steps"] == 2
    assert model["train"]["peak_memory_bytes"] is None  # CPU: no accelerator memory to report
    assert model["inference"]["images_per_second"] > 0
    pipeline = record["pipeline"]
    assert pipeline["image_size"] == 64 and pipeline["cores"] >= 1
    assert [c["augmentation"] for c in pipeline["configurations"]] == ["none", "flips", "all"]
    assert all(c["images"] > 0 for c in pipeline["configurations"])
    assert record["prepare"]["files"] == 2 and record["prepare"]["prepare_images_per_second"] > 0
    assert "train img/s" in result.output and "per core" in result.output and "prepare:" in result.output


def test_bench_sections_skipped_and_bad_size(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "none.json"
    result = runner.invoke(cli, ["bench", "--variant", "none", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["models"] == [] and "skipped" in record["pipeline"] and "skipped" in record["prepare"]

    result = runner.invoke(cli, ["bench", "--variant", "fcn_skips", "--image-size", "96", "--out", str(tmp_path / "x.json")])
    assert result.exit_code != 0 and "multiple of 128" in str(result.exception)
    assert not (tmp_path / "x.json").exists()
