"""The comparison report: statistics, the verdict's refusal to over-claim, and the written files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mammoseg.analysis import stats
from mammoseg.analysis.report import METRIC_BY_KEY, build_arms, rank_metric, summary_columns, verdict, write_report
from mammoseg.analysis.runs import load_run
from mammoseg.analysis.stats import Interval
from mammoseg.cli import cli
from mammoseg.errors import InputError, MammosegError

SIZE = 32


def fabricate_run(root: Path, variant: str, seed: int, *, quality: float, n_images: int = 40,
                  transpose_kernel: int = 4, evaluated: bool = True, arm: str | None = None) -> Path:
    """A run folder per the run contract with plausible synthetic numbers; `quality` shifts Dice and FPs."""
    rng = np.random.default_rng(zlib.crc32(f"{variant}{seed}{transpose_kernel}".encode()))
    arm = arm or f"{variant}{'' if transpose_kernel == 4 else f'-k{transpose_kernel}'}"
    run = root / f"{arm}-seed{seed}"
    (run / "eval" / "test").mkdir(parents=True)
    config = {"variant": variant, "image_size": SIZE, "width": 0.125, "seed": seed, "epochs": 3, "batch_size": 4,
              "transpose_kernel": transpose_kernel, "params": 12_500_000 if "dilated" in variant else 20_000_000,
              "flops": 43_300_000_000, "environment": {"backend": "tensorflow"}}
    (run / "config.json").write_text(json.dumps(config))
    pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.0, 0.7, 0.5 + 0.1 * rng.random()], "val_loss": [1.1, 0.8, 0.7],
                  "lr": [7e-4] * 3, "seconds": [10.0, 9.0, 9.5]}).to_csv(run / "history.csv", index=False)
    (run / "timing.json").write_text(json.dumps({"seconds_per_epoch": [10, 9, 9.5], "mean_seconds_per_epoch": 9.5,
                                                  "train_images_per_second": 100 + rng.random()}))
    checker = 0.8 if "transpose" in variant or variant.startswith("fcn") else 0.05
    (run / "checkerboard_init.json").write_text(json.dumps(
        {"kernel": {"upsample_4": checker + 0.01 * rng.random()},
         "map": {"phase_mean": checker * 0.5 + 0.01 * rng.random(), "aliasing_fraction": checker * 0.1}}))
    if not evaluated:
        return run
    ids = [f"P_{i:05d}" for i in range(n_images)]
    negative = np.arange(n_images) % 2 == 1
    area = SIZE * SIZE
    truth = np.where(negative, 0, rng.integers(20, 80, n_images))
    tp = np.where(negative, 0, np.round(truth * np.clip(quality + 0.1 * rng.standard_normal(n_images), 0, 1)))
    fn = truth - tp
    fp = np.where(negative, rng.integers(0, 4, n_images) * (1.5 - quality) * 2, rng.integers(0, 20, n_images)).round()
    tn = area - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
    mean_prob = np.clip(0.05 + (1 - quality) * 0.2 + 0.02 * rng.standard_normal(n_images), 0, 1)
    pd.DataFrame({
        "example_id": ids, "kind": np.where(negative, "negative", "positive"), "patient_id": ids,
        "positive_fraction": truth / area, "dice": dice, "iou": iou, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "max_prob": np.clip(mean_prob * 3, 0, 1), "mean_prob": mean_prob, "frac_above_05": (tp + fp) / area,
        "predicted_positive": ((tp + fp) > area / 750).astype(int), "phase_mean": checker * 0.3 + 0.01 * rng.random(n_images),
        "aliasing_fraction": checker * 0.05 + 0.001 * rng.random(n_images),
    }).to_csv(run / "eval" / "test" / "per_image.csv", index=False)
    (run / "eval" / "test" / "metrics.json").write_text(json.dumps(
        {"per_image": {"dice": float(np.nanmean(dice))}, "pixel_pr_auc": quality * 0.8 + 0.01 * rng.random(),
         "pixel_roc_auc": 0.9, "ece": 0.05 * (1.2 - quality), "images_per_second": 250.0}))
    n_examples = 4
    images = rng.integers(0, 255, (n_examples, SIZE, SIZE), dtype=np.uint8)
    masks = np.zeros((n_examples, SIZE, SIZE), np.uint8)
    masks[0, 8:16, 8:16] = 255
    masks[2, 10:20, 12:18] = 255
    probs = np.clip(masks / 255 * quality + 0.1 * rng.random((n_examples, SIZE, SIZE)), 0, 1).astype(np.float16)
    np.savez(run / "eval" / "test" / "examples.npz", example_id=np.array(ids[:n_examples]),
             kind=np.array(["positive", "negative"] * 2), image=images, mask=masks, prob=probs)
    freqs = np.linspace(0, 0.7, 23)
    power = np.exp(-8 * freqs) + checker * (freqs > 0.48)
    np.savez(run / "eval" / "test" / "spectrum.npz", freqs=freqs, power=power, power_negatives=power * 0.5)
    return run


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag):
        self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells.append(data)


def _parse(path: Path) -> _Collector:
    collector = _Collector()
    collector.feed(path.read_text(encoding="utf-8"))
    return collector


# ---------------------------------------------------------------- statistics


def test_bootstrap_mean_ci_matches_normal_theory():
    rng = np.random.default_rng(1)
    values = rng.normal(0.6, 0.2, 400)
    interval = stats.nanmean_ci(values, seed=3)
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert interval.estimate == pytest.approx(values.mean())
    assert interval.low == pytest.approx(values.mean() - 1.96 * se, abs=0.25 * se)
    assert interval.high == pytest.approx(values.mean() + 1.96 * se, abs=0.25 * se)
    assert stats.nanmean_ci(values, seed=3) == interval  # seeded: reproducible


def test_bootstrap_ignores_nan_and_constant_has_zero_width():
    interval = stats.nanmean_ci(np.array([0.5, np.nan, 0.5, 0.5]))
    assert (interval.estimate, interval.low, interval.high) == (0.5, 0.5, 0.5)
    assert not stats.nanmean_ci(np.array([np.nan, np.nan])).defined


def test_resample_counts_rows_sum_to_n():
    counts = stats.resample_counts(7, np.random.default_rng(0), n_resamples=50)
    assert counts.shape == (50, 7) and np.all(counts.sum(axis=1) == 7)


def test_pooled_ci_known_case():
    tp, fp, fn = np.array([10, 0, 30]), np.array([10, 5, 0]), np.array([0, 0, 10])
    interval = stats.pooled_ci(tp, fp, fn, "dice", seed=0)
    assert interval.estimate == pytest.approx(80 / (80 + 15 + 10))
    assert interval.low <= interval.estimate <= interval.high
    assert stats.pooled_ci(tp, fp, fn, "iou").estimate == pytest.approx(40 / (40 + 15 + 10))


def test_paired_difference_detects_shift_and_keeps_zero_for_equal_arms():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.9, 300)
    shifted = stats.paired_nanmean_diff_ci(base + 0.02, base)
    assert shifted.estimate == pytest.approx(0.02) and shifted.excludes(0.0)
    same = stats.paired_nanmean_diff_ci(base + rng.normal(0, 0.05, 300), base)
    assert not same.excludes(0.0)
    pooled = stats.paired_pooled_diff_ci((np.full(50, 9.0), np.ones(50), np.ones(50)),
                                         (np.full(50, 9.0), np.ones(50), np.ones(50)), "dice")
    assert (pooled.estimate, pooled.low, pooled.high) == (0.0, 0.0, 0.0)


def test_interval_holds_the_seed_variation():
    """Two seeds 0.3 apart: the interval spans both, where an image-only bootstrap would be ±0.01."""
    rng = np.random.default_rng(2)
    images = rng.normal(0.0, 0.05, 100)
    split = np.stack([images + 0.3, images + 0.6])
    interval = stats.nanmean_ci(split)
    assert interval.estimate == pytest.approx(images.mean() + 0.45)
    assert interval.low < 0.32 and interval.high > 0.58
    agreeing = stats.nanmean_ci(np.stack([images + 0.45, images + 0.45]))
    assert agreeing.high - agreeing.low < 0.03
    single = stats.nanmean_ci(images + 0.45)  # one seed: the same image draws, images only
    assert (single.low, single.high) == pytest.approx((agreeing.low, agreeing.high))
    assert not stats.paired_nanmean_diff_ci(split, np.stack([images + 0.4, images + 0.42])).excludes(0.0)
    assert stats.paired_nanmean_diff_ci(split + 0.5, np.stack([images + 0.4, images + 0.42])).excludes(0.0)
    tp, fp, fn = np.full((2, 30), 8.0), np.stack([np.ones(30), np.full(30, 12.0)]), np.ones((2, 30))
    pooled = stats.pooled_ci(tp, fp, fn, "dice")  # identical images: only the seed draw varies
    assert (pooled.low, pooled.high) == pytest.approx((16 / 29, 16 / 18))
    assert stats.pooled_ci(tp[:1], fp[:1], fn[:1], "dice").low == pytest.approx(16 / 18)


def test_seed_interval_uses_student_t():
    interval = stats.seed_interval(np.array([1.0, 2.0, 3.0]))
    assert interval.high - interval.estimate == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-5)
    assert not stats.seed_interval(np.array([1.0])).defined


# ---------------------------------------------------------------- verdict


def test_verdict_refuses_to_rank_overlapping_intervals():
    metric = METRIC_BY_KEY["dice_per_image"]
    line = rank_metric(metric, {"a": Interval(0.70, 0.60, 0.80), "b": Interval(0.68, 0.58, 0.78)})
    assert "no clear difference" in line and "is best" not in line


def test_verdict_ranks_separated_intervals_in_the_right_direction():
    dice = METRIC_BY_KEY["dice_per_image"]
    line = rank_metric(dice, {"a": Interval(0.50, 0.45, 0.55), "b": Interval(0.70, 0.66, 0.74)})
    assert "**b** is best" in line
    fp_rate = METRIC_BY_KEY["neg_fp_rate"]  # lower is better
    line = rank_metric(fp_rate, {"a": Interval(0.10, 0.05, 0.15), "b": Interval(0.60, 0.50, 0.70)})
    assert "**a** is best" in line


def test_verdict_qualifies_claims_resting_on_one_seed():
    dice = METRIC_BY_KEY["dice_per_image"]
    intervals = {"a": Interval(0.50, 0.45, 0.55), "b": Interval(0.70, 0.66, 0.74)}
    assert "(one seed: seed variation not included)" in rank_metric(dice, intervals, {"a", "b"})
    assert "(one seed for a: seed variation not included)" in rank_metric(dice, intervals, {"a"})
    assert "seed variation" not in rank_metric(dice, intervals)
    params = METRIC_BY_KEY["params_m"]  # exact numbers have no seed variation to miss
    assert "seed variation" not in rank_metric(params, {"a": Interval(1, 1, 1), "b": Interval(2, 2, 2)}, {"a", "b"})


def _verdict_lines(root: Path, qualities: dict[str, tuple[float, ...]]) -> list[str]:
    runs = [load_run(fabricate_run(root, variant, seed, quality=q), "test")
            for variant, seeds in qualities.items() for seed, q in enumerate(seeds, 1)]
    return verdict(*build_arms(runs, None))


def test_verdict_does_not_rank_arms_whose_seeds_disagree(tmp_path):
    """dilated_transpose's mean P(abnormal) on negatives is lower on average, but its two seeds (0.19
    and 0.06) straddle dilated_resize's 0.16: no claim. Over images alone the intervals do not overlap."""
    lines = _verdict_lines(tmp_path, {"dilated_transpose": (0.3, 0.95), "dilated_resize": (0.45, 0.47)})
    line = next(x for x in lines if x.startswith("Mean P(abnormal) on negatives"))
    assert "no clear difference between dilated_transpose, dilated_resize" in line and "is best" not in line
    paired = next(x for x in lines if x.startswith("Paired, Dice per image"))
    assert "no clear difference (interval includes 0)" in paired


