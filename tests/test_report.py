"""The comparison report: calibrated intervals, the verdict's claims, the learning gate, and a real round trip.

Verdict logic is checked on runs held in memory (per-image rows in evaluate's columns, drawn from a
known model), the written report on run folders that `train` and `evaluate` really wrote.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mammoseg.metrics import stats
from mammoseg.evaluation.evaluate import GATE_KEY, learning_gate, prior_loss
from mammoseg.reporting import DEFAULT_PRIMARY, METRIC_BY_KEY, check_primary, summary_columns, write_report
from mammoseg.reporting import markdown
from mammoseg.reporting.aggregate import build_arms
from mammoseg.reporting.verdict import rank, verdict
from mammoseg.runs.rundir import Run, load_run
from mammoseg.metrics.stats import Interval
from mammoseg.cli import cli
from mammoseg.core.errors import InputError, MammosegError

SIZE = 32


# ---------------------------------------------------------------- runs in memory


def make_run(arm: str, seed: int, *, quality: float, variant: str = "dilated_resize", learned: bool = True,
             n_images: int = 40, rng: np.random.Generator | None = None) -> Run:
    """A run with evaluate's per-image columns: `quality` sets recall on positives and false positives on
    negatives; image difficulty is the same for every run (one test split), the rest varies by run."""
    rng = rng or np.random.default_rng(zlib.crc32(f"{arm}{seed}".encode()))
    difficulty = np.random.default_rng(7).normal(0.0, 0.1, n_images)  # the shared test images
    negative = np.arange(n_images) % 2 == 1
    area = SIZE * SIZE
    truth = np.where(negative, 0, np.random.default_rng(8).integers(20, 80, n_images))
    recall = np.clip(quality + difficulty + 0.1 * rng.standard_normal(n_images), 0, 1)
    tp = np.where(negative, 0, np.round(truth * recall))
    fn = truth - tp
    fp = np.where(negative, np.round(np.clip((1.2 - quality) * 8 + difficulty * 20 + rng.normal(0, 2, n_images), 0, None)),
                  rng.integers(0, 20, n_images))
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
    mean_prob = np.clip(0.05 + (1 - quality) * 0.2 + difficulty * 0.1 + 0.02 * rng.standard_normal(n_images), 0, 1)
    ids = [f"ex{i:04d}" for i in range(n_images)]
    frame = pd.DataFrame({
        "example_id": ids, "kind": np.where(negative, "negative", "positive"), "patient_id": ids,
        "positive_fraction": truth / area, "dice": dice, "iou": iou, "tp": tp, "fp": fp, "fn": fn,
        "tn": area - tp - fn - fp, "max_prob": np.clip(mean_prob * 3, 0, 1), "mean_prob": mean_prob,
        "frac_above_05": (tp + fp) / area, "predicted_positive": ((tp + fp) > area / 750).astype(int),
        "phase_mean": np.clip(0.2 + 0.05 * rng.standard_normal(n_images), 0, None),
        "aliasing_fraction": np.clip(0.01 + 0.002 * rng.standard_normal(n_images), 0, 1),
        "phase_mean_margin": np.clip(0.3 + 0.05 * rng.standard_normal(n_images), 0, None),
        "bright_corr": np.clip(0.3 + 0.1 * rng.standard_normal(n_images), -1, 1),
    })
    gate = learning_gate(0.3 if learned else 0.9, 0.6, int(tp.sum()) if learned else 0)
    metrics = {"pixel_pr_auc": float(np.clip(quality * 0.8 + 0.02 * rng.standard_normal(), 0, 1)),
               "pixel_roc_auc": 0.9, "ece": float(abs(0.05 * (1.2 - quality) + 0.01 * rng.standard_normal())),
               GATE_KEY: gate}
    config = {"variant": variant, "seed": seed, "image_size": SIZE, "params": 1_000_000, "flops": 2e9}
    return Run(path=Path("runs") / f"{arm}-seed{seed}", config=config, metrics=metrics, per_image=frame)


def _lines(runs: list[Run], baseline: str | None = None, primary=DEFAULT_PRIMARY) -> list[str]:
    return verdict(*build_arms(runs, baseline, primary), primary).lines


def _claims(lines: list[str]) -> list[str]:
    """Lines that claim something: a primary comparison in bold."""
    return [line for line in lines if line.startswith("Primary") and "**" in line]


# ---------------------------------------------------------------- statistics


def test_seed_interval_uses_student_t_inside_the_metric_range():
    interval = stats.seed_interval(np.array([1.0, 2.0, 3.0]))
    assert interval.high - interval.estimate == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    assert not stats.seed_interval(np.array([1.0])).defined
    # cut to the metric's range, never moved: the estimate stays the plain mean, inside its interval
    values = np.array([0.001, 0.03, 0.002])
    bounded = stats.seed_interval(values, stats.UNIT)
    half = 4.302653 * values.std(ddof=1) / np.sqrt(3)
    assert bounded.low == 0.0 and bounded.high == pytest.approx(values.mean() + half)
    spread = stats.seed_interval([1e-4] * 4 + [0.5], stats.UNIT)
    assert spread.estimate == pytest.approx(0.10008) and spread.low <= spread.estimate <= spread.high


@pytest.mark.parametrize("values, bounds", [
    ([0.3607, 0.02], stats.UNIT),        # an ECE that used to print [-1.19, 1.91]
    ([0.999, 0.70], stats.UNIT),         # a ROC-AUC near 1
    ([0.0, 0.05], stats.UNIT),           # a run on the bound: own scale, cut
    ([1.0, 0.93], stats.UNIT),
    ([83.0, 0.2], stats.POSITIVE),       # a kernel score that used to print [-65.4, 83.3]
    ([0.0, 12.0], stats.POSITIVE),
])
def test_two_seed_intervals_stay_within_what_the_metric_can_take(values, bounds):
    interval = stats.seed_interval(values, bounds)
    assert interval.defined and bounds[0] <= interval.low <= interval.high <= bounds[1]
    assert interval.low <= min(values) and interval.high >= max(values)
    floor = bounds[0] if math.isfinite(bounds[0]) else 0.0
    diff = stats.difference(values + [values[0]], [floor, floor, floor + 1e-3], bounds)
    span = bounds[1] - bounds[0]
    assert -span <= diff.low <= diff.high <= span


def test_every_interval_of_a_two_seed_report_stays_in_its_metric_range():
    runs = [make_run(arm, seed, quality=q, variant=arm) for arm, q in (("fcn_skips", 0.05), ("dilated_resize", 0.97))
            for seed in (0, 1)]
    runs[0].metrics["ece"], runs[1].metrics["ece"] = 0.3607, 0.01  # far apart: a plain t interval leaves [0, 1]
    arms, _ = build_arms(runs, None)
    for arm in arms:
        for key, cell in arm.cells.items():
            low, high = METRIC_BY_KEY[key].bounds
            if cell.interval.defined:
                assert low <= cell.interval.low <= cell.interval.high <= high, (arm.name, key, cell.interval)
        for key, diff in arm.paired.items():
            low, high = METRIC_BY_KEY[key].bounds
            if diff.defined:
                assert low - high <= diff.low <= diff.high <= high - low, (arm.name, key, diff)
    assert arms[0].cells["ece"].interval.defined


def test_two_sample_difference_known_case():
    diff = stats.difference([0.1, 0.2, 0.15], [0.3, 0.35, 0.4])
    se = math.sqrt(0.0025 * (1 / 3 + 1 / 3))  # both sample variances are 0.0025
    assert diff.estimate == pytest.approx(-0.2)
    assert diff.high == pytest.approx(-0.2 + 2.776445 * se, rel=1e-5)
    assert diff.p_value == pytest.approx(0.0080499, rel=1e-3)  # t = -4.899 on 4 df
    assert not stats.difference([0.1], [0.3, 0.4]).defined  # one seed: no interval, no p-value
    assert math.isnan(stats.difference([0.1], [0.3, 0.4]).p_value)
    same = stats.difference([0.5] * 3, [0.5] * 3)
    assert (same.low, same.high, same.p_value) == (0.0, 0.0, 1.0)
    assert not stats.difference([1.0] * 3, [0.9] * 3).defined  # no spread: no claim either way
    assert not stats.difference([0.1, 0.2], [0.3, 0.4]).defined  # two runs an arm: only paired by seed




def test_image_bootstrap_of_one_run_matches_normal_theory():
    rng = np.random.default_rng(1)
    values = rng.normal(0.6, 0.2, 400)
    interval = stats.nanmean_ci(values, seed=3)
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert interval.estimate == pytest.approx(values.mean())
    assert interval.low == pytest.approx(values.mean() - 1.96 * se, abs=0.25 * se)
    assert interval.high == pytest.approx(values.mean() + 1.96 * se, abs=0.25 * se)
    assert stats.nanmean_ci(values, seed=3) == interval  # seeded: reproducible
    constant = stats.nanmean_ci(np.array([0.5, np.nan, 0.5, 0.5]))
    assert (constant.estimate, constant.low, constant.high) == (0.5, 0.5, 0.5)
    assert not stats.nanmean_ci(np.array([np.nan, np.nan])).defined
    counts = stats.resample_counts(7, np.random.default_rng(0), n_resamples=50)
    assert counts.shape == (50, 7) and np.all(counts.sum(axis=1) == 7)


def test_pooled_ci_known_case():
    tp, fp, fn = np.array([10, 0, 30]), np.array([10, 5, 0]), np.array([0, 0, 10])
    interval = stats.pooled_ci(tp, fp, fn, "dice", seed=0)
    assert interval.estimate == pytest.approx(80 / (80 + 15 + 10))
    assert interval.low <= interval.estimate <= interval.high
    assert stats.pooled_ci(tp, fp, fn, "iou").estimate == pytest.approx(40 / (40 + 15 + 10))


# ---------------------------------------------------------------- verdict


def test_same_design_with_different_seeds_makes_no_claim():
    """Two arms of one design, three seeds each, through arms and verdict: no claim, in 20 replications
    at most what Holm's 5% family-wise rate allows (binomial: > 4 of 20 has probability < 0.3%)."""
    with_claims = 0
    for rep in range(20):
        rng = np.random.default_rng(1000 + rep)
        runs = [make_run(arm, seed, quality=0.6 + rng.normal(0, 0.03), rng=rng)
                for arm, seeds in (("copy", (3, 4, 5)), ("dilated_resize", (0, 1, 2))) for seed in seeds]
        lines = _lines(runs)
        with_claims += bool(_claims(lines))
        if rep == 0:
            assert not _claims(lines)
            assert "no difference from dilated_resize is claimed on the primary metrics" in lines[0]
            assert all(line.startswith(("At a glance", "Primary", "Exploratory", "Not compared")) for line in lines)
    assert with_claims <= 4


