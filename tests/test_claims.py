"""The article's claims: their measures (brightness-following, the hard map scored as a probability map,
the first upsampling's checkerboard) and how a set of runs settles each claim."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from mammoseg.metrics import stats
from mammoseg.evaluation.evaluate import GATE_KEY, learning_gate
from mammoseg.metrics.segmentation import brightness_correlation
from mammoseg.runs.rundir import Run
from mammoseg.reporting import markdown
from mammoseg.reporting.aggregate import build_arms
from mammoseg.reporting.claims import CLAIMS, EQUIVALENT, FAILS, HOLDS, OPEN, settle
from mammoseg.reporting.findings import article_figure, claims_section
from mammoseg.reporting.document import Document
from mammoseg.reporting.registry import hard_map

SIZE = 32


def test_brightness_correlation_follows_the_input_inside_the_breast_only():
    rng = np.random.default_rng(0)
    image = np.zeros((SIZE, SIZE))
    image[:, 8:] = rng.uniform(0.2, 1.0, (SIZE, SIZE - 8))  # background at the minimum on the left
    assert brightness_correlation(image, image) == pytest.approx(1.0)
    assert brightness_correlation(image, 1.0 - image) == pytest.approx(-1.0)
    assert abs(brightness_correlation(image, rng.uniform(size=image.shape))) < 0.15
    outline_only = (image > 0).astype(float)  # high on the breast, low on the background
    assert math.isnan(brightness_correlation(image, outline_only))  # the outline alone is no correlation
    assert math.isnan(brightness_correlation(np.ones((4, 4)), rng.uniform(size=(4, 4))))


def test_paired_difference_is_a_one_sample_t_over_the_runs():
    diffs = np.array([0.10, 0.14, 0.08, 0.12])
    result = stats.paired(diffs)
    se = diffs.std(ddof=1) / 2.0
    assert result.estimate == pytest.approx(0.11)
    assert result.high - result.estimate == pytest.approx(3.182446 * se, rel=1e-4)  # t(0.975, 3)
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(0.11 / se, 3))
    assert 0.0 < result.p_value < 0.01
    assert not stats.paired([0.1]).defined and math.isnan(stats.paired([]).estimate)


def _brute_force_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP = Σ over distinct thresholds (high to low) of Δrecall × precision, ties taken together."""
    ap, previous_recall = 0.0, 0.0
    for threshold in np.unique(scores)[::-1]:
        predicted = scores >= threshold
        recall = (predicted & labels).sum() / labels.sum()
        ap += (recall - previous_recall) * (predicted & labels).sum() / predicted.sum()
        previous_recall = recall
    return ap


def test_the_hard_map_scored_as_a_probability_map():
    labels = np.array([1] * 20 + [0] * 80, dtype=bool)
    hard = np.array([1] * 12 + [0] * 8 + [1] * 6 + [0] * 74, dtype=float)
    tp, fp = int((hard.astype(bool) & labels).sum()), int((hard.astype(bool) & ~labels).sum())
    fn, tn = int(labels.sum()) - tp, int((~labels).sum()) - fp
    frame = pd.DataFrame({"tp": [tp], "fp": [fp], "fn": [fn], "tn": [tn]})
    run = Run(Path("r-seed0"), {}, {}, frame)
    assert hard_map(run, "ap") == pytest.approx(_brute_force_average_precision(hard, labels))
    assert hard_map(run, "ece") == pytest.approx((fp + fn) / 100)  # calibration error of 0/1 = error rate


def test_upsampling_checkerboard_sees_the_transpose_inside_the_decoder():
    import keras

    from mammoseg.models import build_model
    from mammoseg.models.probes import checkerboard_scores

    scores = {}
    for variant in ("dilated_transpose", "dilated_resize"):
        keras.utils.set_random_seed(0)
        model = build_model(variant, image_size=128, width=0.125, transpose_kernel=3)
        scores[variant] = checkerboard_scores(model, "up_conv2")["upsampling"]
    assert scores["dilated_resize"]["probe_layer"] == "up_conv2_relu" and scores["dilated_resize"]["period"] == 32
    assert scores["dilated_transpose"]["decoder"] > 2 * scores["dilated_resize"]["decoder"]


# ---------------------------------------------------------------- settling claims on runs in memory

ARMS = ("fcn_skips", "fcn_bottleneck", "fcn_resize_mid", "dilated_transpose", "dilated_transpose-k3", "dilated_resize")