def test_verdict_ranks_arms_whose_seeds_agree(tmp_path):
    lines = _verdict_lines(tmp_path, {"dilated_transpose": (0.3, 0.32), "dilated_resize": (0.9, 0.92)})
    line = next(x for x in lines if x.startswith("Mean P(abnormal) on negatives"))
    assert "**dilated_resize** is best" in line and "seed variation" not in line
    paired = next(x for x in lines if x.startswith("Paired, Dice per image"))
    assert paired.endswith("dilated_transpose is worse.")


def test_verdict_does_not_rank_a_single_seed_run_level_number():
    line = rank_metric(METRIC_BY_KEY["pr_auc"], {"a": stats.seed_interval(np.array([0.5])),
                                                  "b": stats.seed_interval(np.array([0.6]))})
    assert "not ranked" in line


# ---------------------------------------------------------------- report files


def _check_outputs(html_path: Path, arms: list[str]) -> str:
    out = html_path.parent
    assert {p.name for p in out.iterdir()} >= {"report.html", "report.md", "summary.csv", "figures"}
    parsed = _parse(html_path)
    assert "table" in parsed.tags
    assert len(parsed.images) >= 4 and all(src.startswith("data:image/png;base64,") for src in parsed.images)
    for arm in arms:
        assert arm in parsed.cells
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == summary_columns()
    assert [r["arm"] for r in rows] == arms
    assert not list(out.glob(".*tmp*"))
    return html_path.read_text(encoding="utf-8")


