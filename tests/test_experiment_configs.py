"""The experiments shipped in experiments/ load as plans: a config broken by a renamed key or metric fails
here, not an hour into `make study`."""

from __future__ import annotations

from pathlib import Path

import pytest

from mammoseg.workflows.ablate import load_plan

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize("config", sorted(p.name for p in EXPERIMENTS.glob("*.toml")))
def test_every_shipped_experiment_loads(config: str) -> None:
    plan = load_plan(EXPERIMENTS / config, runs_dir="unused")
    assert plan.runs and all(run.config.variant for run in plan.runs)


def test_the_real_film_study_starts_every_arm_of_a_seed_from_one_encoder() -> None:
    plan = load_plan(EXPERIMENTS / "study_mias.toml", runs_dir="unused")
    arms = {run.arm for run in plan.runs}
    assert arms == {"fcn_skips", "fcn_bottleneck", "fcn_resize_mid", "dilated_transpose", "dilated_transpose-k3",
                    "dilated_resize"}
    sources: dict[int, set[str]] = {}
    for run in plan.runs:
        sources.setdefault(run.seed, set()).add(run.config.init_encoder_from)
    assert sources == {0: {"experiments/runs/mias-encoders/fcn_skips-seed0"},
                       1: {"experiments/runs/mias-encoders/dilated_resize-seed0"}}
    encoders = load_plan(EXPERIMENTS / "mias_encoders.toml", runs_dir="experiments/runs")
    assert {str(encoders.folder / run.name) for run in encoders.runs} == set().union(*sources.values())
    assert set(plan.external) == {"real-pairs"}