def test_a_real_difference_is_claimed_in_the_right_direction():
    """Five seeds: per image with the runs crossed, the images are a sample too, so three seeds of this
    noisy binary measure leave the gap unsettled."""
    runs = [make_run(arm, seed, quality=q) for arm, q in (("fcn_skips", 0.3), ("dilated_resize", 0.85))
            for seed in range(5)]
    lines = _lines(runs)
    fp = next(x for x in lines if x.startswith("Primary, FP rate on negative images"))
    assert "**fcn_skips has a higher FP rate on negative images than dilated_resize** (worse)" in fp
    assert "Holm-adjusted over 3 primary comparisons" in fp
    dice = next(x for x in lines if x.startswith("Primary, Dice per image"))
    assert "(worse)" in dice and "**fcn_skips has a lower Dice per image (positives)" in dice
    assert "**fcn_skips has a higher FP rate" in lines[0]
    pooled = next(x for x in lines if "Dice pooled (positives)" in x)
    assert pooled.startswith("Exploratory, Dice pooled (positives)") and "not a claim" in pooled


def test_primary_metrics_choose_what_is_claimed():
    runs = [make_run(arm, seed, quality=q) for arm, q in (("fcn_skips", 0.3), ("dilated_resize", 0.85))
            for seed in (0, 1, 2)]
    lines = _lines(runs, primary=("dice_pooled",))
    assert [x for x in lines if x.startswith("Primary")] == [next(x for x in lines if "Primary, Dice pooled" in x)]
    assert any(x.startswith("Exploratory, FP rate on negative images") for x in lines)
    with pytest.raises(MammosegError, match="unknown primary metric 'nope'"):
        check_primary(["nope"])
    with pytest.raises(MammosegError, match="does not vary"):
        check_primary(["params_m"])


