"""Cross-validation as one more factor of an experiment: every arm and seed run on each fold dataset, and
the fold runs of an arm and seed read as one run that tested every image once."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mammoseg.core.errors import InputError, MammosegError
from mammoseg.dataset.prepare import FOLDS_FILE
from mammoseg.runs.folds import find_experiment_runs, merge_folds
from mammoseg.runs.rundir import Run, load_run
from train_data import write_easy_dataset

COUNTS = {"train": 8, "val": 4, "test": 4}


def _folds(root: Path, folds: int = 2) -> Path:
    """Fold datasets as `prepare --folds` lays them out, each testing images of its own (ids f<k>-...)."""
    for k in range(1, folds + 1):
        write_easy_dataset(root / f"fold-{k}", size=64, counts=COUNTS, seed=k, prefix=f"f{k}-")
    (root / FOLDS_FILE).write_text(json.dumps({"folds": folds, "layout": "mias",
                                               "datasets": [f"fold-{k}" for k in range(1, folds + 1)]}))
    return root


def _experiment(tmp_path: Path, data: Path) -> Path:
    toml = tmp_path / "cv.toml"
    toml.write_text(textwrap.dedent(f"""
        [experiment]
        name = "cv"
        data = "{data}"
        seeds = 1
        variants = ["dilated_resize"]
        report_dir = "{tmp_path / 'report'}"
        [train]
        width = 0.125
        epochs = 1
        batch_size = 4
        deterministic = true
    """))
    return toml


def test_a_cross_validated_experiment_runs_each_fold_and_compares_one_run_per_seed(tmp_path: Path) -> None:
    from mammoseg.workflows.ablate import load_plan, run_ablation

    data = _folds(tmp_path / "data")
    toml = _experiment(tmp_path, data)
    plan = load_plan(toml, seeds=2, runs_dir=tmp_path / "runs")
    assert [r.name for r in plan.runs] == ["fold-1/dilated_resize-seed0", "fold-2/dilated_resize-seed0",
                                           "fold-1/dilated_resize-seed1", "fold-2/dilated_resize-seed1"]
    assert [Path(r.config.data).name for r in plan.runs] == ["fold-1", "fold-2"] * 2
    assert plan.runs[1].config.run_name == "cv/fold-2/dilated_resize-seed0"

    outside = write_easy_dataset(tmp_path / "outside", size=64, counts={"test": 4}, seed=9, prefix="x-")
    toml.write_text(toml.read_text() + f'[external]\noutside = "{outside}"\n')
    plan = load_plan(toml, runs_dir=tmp_path / "runs")  # one seed: enough to read two folds as one run
    done = run_ablation(toml, runs_dir=tmp_path / "runs")
    assert done == [tmp_path / "runs" / "cv" / r.name for r in plan.runs]
    assert find_experiment_runs(tmp_path / "runs", "cv") == sorted(done)
    merged = merge_folds([load_run(path) for path in done])
    assert [(r.arm, r.seed) for r in merged] == [("dilated_resize", 0)]
    for run in merged:  # every test image of the collection once, each by the fold that never trained on it
        ids = run.per_image["example_id"]
        assert ids.is_unique and len(ids) == 2 * COUNTS["test"]
        assert {i.split("-")[0] for i in ids} == {"f1", "f2"}
        assert run.metrics["n_images"] == 2 * COUNTS["test"]
        assert len(run.detections["n_lesions"]) == len(ids)
        assert run.detections["image"].max(initial=-1) < len(ids)
        assert len(run.detections["op_threshold"]) == len(ids)  # each image with its fold's threshold
    report = (tmp_path / "report" / "report.md").read_text()
    assert "fold-*/dilated_resize-seed0" in report
    targets = {run.metrics["detection"]["operating_point"]["target_sensitivity"] for run in merged}
    assert len(targets) == 1 and 0.0 <= targets.pop() <= 0.8  # one operating point for every run

    # external validation: the first fold's model stands for its seed, at the experiment's operating point
    assert [p.parent.name for p in done if (p / "eval" / "test@outside" / "metrics.json").is_file()] == ["fold-1"]
    external = json.loads((done[0] / "eval" / "test@outside" / "metrics.json").read_text())
    assert external["external"] is True and external["n_images"] == 4
    assert external["detection"]["operating_point"]["target_sensitivity"] == merged[0].metrics["detection"][
        "operating_point"]["target_sensitivity"]
    assert "external dataset 'outside' (external validation)" in (tmp_path / "report" / "external-outside" /
                                                                  "report.md").read_text()
    with pytest.raises(InputError, match=r"\[external\] bad/name"):
        toml.write_text(toml.read_text() + '"bad/name" = "x"\n')
        load_plan(toml)


def test_merged_numbers_are_the_folds_mean_and_an_image_tested_twice_is_an_error(tmp_path: Path) -> None:
    def fold_run(k: int, ids: list[str], dice: float, learned: bool) -> Run:
        table = pd.DataFrame({"example_id": ids, "dice": [dice] * len(ids)})
        metrics = {"dice_pooled_positives": dice, "n_images": len(ids), "learning_gate": {"learned": learned},
                   "detection": {"cpm": math.nan if k == 1 else 0.5}, "split": "test"}
        detections = {"image": np.arange(len(ids)), "score": np.ones(len(ids)), "lesion": np.zeros(len(ids), int),
                      "n_lesions": np.ones(len(ids), int), "cut": np.full(len(ids), -np.inf)}
        return Run(tmp_path / "exp" / f"fold-{k}" / "fcn_skips-seed0", {"variant": "fcn_skips", "seed": 0}, metrics,
                   table, detections=detections)

    alone = Run(tmp_path / "exp" / "dilated_resize-seed0", {"seed": 0}, {}, pd.DataFrame({"example_id": ["a"]}))
    merged = merge_folds([fold_run(1, ["a", "b"], 0.2, True), alone, fold_run(2, ["c"], 0.5, False)])
    assert merged[1] is alone and len(merged) == 2
    run = merged[0]
    assert run.path == tmp_path / "exp" / "fold-*" / "fcn_skips-seed0" and run.arm == "fcn_skips"
    assert run.per_image["example_id"].tolist() == ["a", "b", "c"]
    assert run.metrics["dice_pooled_positives"] == pytest.approx(0.35) and run.metrics["n_images"] == 3
    assert run.metrics["learning_gate"]["learned"] is False  # learned only where every fold did
    assert run.metrics["detection"]["cpm"] == 0.5 and run.metrics["split"] == "test"
    assert run.detections["image"].tolist() == [0, 1, 2]
    with pytest.raises(MammosegError, match="image b is tested by more than one fold"):
        merge_folds([fold_run(1, ["a", "b"], 0.2, True), fold_run(2, ["b"], 0.5, True)])


def test_a_malformed_folds_record_is_named(tmp_path: Path) -> None:
    from mammoseg.workflows.ablate import load_plan

    data = _folds(tmp_path / "data")
    (data / FOLDS_FILE).write_text(json.dumps({"datasets": ["../elsewhere"]}))
    with pytest.raises(InputError, match=f"{FOLDS_FILE}.*fold folders"):
        load_plan(_experiment(tmp_path, data))


def test_each_arm_and_seed_can_start_from_its_own_earlier_run(tmp_path: Path) -> None:
    from mammoseg.workflows.ablate import load_plan

    data = _folds(tmp_path / "data")
    toml = _experiment(tmp_path, data)
    toml.write_text(toml.read_text() + 'init_encoder_from = "runs/study/{arm}-seed{seed}"\nfreeze_encoder = true\n')
    plan = load_plan(toml, seeds=2)
    assert [r.config.init_encoder_from for r in plan.runs] == ["runs/study/dilated_resize-seed0"] * 2 + \
        ["runs/study/dilated_resize-seed1"] * 2
    toml.write_text(toml.read_text().replace("{seed}", "{fold}"))
    with pytest.raises(InputError, match="only {arm} and {seed}"):
        load_plan(toml)
    crossover = 'init_encoder_from = ["runs/enc/fcn_skips-seed0", "runs/enc/{arm}-seed0"]'
    toml.write_text(toml.read_text().replace('init_encoder_from = "runs/study/{arm}-seed{fold}"', crossover))
    plan = load_plan(toml, seeds=3)  # seed k takes entry k mod 2, every fold alike
    assert [r.config.init_encoder_from for r in plan.runs] == ["runs/enc/fcn_skips-seed0"] * 2 + \
        ["runs/enc/dilated_resize-seed0"] * 2 + ["runs/enc/fcn_skips-seed0"] * 2
    toml.write_text(toml.read_text().replace(crossover, "init_encoder_from = []"))
    with pytest.raises(InputError, match="a run folder or a list of them"):
        load_plan(toml)


def test_the_common_target_is_the_most_every_run_reaches_on_validation() -> None:
    from mammoseg.workflows.ablate import common_target

    def evaluated(best: float | None, reached: bool, val: float = 0.5) -> dict:
        point = {"target_reached": reached, "val_sensitivity": val}
        return {"detection": {"operating_point": point if best is None else {**point, "val_max_sensitivity": best}}}

    assert common_target([evaluated(0.9, True), evaluated(0.95, True)]) == 0.8  # the declared target
    assert common_target([evaluated(0.9, True), evaluated(0.35, False)]) == 0.35
    assert common_target([evaluated(None, False, val=0.3), evaluated(None, True)]) == 0.3  # recorded before the maximum
    assert common_target([{}, evaluated(math.nan, False)]) == 0.8
    assert common_target([evaluated(0.5, False), {**evaluated(0.0, False), "learning_gate": {"learned": False}}]) == 0.5