def test_report_several_seeds_and_paired(tmp_path):
    runs = [fabricate_run(tmp_path / "exp", v, s, quality=q)
            for v, q in (("dilated_resize", 0.85), ("fcn_skips", 0.4)) for s in (1, 2, 3)]
    runs.append(fabricate_run(tmp_path / "exp", "dilated_transpose", 1, quality=0.8, transpose_kernel=3))
    html_path = write_report(runs, tmp_path / "report")
    text = _check_outputs(html_path, ["fcn_skips", "dilated_transpose-k3", "dilated_resize"])
    assert "Paired differences against dilated_resize" in text
    assert "per image" in text and "pooled" in text and "S²/750" in text
    assert "**dilated_resize** is best" in (tmp_path / "report" / "report.md").read_text()
    rows = {r["arm"]: r for r in csv.DictReader(open(tmp_path / "report" / "summary.csv"))}
    assert float(rows["fcn_skips"]["dice_per_image_diff_ci_high"]) < 0  # clearly worse than the baseline
    assert rows["dilated_resize"]["dice_per_image_diff"] == ""
    assert float(rows["fcn_skips"]["dice_per_image_sd"]) >= 0


def test_report_single_seed_says_spread_not_estimated(tmp_path):
    runs = [fabricate_run(tmp_path / "exp", v, 1, quality=q) for v, q in (("dilated_resize", 0.9), ("fcn_skips", 0.3))]
    html_path = write_report(runs, tmp_path / "out", baseline="fcn_skips")
    text = _check_outputs(html_path, ["fcn_skips", "dilated_resize"])
    assert "spread over seeds is not estimated" in text
    md = (tmp_path / "out" / "report.md").read_text()
    assert "**dilated_resize** is best" in md and "(one seed: seed variation not included)" in md
    assert "Paired differences against fcn_skips" in text