def test_one_seed_per_arm_claims_nothing_and_shows_image_intervals_as_descriptive():
    runs = [make_run(arm, 0, quality=q) for arm, q in (("fcn_skips", 0.2), ("dilated_resize", 0.9))]
    arms, base = build_arms(runs, None)
    lines = verdict(arms, base).lines
    assert "one seed per arm: seed variation cannot be estimated, so no claim about designs is made" in lines[0]
    assert not _claims(lines)
    assert all("not estimable (one seed" in x for x in lines if x.startswith("Primary"))
    cell = arms[0].cells["dice_per_image"]
    assert cell.over == "images" and cell.interval.defined and not cell.seed_interval.defined
    assert "not ranked — an arm with one seed" in next(x for x in lines if "Dice pooled (positives)" in x)


def test_a_run_that_did_not_learn_is_left_out_of_every_claim():
    """dilated_resize predicts nothing (no false positives at all) in both seeds: flagged, never best."""
    runs = [make_run("dilated_resize", s, quality=0.9, learned=False) for s in (0, 1)]
    runs += [make_run("fcn_skips", s, quality=0.5, variant="fcn_skips") for s in (0, 1)]
    runs += [make_run("dilated_transpose", s, quality=0.55, variant="dilated_transpose") for s in (0, 1)]
    runs.append(make_run("dilated_transpose", 2, quality=0.55, variant="dilated_transpose", learned=False))
    arms, base = build_arms(runs, None)
    lines = verdict(arms, base).lines
    assert "dilated_resize did not learn and is left out" in lines[0]
    assert "the baseline dilated_resize did not learn: no comparison is made" in lines[0]
    assert any(x.startswith("Did not learn: dilated_resize (seed 0, 1) — the whole arm is left out") for x in lines)
    assert any(x.startswith("Did not learn: dilated_transpose (seed 2) — those runs are left out") for x in lines)
    assert sum(x.startswith("Learning gate: a run learned when") for x in lines) == 1
    assert not _claims(lines)
    assert all("dilated_resize" not in x for x in lines if x.startswith("Exploratory") and "leads" in x)
    transpose = next(a for a in arms if a.name == "dilated_transpose")
    assert [r.seed for r in transpose.counted] == [0, 1]
    # with a baseline that learned, the failed arm is still in no comparison
    lines = _lines(runs, baseline="fcn_skips")
    assert all("not compared" in x for x in lines if x.startswith("Primary") and "dilated_resize −" in x)


