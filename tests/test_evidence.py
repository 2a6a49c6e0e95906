"""Evidence an experiment gathers beside its runs: rebuilt networks at initialisation for claim (b), the
interleaved speed comparison for claim (c), and how the claims read them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mammoseg.core.errors import InputError
from mammoseg.reporting.aggregate import build_arms
from mammoseg.reporting.claims import HOLDS, OPEN, settle
from mammoseg.reporting.evidence import INIT_NETWORKS_FILE, INIT_SCORES, SPEED_FILE, read_evidence
from mammoseg.workflows.ablate import load_plan
from mammoseg.workflows.evidence import EvidenceSettings, benchmark_pairs, measure_networks
from tests.test_claims import AS_THE_ARTICLE, ARMS, _run

DILATED = ("dilated_resize", "dilated_transpose", "dilated_transpose-k3")


def _spec(arm: str) -> dict:
    variant, _, kernel = arm.partition("-k")
    return {"variant": variant, "image_size": 64, "width": 0.125, "transpose_kernel": int(kernel) if kernel else None}


@pytest.fixture(scope="module")
def networks(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("evidence")
    measure_networks({"networks": 3, "arms": {arm: _spec(arm) for arm in DILATED}}, folder / INIT_NETWORKS_FILE)
    return folder


def test_rebuilt_networks_score_every_arm_and_the_transpose_has_a_checkerboard(networks):
    evidence = read_evidence(networks)
    assert evidence.network_count == 3 and set(evidence.networks) == set(DILATED)
    for arm in DILATED:
        assert all(len(values) == 3 for values in evidence.networks[arm].values())
    assert set(evidence.networks["dilated_resize"]) == set(INIT_SCORES)
    resize, transpose = (evidence.networks[a]["decoder_init"] for a in DILATED[:2])
    assert max(resize) < min(transpose)  # a resize cannot make a stride-2 phase pattern; a random transpose does


def _arms(seeds: int = 3):
    runs = [_run(arm, seed, **AS_THE_ARTICLE[arm]) for arm in ARMS for seed in range(seeds)]
    return build_arms(runs, "dilated_resize", ("neg_fp_rate",))[0]


def test_claim_b_at_initialisation_takes_the_networks_as_units(networks):
    arms = _arms()
    by_runs = {a.claim.key: a for a in settle(arms)}["b"]
    by_networks = {a.claim.key: a for a in settle(arms, read_evidence(networks))}["b"]
    for runs, nets in zip(by_runs.outcomes, by_networks.outcomes):
        if runs.comparison.metric == "decoder_init":
            assert "3 rebuilt networks" in nets.basis and nets.difference.spread.seeds == 3
            values = read_evidence(networks).networks
            expected = (sum(values[nets.comparison.arm][runs.comparison.metric])
                        - sum(values[nets.comparison.other][runs.comparison.metric])) / 3
            assert nets.difference.estimate == pytest.approx(expected)
        else:  # after training, and the output's period-32 score a 64 px map cannot take: still the runs
            assert nets.basis == "" and nets.difference.estimate == runs.difference.estimate


def _pair(a: str, b: str, ratio: float, low: float, high: float, p: float) -> dict:
    return {"a": a, "b": b, "speed_ratio": ratio, "speed_ratio_low": low, "speed_ratio_high": high, "p_value": p,
            "a_images_per_second_median": 10.0 * ratio, "b_images_per_second_median": 10.0}


def test_claim_c_is_confirmatory_on_the_interleaved_ratio_and_exploratory_without_it(tmp_path):
    arms = _arms()
    assert {a.claim.key: a for a in settle(arms)}["c"].confirmatory is False
    pairs = [_pair("fcn_resize_mid", "fcn_skips", 1.3, 1.2, 1.4, 1e-5),
             _pair("dilated_resize", "dilated_transpose", 1.1, 1.05, 1.15, 1e-4)]
    (tmp_path / SPEED_FILE).write_text(json.dumps({"pairs": pairs}))
    answer = {a.claim.key: a for a in settle(arms, read_evidence(tmp_path))}["c"]
    assert answer.confirmatory and answer.status == HOLDS
    first = answer.outcomes[0]
    assert first.difference.estimate == pytest.approx(3.0) and first.difference.low == pytest.approx(2.0)
    assert "speed ratio 1.300 [1.200, 1.400]" in first.basis
    pairs[1] = _pair("dilated_resize", "dilated_transpose", 1.0, 0.9, 1.1, 0.9)
    (tmp_path / SPEED_FILE).write_text(json.dumps({"pairs": pairs}))
    assert {a.claim.key: a for a in settle(arms, read_evidence(tmp_path))}["c"].status == OPEN


def test_a_malformed_evidence_file_is_an_error_naming_it(tmp_path):
    (tmp_path / SPEED_FILE).write_text(json.dumps({"pairs": [{"a": "x"}]}))
    with pytest.raises(InputError, match=SPEED_FILE):
        read_evidence(tmp_path)
    (tmp_path / SPEED_FILE).unlink()
    (tmp_path / INIT_NETWORKS_FILE).write_text("[1, 2")
    with pytest.raises(InputError, match=INIT_NETWORKS_FILE):
        read_evidence(tmp_path)


def test_the_interleaved_benchmark_writes_the_ratio_the_claim_reads(tmp_path):
    request = {"blocks": 2, "steps": 1, "pairs": [["dilated_resize", "dilated_transpose"]],
               "arms": {arm: {**_spec(arm), "batch_size": 2, "precision": "float32"} for arm in DILATED[:2]}}
    benchmark_pairs(request, tmp_path / SPEED_FILE)
    pair = read_evidence(tmp_path).speed[("dilated_resize", "dilated_transpose")]
    assert pair["speed_ratio_low"] <= pair["speed_ratio"] <= pair["speed_ratio_high"]
    assert 0 <= pair["p_value"] <= 1 and len(pair["block_speed_ratios"]) == 2


def _experiment(tmp_path: Path, tables: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text('[experiment]\nname = "e"\ndata = "d"\nvariants = ["dilated_resize"]\n'
                    '[train]\nimage_size = 64\n' + tables)
    return path


def test_the_experiment_enables_each_evidence_with_its_table(tmp_path):
    assert load_plan(_experiment(tmp_path, "")).evidence == EvidenceSettings()
    plan = load_plan(_experiment(tmp_path, "[init_networks]\n[speed]\nsteps = 3\n"))
    assert plan.evidence == EvidenceSettings(networks=20, blocks=10, steps=3)
    with pytest.raises(InputError, match="exp.toml.*networks must be an integer of at least 2"):
        load_plan(_experiment(tmp_path, "[init_networks]\nnetworks = 1\n"))
    with pytest.raises(InputError, match="exp.toml"):
        load_plan(_experiment(tmp_path, "[speed]\nblock = 3\n"))


def test_every_pair_of_the_speed_claim_is_timed_when_its_arms_are_their_variants(tmp_path):
    from mammoseg.workflows.evidence import speed_pairs

    path = tmp_path / "exp.toml"
    path.write_text('[experiment]\nname = "e"\ndata = "d"\nvariants = ["fcn_skips", "fcn_resize_mid", '
                    '"dilated_transpose", "dilated_resize"]\n[train]\nimage_size = 128\n[speed]\n')
    assert speed_pairs(load_plan(path)) == [("fcn_resize_mid", "fcn_skips"), ("dilated_resize", "dilated_transpose")]
    path.write_text(path.read_text().replace("[speed]", "transpose_kernel = 3\n[speed]"))  # not its variant
    assert speed_pairs(load_plan(path)) == []


def test_time_to_quality_is_a_reported_metric():
    from mammoseg.metrics.catalog import METRIC_BY_KEY
    import pandas as pd

    run = _run("dilated_resize", 0, **AS_THE_ARTICLE["dilated_resize"])
    run.history = pd.DataFrame({"epoch": [1, 2, 3, 4], "val_loss": [1.0, 0.5, 0.41, 0.4],
                                "train_seconds": [10.0, 10.0, 12.0, 10.0]})
    assert METRIC_BY_KEY["epochs_to_quality"].value(run) == 3.0
    assert METRIC_BY_KEY["seconds_to_quality"].value(run) == 32.0
    run.history = None
    assert math.isnan(METRIC_BY_KEY["epochs_to_quality"].value(run))


def test_ablate_gathers_the_evidence_once_into_the_report_folder(tmp_path):
    from mammoseg.workflows.evidence import gather_evidence

    path = _experiment(tmp_path, "[init_networks]\nnetworks = 2\n")
    path.write_text(path.read_text().replace('variants = ["dilated_resize"]',
                                             'variants = ["dilated_resize", "dilated_transpose"]\n'
                                             f'report_dir = "{tmp_path / "report"}"')
                    .replace("image_size = 64", "image_size = 64\nwidth = 0.125"))
    plan = load_plan(path)
    gather_evidence(plan)
    written = plan.report_dir / INIT_NETWORKS_FILE
    assert set(read_evidence(plan.report_dir).networks) == {"dilated_resize", "dilated_transpose"}
    stamp = written.stat().st_mtime_ns
    gather_evidence(plan)  # up to date: not measured again
    assert written.stat().st_mtime_ns == stamp and not (plan.report_dir / SPEED_FILE).exists()