def test_compare_cli_experiment_and_unevaluated_run(tmp_path):
    runs_dir = tmp_path / "runs"
    fabricate_run(runs_dir / "demo", "dilated_resize", 1, quality=0.8)
    fabricate_run(runs_dir / "demo", "dilated_transpose", 1, quality=0.7)
    runner = CliRunner()
    result = runner.invoke(cli, ["compare", "--experiment", "demo", "--runs-dir", str(runs_dir),
                                 "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rep" / "report.html").is_file()
    bare = fabricate_run(runs_dir / "demo", "fcn_skips", 1, quality=0.5, evaluated=False)
    with pytest.raises(InputError, match="mammoseg evaluate"):
        write_report([bare], tmp_path / "rep2")
    result = runner.invoke(cli, ["compare", str(bare), "--out", str(tmp_path / "rep2")])
    assert result.exit_code != 0 and "mammoseg evaluate" in str(result.exception)
    assert not (tmp_path / "rep2").exists()


def test_report_from_real_runs(tiny_run, tmp_path):
    """The real training and evaluation outputs, a copy relabelled as a second arm and a second seed."""
    import shutil

    copies = []
    for variant, seed in (("dilated_transpose", 1), ("dilated_resize", 2)):
        copy = tmp_path / "runs" / f"{variant}-seed{seed}"
        shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("*.keras", "tb", "previews"))
        config = json.loads((copy / "config.json").read_text())
        config.update(variant=variant, seed=seed)
        (copy / "config.json").write_text(json.dumps(config))
        copies.append(copy)
    html_path = write_report([tiny_run, *copies], tmp_path / "report")
    text = _check_outputs(html_path, ["dilated_transpose", "dilated_resize"])
    assert "Paired differences against dilated_resize" in text
    rows = {r["arm"]: r for r in csv.DictReader(open(tmp_path / "report" / "summary.csv"))}
    metrics = json.loads((tiny_run / "eval" / "test" / "metrics.json").read_text())
    assert float(rows["dilated_transpose"]["dice_per_image_mean"]) == pytest.approx(metrics["dice_per_image_positives"])
    assert float(rows["dilated_transpose"]["dice_pooled_all_mean"]) == pytest.approx(metrics["dice_pooled_all"])
    assert float(rows["dilated_transpose"]["neg_fp_rate_mean"]) == pytest.approx(metrics["negatives_fp_rate_author"])
    assert float(rows["dilated_transpose"]["pr_auc_mean"]) == pytest.approx(metrics["pixel_pr_auc"])
    assert rows["dilated_resize"]["n_seeds"] == "2" and rows["dilated_resize"]["dice_per_image_sd"] != ""