def test_the_notes_say_whether_the_arms_shared_one_loss_weight():
    from mammoseg.reporting.document import build_document

    def notes(weights: dict[str, float]) -> str:
        runs = []
        for arm, weight in weights.items():
            for seed in (0, 1):
                run = make_run(arm, seed, quality=0.6, variant=arm)
                run.config["positive_weight"] = weight
                runs.append(run)
        arms, base = build_arms(runs, None)
        return markdown.render(build_document(arms, base, "test", DEFAULT_PRIMARY, verdict(arms, base), []))

    assert "one common loss weight of abnormal pixels (w = 18)" in notes({"fcn_skips": 18.0, "dilated_resize": 18.0})
    author = notes({"fcn_skips": 33.0, "dilated_resize": 18.0})
    assert "different loss weights" in author and "fcn_skips w = 33" in author and "dilated_resize w = 18" in author


def test_exploratory_ranking_needs_separated_seed_intervals():
    metric = METRIC_BY_KEY["dice_pooled"]
    line = rank(metric, {"a": Interval(0.70, 0.60, 0.80), "b": Interval(0.68, 0.58, 0.78)}).sentence
    assert "no clear difference" in line and "leads" not in line.split("(")[0]
    line = rank(metric, {"a": Interval(0.50, 0.45, 0.55), "b": Interval(0.70, 0.66, 0.74)}).sentence
    assert line.startswith("Exploratory, Dice pooled") and "b leads" in line and "not a claim" in line
    fp_rate = METRIC_BY_KEY["neg_mean_prob"]  # lower is better
    assert "a leads" in rank(fp_rate, {"a": Interval(0.10, 0.05, 0.15), "b": Interval(0.60, 0.50, 0.70)}).sentence
    params = METRIC_BY_KEY["params_m"]
    assert "a, 1.00 vs next b 2.00 (a property of the design" in rank(params, {"a": Interval(1, 1, 1),
                                                                               "b": Interval(2, 2, 2)}).sentence
    assert "not ranked" in rank(METRIC_BY_KEY["pr_auc"], {"a": stats.seed_interval([0.5]),
                                                           "b": stats.seed_interval([0.6])}).sentence


