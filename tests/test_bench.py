"""`mammoseg bench` end to end at a toy size: every section runs and is recorded (no speed is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mammoseg.workflows.bench.models import scaling
from mammoseg.cli import cli


@pytest.mark.machine
def test_bench_smoke(tmp_path: Path, tiny_dataset: Path, synthetic_cbis: Path) -> None:
    out = tmp_path / "bench.json"
    args = [
        "bench", "--variant", "dilated_resize", "--image-size", "64", "--image-size", "32", "--width", "0.125",
        "--batch-size", "2", "--steps", "2", "--warmup", "1", "--data", str(tiny_dataset), "--pipeline-seconds", "0.3",
        "--dicom-dir", str(synthetic_cbis), "--prepare-images", "2", "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["environment"]["keras_backend"] == "tensorflow"
    small, model = record["models"]
    assert (small["image_size"], model["image_size"]) == (32, 64)
    assert model["variant"] == "dilated_resize" and model["params"] > 0 and model["flops_forward_per_image"] > 0
    assert isinstance(model["jit_compile"], bool)
    assert model["train"]["images_per_second"] > 0 and model["train"]["steps"] == 2
    train = model["train"]
    if train["memory_source"] is None:  # this machine's CPU allocator keeps no statistics: reported absent
        assert train["peak_memory_bytes"] is train["peak_memory_per_image_bytes"] is None
    else:
        assert train["memory_source"].startswith("TensorFlow allocator, CPU:0")
        assert train["peak_memory_bytes"] >= train["resident_memory_bytes"] >= 0  # tiny tensors may escape its count
        assert train["peak_memory_per_image_bytes"] == (train["peak_memory_bytes"] - train["resident_memory_bytes"]) / 2
    assert model["activation_bytes_per_image"] > 64 * 64 * 4
    assert model["inference"]["images_per_second"] > 0
    assert [(r["image_size"], r["pixel_ratio"], r["activation_ratio"]) for r in record["scaling"]] == [(32, 1, 1), (64, 4, 4)]
    pipeline = record["pipeline"]
    assert pipeline["image_size"] == 64 and pipeline["cores"] >= 1
    assert [c["augmentation"] for c in pipeline["configurations"]] == ["none", "flips"]
    assert all(c["images"] > 0 for c in pipeline["configurations"])
    assert record["prepare"]["files"] == 2 and record["prepare"]["prepare_images_per_second"] > 0
    assert "train img/s" in result.output and "per core" in result.output and "prepare:" in result.output


@pytest.mark.machine
@pytest.mark.parametrize("counts", [None, (1000, 5000)], ids=["allocator-without-statistics", "allocator-counts"])
def test_memory_is_reported_where_the_allocator_counts_and_absent_elsewhere(
        counts: tuple[int, int] | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether TensorFlow's CPU allocator keeps statistics depends on the machine (oneDNN builds do):
    both answers of the probe are simulated here."""
    from mammoseg.workflows import bench
    from mammoseg.workflows.bench import timing

    source = "TensorFlow allocator, CPU:0, peak of this measurement"
    monkeypatch.setattr(timing, "_memory_in_use", lambda: counts and (*counts, source))
    options = bench.BenchOptions(image_sizes=(32,), width=0.125, batch_size=2, steps=1, warmup=1, inference=False)
    record = bench.run(options)
    train = record["models"][0]["train"]
    table = bench.format_table(record)
    if counts is None:
        assert train["memory_source"] is train["peak_memory_bytes"] is train["peak_memory_per_image_bytes"] is None
        assert "not measurable here" in table
    else:
        assert (train["memory_source"], train["peak_memory_bytes"], train["resident_memory_bytes"]) == (source, 5000, 1000)
        assert train["peak_memory_per_image_bytes"] == 2000 and source in table


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


def test_bench_sizes_a_variant_cannot_take_are_skipped(tmp_path: Path) -> None:
    out = tmp_path / "skipped.json"
    args = ["bench", "--variant", "fcn_skips", "--image-size", "64", "--image-size", "96", "--out", str(out)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert [(m["image_size"], "multiple of 128" in m["skipped"]) for m in record["models"]] == [(64, True), (96, True)]
    assert record["scaling"] == []


def _timed(variant: str, size: int, images_per_second: float, memory_per_image: float | None) -> dict:
    return {
        "variant": variant, "image_size": size, "flops_forward_per_image": size**2 * 10,
        "activation_bytes_per_image": size**2 * 100,
        "train": {"images_per_second": images_per_second, "peak_memory_per_image_bytes": memory_per_image},
    }  # fmt: skip


def test_scaling_relates_each_size_to_the_smallest() -> None:
    models = [
        _timed("a", 640, 100.0, 2e6), _timed("a", 320, 400.0, 1e6), _timed("a", 1280, 20.0, 8e6),
        _timed("b", 640, 50.0, None), {"variant": "c", "image_size": 320, "skipped": "size"}, _timed("c", 640, 9.0, 1e6),
    ]  # fmt: skip
    rows = scaling(models)
    assert [(r["variant"], r["image_size"]) for r in rows] == [("a", 320), ("a", 640), ("a", 1280)]
    assert [r["pixel_ratio"] for r in rows] == [1.0, 4.0, 16.0]
    assert [r["cost_ratio"] for r in rows] == [1.0, 4.0, 20.0]
    assert [r["cost_vs_pixels"] for r in rows] == [1.0, 1.0, 1.25]
    assert [r["memory_ratio"] for r in rows] == [1.0, 2.0, 8.0]
    assert [r["flops_ratio"] for r in rows] == [r["activation_ratio"] for r in rows] == [1.0, 4.0, 16.0]