def test_unknown_baseline_and_cli_error_line(tmp_path):
    run = fabricate_run(tmp_path / "exp", "fcn_skips", 1, quality=0.5)
    with pytest.raises(MammosegError, match="baseline 'nope' is not among the compared arms: fcn_skips"):
        write_report([run], tmp_path / "out", baseline="nope")
    result = subprocess.run([sys.executable, "-m", "mammoseg", "compare", str(tmp_path / "missing"), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing'}: no such run folder"


def test_arms_follow_ablation_folder_names(tmp_path):
    """Two arms of one variant (e.g. frozen encoder or not) stay apart; a name reused for two designs splits."""
    runs = [fabricate_run(tmp_path / "exp", "dilated_resize", s, quality=0.8, arm=a)
            for a in ("frozen", "dilated_resize") for s in (1, 2)]
    runs.append(fabricate_run(tmp_path / "other", "fcn_skips", 1, quality=0.5, arm="frozen"))
    write_report(runs, tmp_path / "out")
    rows = {r["arm"]: r for r in csv.DictReader(open(tmp_path / "out" / "summary.csv"))}
    assert set(rows) == {"frozen (dilated_resize)", "frozen (fcn_skips)", "dilated_resize"}
    assert rows["dilated_resize"]["n_seeds"] == "2" and rows["frozen (dilated_resize)"]["n_seeds"] == "2"
    assert rows["frozen (fcn_skips)"]["dice_per_image_diff"] != ""  # paired against the default baseline arm