# ---------------------------------------------------------------- learning gate


def test_prior_loss_is_the_training_loss_of_the_best_constant():
    """The gate compares the validation loss with this number: both must be on the loss's own scale."""
    from mammoseg.training.loss import WeightedPixelCrossEntropy

    labels = np.zeros((1, 20, 20, 1), np.float32)
    labels[0, :2, :10] = 1.0  # 5% abnormal pixels
    p = 0.9 / 1.85
    logits = np.zeros((1, 20, 20, 2), np.float32)
    logits[..., 1] = math.log(p / (1 - p))
    for normalization in ("pixels", "weights"):
        loss = float(WeightedPixelCrossEntropy(18.0, normalization)(labels, logits))
        assert loss == pytest.approx(prior_loss(0.05, 18.0, normalization), rel=1e-5)


def test_learning_gate_rule():
    # the best constant under a weight of 18 on 5% abnormal pixels is p = 0.9 / 1.85
    p = 0.9 / 1.85
    per_pixel = -(0.9 * math.log(p) + 0.95 * math.log(1 - p))
    assert prior_loss(0.05, 18.0) == pytest.approx(per_pixel)  # the author's loss: Σ w·CE / pixels
    assert prior_loss(0.05, 18.0, "weights") == pytest.approx(per_pixel / 1.85)
    assert prior_loss(0.0, 18.0) == 0.0 and math.isnan(prior_loss(math.nan, 18.0))
    assert learning_gate(0.40, 0.60, 12)["learned"]
    assert not learning_gate(0.60, 0.60, 12)["learned"]  # no better than the constant
    assert not learning_gate(0.40, 0.60, 0)["learned"]   # nothing abnormal ever called
    assert not learning_gate(math.nan, 0.60, 12)["learned"]


def test_arms_follow_ablation_folder_names():
    """Two arms of one variant (e.g. frozen encoder or not) stay apart; a name reused for two designs splits."""
    runs = [make_run(a, s, quality=0.8) for a in ("frozen", "dilated_resize") for s in (1, 2)]
    runs.append(make_run("frozen", 1, quality=0.5, variant="fcn_skips"))
    arms, base = build_arms(runs, None)
    assert {a.name: len(a.runs) for a in arms} == {"frozen (fcn_skips)": 1, "frozen (dilated_resize)": 2,
                                                   "dilated_resize": 2}
    assert base is not None and base.name == "dilated_resize"
    assert "dice_per_image" in next(a for a in arms if a.name == "frozen (fcn_skips)").paired