def _run(arm: str, seed: int, *, fp_rate: float, bright: float, checker: float, speed: float) -> Run:
    """A run with evaluate's columns: 20 test images, half of them without abnormality (negative tiles and normal
    mammograms), the same ids in every run; `fp_rate` and `bright` set the false positives at the operating point."""
    rng = np.random.default_rng(zlib.crc32(f"{arm}{seed}".encode()))
    n, area = 160, SIZE * SIZE
    negative = np.arange(n) % 2 == 1
    flagged = rng.uniform(size=n) < fp_rate
    tp = np.where(negative, 0, 30)
    fp = np.where(negative, np.where(flagged, 40, 0), 10)
    fn = np.where(negative, 0, 10)
    ids = [f"ex{i:02d}" for i in range(n)]
    kind = np.where(negative, np.where(np.arange(n) % 4 == 3, "normal", "negative"), "positive")
    frame = pd.DataFrame({"example_id": ids, "kind": kind, "patient_id": ids,
                          "positive_fraction": (tp + fn) / area, "dice": 0.5, "iou": 0.3, "tp": tp, "fp": fp, "fn": fn,
                          "tn": area - tp - fp - fn, "max_prob": 0.9, "mean_prob": 0.1, "frac_above_05": 0.01,
                          "predicted_positive": (tp + fp > area / 750).astype(int), "phase_mean": 0.1,
                          "aliasing_fraction": 0.01, "phase_mean_margin": 0.1,
                          "bright_corr": np.clip(bright + 0.05 * rng.standard_normal(n), -1, 1),
                          "fp_candidates_op": np.where(negative & flagged, 2, 0), "flagged_op": flagged.astype(float),
                          "bright_fp_area_op": np.where(negative & flagged, bright * 0.01, 0.0)})
    noise = 0.01 * rng.standard_normal(4)
    upsampling = {stage: {"decoder": checker + noise[i], "output": checker / 2 + noise[i + 2]}
                  for i, stage in enumerate(("init", "trained"))}
    detection = {"soft_at_hard_fp": 0.8 + 0.02 * rng.standard_normal(), "hard": {"sensitivity": 0.6}}
    metrics = {"pixel_pr_auc": 0.8 + 0.01 * rng.standard_normal(), "ece": 0.01 + 0.002 * rng.standard_normal(),
               "ece_prior_corrected": 0.004 + 0.001 * rng.standard_normal(), "detection": detection,
               "brier_prior_corrected": 0.004 + 0.001 * rng.standard_normal(),
               "checkerboard": {"upsampling": upsampling}, GATE_KEY: learning_gate(0.3, 0.6, 30)}
    variant, _, kernel = arm.partition("-k")
    config = {"variant": variant, "seed": seed, "image_size": SIZE, "transpose_kernel": int(kernel or 4)}
    timing = {"train_images_per_second": speed * (1 + 0.01 * rng.standard_normal())}
    return Run(Path("runs") / f"{arm}-seed{seed}", config, metrics, frame, timing=timing)


def _settled(profile: dict[str, dict[str, float]], seeds: int = 4) -> dict[str, str]:
    runs = [_run(arm, seed, **profile[arm]) for arm in ARMS for seed in range(seeds)]
    arms, _ = build_arms(runs, "dilated_resize", ("neg_fp_rate",))
    return {answer.claim.key: answer.status for answer in settle(arms)}


AS_THE_ARTICLE = {
    "fcn_skips": dict(fp_rate=0.98, bright=0.6, checker=0.5, speed=10.0),
    "fcn_bottleneck": dict(fp_rate=0.98, bright=0.6, checker=0.5, speed=9.0),
    "fcn_resize_mid": dict(fp_rate=0.8, bright=0.5, checker=0.3, speed=15.0),
    "dilated_transpose": dict(fp_rate=0.5, bright=0.3, checker=0.6, speed=8.0),
    "dilated_transpose-k3": dict(fp_rate=0.5, bright=0.3, checker=0.7, speed=8.0),
    "dilated_resize": dict(fp_rate=0.05, bright=0.0, checker=0.1, speed=9.0),
}


def test_runs_that_behave_as_the_article_says_settle_every_confirmatory_claim():
    """(a) needs fcn_bottleneck ≈ fcn_skips by equivalence; (c) rests on load-confounded timings, so it
    stays exploratory and is never settled by the confirmatory family."""
    assert _settled(AS_THE_ARTICLE, seeds=8) == {"a": HOLDS, "b": HOLDS, "c": OPEN, "d": HOLDS}


