"""`mammoseg bench --compare` end to end at a toy size: blocks alternate, every timing is recorded and
the speed ratio's interval is the one its block timings give (no speed is asserted)."""

from __future__ import annotations

import json
from statistics import median
from pathlib import Path

import pytest
from click.testing import CliRunner

from mammoseg.cli import cli
from mammoseg.metrics.speed import ratio_interval


def test_interleaved_comparison_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    args = ["bench", "--compare", "dilated_resize:dilated_transpose", "--image-size", "64", "--width", "0.125",
            "--batch-size", "2", "--blocks", "2", "--steps", "1", "--warmup", "1", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["models"] == []  # --compare alone times no variant on its own
    comparisons = record["comparisons"]
    assert (comparisons["order"], comparisons["blocks"], comparisons["steps_per_block"]) == ("ABBA", 2, 1)
    assert comparisons["image_size"] == 64 and set(comparisons["models"]) == {"dilated_resize", "dilated_transpose"}
    assert all(m["params"] > 0 for m in comparisons["models"].values())
    (pair,) = comparisons["pairs"]
    assert (pair["a"], pair["b"], pair["block_pairs"]) == ("dilated_resize", "dilated_transpose", 2)
    assert len(pair["a_block_seconds"]) == len(pair["b_block_seconds"]) == 2
    expected = ratio_interval(pair["a_block_seconds"], pair["b_block_seconds"])
    assert (pair["speed_ratio"], pair["speed_ratio_low"], pair["speed_ratio_high"], pair["p_value"]) == pytest.approx(
        (expected.ratio, expected.low, expected.high, expected.p_value))
    for arm in "ab":  # batch 2 x 1 step per block
        assert pair[f"{arm}_images_per_second_median"] == pytest.approx(median(2 / s for s in pair[f"{arm}_block_seconds"]))
    assert "interleaved (ABBA)" in result.output and "speed A/B" in result.output


def test_comparison_input_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "x.json"
    cases = [
        (["--compare", "dilated_resize"], "not two variants as A:B"),
        (["--compare", "dilated_resize:dilated_resize"], "compares a variant with itself"),
        (["--compare", "dilated_resize:nonesuch"], "unknown variant 'nonesuch'"),
        (["--compare", "fcn_skips:dilated_resize", "--image-size", "64"], "multiple of 128"),
        (["--compare", "dilated_resize:dilated_transpose", "--image-size", "64", "--image-size", "96"], "one --image-size"),
    ]
    for extra, message in cases:
        result = runner.invoke(cli, ["bench", *extra, "--out", str(out)])
        assert result.exit_code != 0 and message in (result.output + str(result.exception)), (extra, result.output)
    assert not out.exists()