def test_primary_metrics_in_the_experiment_config(tmp_path):
    from mammoseg.workflows.ablate import load_plan

    config = tmp_path / "exp.toml"
    config.write_text('[experiment]\ndata = "d"\nvariants = ["dilated_resize"]\nprimary_metrics = ["dice_pooled"]\n')
    assert load_plan(config).primary_metrics == ("dice_pooled",)
    config.write_text('[experiment]\ndata = "d"\nvariants = ["dilated_resize"]\n')
    assert load_plan(config).primary_metrics == DEFAULT_PRIMARY
    config.write_text('[experiment]\ndata = "d"\nvariants = ["dilated_resize"]\nprimary_metrics = ["dice", 3]\n')
    with pytest.raises(InputError, match=f"{re.escape(str(config))}: primary_metrics must be a list"):
        load_plan(config)
    config.write_text('[experiment]\ndata = "d"\nvariants = ["dilated_resize"]\nprimary_metrics = ["dice"]\n')
    with pytest.raises(InputError, match="unknown primary metric 'dice'"):
        load_plan(config)


# ---------------------------------------------------------------- round trip: train, evaluate, compare


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))


@pytest.fixture(scope="module")
def evaluated_runs(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Runs that `train` and `evaluate` wrote: the session's tiny dilated_resize run and a one-epoch
    dilated_transpose run on its easy dataset."""
    from mammoseg.evaluation.evaluate import evaluate_run
    from mammoseg.training.config import build_config
    from mammoseg.training.train import train

    data = json.loads((tiny_run / "config.json").read_text())["dataset"]["path"]
    config = build_config({"variant": "dilated_transpose", "data": data, "width": 0.125, "epochs": 1,
                           "batch_size": 4, "learning_rate": 3e-3, "deterministic": True, "run_name": "transpose"})
    run = train(config, tmp_path_factory.mktemp("round_trip"))
    evaluate_run(run.path, "test")
    return [tiny_run, run.path]


@pytest.fixture(scope="module")
def round_trip_report(evaluated_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mammoseg compare` of the evaluated runs: the report folder."""
    out = tmp_path_factory.mktemp("round_trip_report")
    result = CliRunner().invoke(cli, ["compare", *map(str, evaluated_runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_round_trip_report_shows_every_promised_figure(evaluated_runs, round_trip_report):
    out = round_trip_report
    md = (out / "report.md").read_text(encoding="utf-8")
    stems = re.findall(r"!\[(\w+)\]\(figures/(\w+)\.png\)", md)
    assert all(a == b for a, b in stems)
    stems = [a for a, _ in stems]
    assert set(stems) >= {"learning_curves", "metrics", "examples", "spectra", "checkerboard", "froc"}
    from matplotlib.image import imread

    for stem in stems:
        png = imread(out / "figures" / f"{stem}.png")
        assert png.shape[0] > 50 and png.shape[1] > 50 and np.ptp(png) > 0, stem  # drawn, not blank
    collector = _Collector()
    collector.feed((out / "report.html").read_text(encoding="utf-8"))
    assert len(collector.images) == len(stems) and all(s.startswith("data:image/png;base64,") for s in collector.images)
    # the negative-image spectrum: written by evaluate, read back, drawn as the second panel
    for path in evaluated_runs:
        assert {"all", "negatives"} <= set(load_run(path).spectra)
    assert "over all images and over the negative images alone" in md
    spectra = imread(out / "figures" / "spectra.png")
    assert spectra.shape[1] > 1.8 * spectra.shape[0]  # two panels side by side


def test_round_trip_numbers_and_gate_come_from_what_evaluate_wrote(evaluated_runs, round_trip_report):
    with open(round_trip_report / "summary.csv", newline="") as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert list(next(iter(rows.values()))) == summary_columns()
    assert set(rows) == {"dilated_transpose", "dilated_resize"}
    for path in evaluated_runs:
        metrics = json.loads((path / "eval" / "test" / "metrics.json").read_text())
        row = rows[metrics["variant"]]
        assert isinstance(metrics[GATE_KEY]["learned"], bool) and metrics[GATE_KEY]["rule"]
        assert (str(metrics["seed"]) in row["seeds_not_learned"].split()) != metrics[GATE_KEY]["learned"]
        assert float(row["dice_per_image_mean"]) == pytest.approx(metrics["dice_per_image_positives"])
        assert float(row["neg_fp_rate_mean"]) == pytest.approx(metrics["negatives_fp_rate_author"])
        assert float(row["pr_auc_mean"]) == pytest.approx(metrics["pixel_pr_auc"])
        assert float(row["dice_per_image_ci_low"]) <= float(row["dice_per_image_mean"])  # one run: over its images
        epochs = len((path / "history.csv").read_text().splitlines()) - 1
        assert 1 <= float(row["epochs_to_quality_mean"]) <= epochs  # time to quality, from history.csv
        assert float(row["seconds_to_quality_mean"]) > 0
    text = (round_trip_report / "report.html").read_text(encoding="utf-8")
    assert "Differences against dilated_resize" in text and "Learning gate" in text
    assert "one seed per arm" in text and "descriptive" in text
    assert not list(round_trip_report.glob(".*tmp*"))


def test_compare_errors_name_the_folder_and_the_fix(evaluated_runs, tmp_path):
    bare = tmp_path / "runs" / "fcn_skips-seed1"
    bare.mkdir(parents=True)
    (bare / "config.json").write_text(json.dumps({"variant": "fcn_skips", "seed": 1}))
    with pytest.raises(InputError, match="mammoseg evaluate"):
        write_report([bare], tmp_path / "rep2")
    runner = CliRunner()
    result = runner.invoke(cli, ["compare", str(bare), "--out", str(tmp_path / "rep2")])
    assert result.exit_code != 0 and "mammoseg evaluate" in str(result.exception)
    assert not (tmp_path / "rep2").exists()
    with pytest.raises(MammosegError, match="baseline 'nope' is not among the compared arms"):
        write_report(evaluated_runs, tmp_path / "out", baseline="nope")
    result = runner.invoke(cli, ["compare", *map(str, evaluated_runs), "--primary", "nope", "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code != 0 and "unknown primary metric 'nope'" in str(result.exception)


def test_cli_error_is_one_line(tmp_path):
    import subprocess

    result = subprocess.run([sys.executable, "-m", "mammoseg", "compare", str(tmp_path / "missing"), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing'}: no such run folder"


def test_scores_defined_in_zero_to_one_declare_it():
    """The kernel score and the phase-mean scores lie in [0, 1] by construction: their intervals must too."""
    for key in ("kernel_init", "phase_mean_init", "phase_mean_trained", "phase_mean_margin_trained"):
        assert METRIC_BY_KEY[key].bounds == stats.UNIT


def test_both_renderers_write_one_document_and_html_puts_the_answer_first():
    """Markdown and HTML carry the same lines and cells; the HTML opens with the answer, folds the
    exploratory leads, marks claims, and keeps every table in a sideways-scrolling div."""
    import html as stdlib_html

    from mammoseg.reporting import html, markdown
    from mammoseg.reporting.document import build_document

    runs = [make_run(arm, seed, quality=q) for arm, q in (("fcn_skips", 0.3), ("dilated_resize", 0.85))
            for seed in (0, 1, 2)]
    arms, base = build_arms(runs, None)
    said = verdict(arms, base)
    document = build_document(arms, base, "test", DEFAULT_PRIMARY, said, [])
    page, md = html.render(document), markdown.render(document)
    assert page.index('<p class="glance">At a glance: <strong>fcn_skips') < page.index("Primary, FP rate")
    assert page.index("Primary, ") < page.index("<details>") < page.index("Exploratory, ")
    assert f"Exploratory metrics: {len(said.exploratory)} lines" in page
    assert page.count("<table") == page.count('<div class="scroll"><table') == 7  # 6 groups, 1 of differences
    assert md.count("\n|---|") == 7 and md.index("At a glance") < md.index("- Primary") < md.index("- Exploratory")
    for line in said.lines:
        assert line in md and stdlib_html.escape(line).replace("**", "") in page.replace("<strong>", "").replace(
            "</strong>", "")
    assert '<td class="best">' in page and "| **" in md  # the claimed differences stand out in both