def test_a_claim_the_runs_contradict_does_not_hold_and_identical_arms_claim_no_difference():
    contradicting = {**AS_THE_ARTICLE, "dilated_resize": dict(fp_rate=1.0, bright=0.9, checker=0.9, speed=9.0)}
    settled = _settled(contradicting)
    assert settled["a"] == FAILS and settled["b"] == FAILS
    same = {arm: dict(fp_rate=0.5, bright=0.3, checker=0.3, speed=9.0) for arm in ARMS}
    settled = _settled(same)
    between_arms = [settled[key] for key in "abc"]  # (d) compares two maps of the same runs, not arms
    assert set(between_arms) <= {OPEN, EQUIVALENT} and EQUIVALENT in between_arms


def test_copies_of_one_design_on_other_seeds_claim_no_difference():
    """Every arm one design; fcn_skips trained on seeds 3-5, the others on 0-2 (nothing to pair): the claims
    between arms come out equivalent or not settled, never holding or failing."""
    same = dict(fp_rate=0.5, bright=0.3, checker=0.3, speed=9.0)
    runs = [_run(arm, seed, **same) for arm in ARMS for seed in ((3, 4, 5) if arm == "fcn_skips" else (0, 1, 2))]
    arms, _ = build_arms(runs, "dilated_resize", ("neg_fp_rate",))
    settled = {answer.claim.key: answer for answer in settle(arms)}
    assert {settled[key].status for key in "abc"} <= {OPEN, EQUIVALENT}
    assert all(o.difference.spread.images > 0 for o in settled["a"].outcomes)  # per image, runs crossed


def test_a_claim_whose_arms_are_absent_gets_one_line_naming_them(tmp_path):
    runs = [_run(arm, seed, **AS_THE_ARTICLE[arm]) for arm in ARMS if arm != "fcn_bottleneck" for seed in range(3)]
    arms, _ = build_arms(runs, "dilated_resize", ("neg_fp_rate",))
    text = markdown.render(Document("Findings", (claims_section(arms),)))
    for claim in CLAIMS:
        assert f"({claim.key})" in text
    assert ("(a) Not tested: needs the arms dilated_resize, fcn_skips, fcn_bottleneck (fcn_bottleneck not in this "
            "experiment)") in text
    assert "| (a) |" not in text and "| (b) |" in text  # one line for an untested claim, no rows
    assert article_figure(arms) is None  # Figure 3 needs fcn_bottleneck


def test_every_claim_names_declared_metrics_and_the_author_rule_is_in_none():
    from mammoseg.reporting.registry import METRIC_BY_KEY

    keys = [k for claim in CLAIMS for c in claim.comparisons for k in (c.metric, c.against) if k]
    assert all(METRIC_BY_KEY[k].key == k for k in keys)  # a misspelt key raises here, naming the nearest
    assert not {"neg_fp_rate", "normal_fp_rate", "neg_bright_corr", "pr_auc"} & set(keys)  # exploratory now


def test_an_experiment_declares_its_own_claims_and_the_same_verdict_settles_them():
    from mammoseg.core.errors import InputError
    from mammoseg.reporting.claims import read_claims

    tables = {
        "resize": {"statement": "the resize has less checkerboard at initialisation than the transpose",
                   "compare": [{"metric": "decoder_init", "arm": "dilated_resize", "other": "dilated_transpose"}]},
        "tie": {"statement": "the bottleneck changes nothing",
                "compare": [{"metric": "neg_fp_per_tile_op", "arm": "fcn_bottleneck", "other": "fcn_skips",
                             "equivalent": True}]},
    }
    claims = read_claims(tables, "exp.toml", ARMS)
    assert [c.key for c in claims] == ["resize", "tie"] and read_claims(None, "exp.toml", ARMS) is CLAIMS
    runs = [_run(arm, seed, **AS_THE_ARTICLE[arm]) for arm in ARMS for seed in range(8)]
    arms, _ = build_arms(runs, "dilated_resize", ("neg_fp_rate",))
    assert {a.claim.key: a.status for a in settle(arms, claims=claims)} == {"resize": HOLDS, "tie": HOLDS}
    text = markdown.render(Document("Findings", (claims_section(arms, claims=claims),)))
    assert "The experiment's claims" in text and "**(resize) Holds**" in text
    for bad, message in (({"statement": "s", "compare": [{"metric": "no_such", "arm": "fcn_skips", "other": "x"}]},
                          "no metric 'no_such'"),
                         ({"statement": "s", "compare": [{"metric": "decoder_init", "arm": "fcn_skips",
                                                          "other": "unet"}]}, "two of the experiment's arms"),
                         ({"compare": []}, "needs a statement")):
        with pytest.raises(InputError, match=message):
            read_claims({"bad": bad}, "exp.toml", ARMS)
