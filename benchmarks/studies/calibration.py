"""Calibration of the comparison's intervals on simulated experiments with a known truth.

Each simulated experiment has two arms, `seeds` runs each, evaluated on `images` test images, and
compares them the way the report does: one number per run, a two-sample t interval of the difference of
the arms' means (`mammoseg.metrics.stats.difference`). It is repeated many times with a true
difference of 0 (how often is a difference claimed? nominal 5%) and with a known difference (how often
does the interval hold it? nominal 95%).

A per-image value of run s of arm a on image i is

    y = 0.5 + effect·[a = A] + u_i + b_as + e_asi

u_i ~ N(0, image_sd) is the image's difficulty, b_as ~ N(0, seed_sd) what the seed does to the whole
run, e_asi ~ N(0, image_sd) how that run treats that image. "paired": every run sees the same images
(the project's case: one test split), so u cancels in a difference; "unpaired": every run draws its
own images. A pooled metric draws per-image truth areas (20-80 pixels), recall 0.6 + effect +
b_as + u_i + e_asi (clipped to [0.02, 0.98]) and false-positive pixels, and reports one Dice over
the summed confusion counts; its true difference (conditional on the images, which is what the
comparison is about) is estimated from `truth_runs` extra runs per arm on the same images.

    PYTHONPATH=. python benchmarks/studies/calibration.py --experiments 1000
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mammoseg.metrics import stats  # noqa: E402

IMAGE_SD = 0.1
EFFECT = 0.05


@dataclass(frozen=True)
class Setting:
    metric: str  # "per_image" | "pooled"
    seed_sd: float
    seeds: int
    design: str  # "paired" | "unpaired"
    images: int = 100


def per_run_values(setting: Setting, effect: float, rng: np.random.Generator, n_experiments: int,
                   runs: int | None = None) -> np.ndarray:
    """One metric value per run: [experiments, 2 arms, runs]; arm 0 carries `effect`."""
    runs = runs or setting.seeds
    shape = (n_experiments, 2, runs, setting.images)
    if setting.design == "paired":
        image = rng.normal(0.0, IMAGE_SD, (n_experiments, 1, 1, setting.images))
    else:
        image = rng.normal(0.0, IMAGE_SD, shape)
    seed = rng.normal(0.0, setting.seed_sd, (n_experiments, 2, runs, 1))
    noise = rng.normal(0.0, IMAGE_SD, shape)
    shift = np.array([effect, 0.0])[None, :, None, None]
    if setting.metric == "per_image":
        return (0.5 + shift + image + seed + noise).mean(axis=-1)
    area_rng = np.random.default_rng(12345)  # the same lesion sizes in every experiment and run
    area = area_rng.integers(20, 81, setting.images).astype(np.float64)
    recall = np.clip(0.6 + shift + image + seed + noise, 0.02, 0.98)
    tp = rng.binomial(area.astype(np.int64), recall)
    fn = area - tp
    fp = rng.poisson(0.3 * area * (1.0 - recall))
    return stats.pooled_overlap(tp.sum(-1), fp.sum(-1), fn.sum(-1), "dice")


def _truth(setting: Setting, effect: float, rng: np.random.Generator, n_experiments: int, truth_runs: int) -> np.ndarray:
    """True difference per experiment: exact for per-image means; for pooled Dice, the mean over many runs
    on the same images (paired) or over fresh images (unpaired)."""
    if setting.metric == "per_image" or effect == 0.0:
        return np.full(n_experiments, effect)
    values = per_run_values(setting, effect, rng, 1 if setting.design == "unpaired" else n_experiments, truth_runs)
    diff = values[:, 0].mean(-1) - values[:, 1].mean(-1)
    return np.broadcast_to(diff, (n_experiments,))


def simulate(setting: Setting, effect: float, n_experiments: int, seed: int = 0, truth_runs: int = 0) -> dict[str, float]:
    """Rate of claims (interval excludes 0) and of intervals holding the true difference, over experiments;
    `truth_runs` (pooled metric with an effect, paired) must be given for the coverage to mean anything."""
    rng = np.random.default_rng(seed)
    if setting.metric == "pooled" and effect != 0.0 and setting.design == "paired":
        # the images must be the same in the truth runs as in the experiment: simulate them together
        values = per_run_values(setting, effect, rng, n_experiments, setting.seeds + truth_runs)
        truth = values[:, 0, setting.seeds:].mean(-1) - values[:, 1, setting.seeds:].mean(-1)
        values = values[:, :, : setting.seeds]
    else:
        values = per_run_values(setting, effect, rng, n_experiments)
        truth = _truth(setting, effect, rng, n_experiments, truth_runs)
    claims = covered = 0
    out_of_range = 0
    for k in range(n_experiments):
        diff = stats.difference(values[k, 0], values[k, 1], stats.UNIT)
        claims += diff.excludes(0.0)
        covered += diff.low <= truth[k] <= diff.high
        arm = stats.seed_interval(values[k, 1], stats.UNIT)
        out_of_range += not (0.0 <= arm.low <= arm.high <= 1.0)
    return {"claim_rate": claims / n_experiments, "coverage": covered / n_experiments,
            "arm_interval_out_of_range": out_of_range / n_experiments}


def family_error(n_experiments: int, seed: int = 0, arms: int = 4, metrics: int = 3, seeds: int = 3) -> tuple[float, float]:
    """Share of experiments of `arms` identical arms plus a baseline, `metrics` independent metrics each, with any
    claim: each comparison at 5% alone, and with Holm over the family."""
    rng = np.random.default_rng(seed)
    setting = Setting("per_image", 0.03, seeds, "paired")
    any_raw = any_holm = 0
    for _ in range(n_experiments):
        p_values = []
        for _ in range(metrics):
            # every run of every arm on the same images, none with an effect: arm 0 is the baseline
            runs = per_run_values(setting, 0.0, rng, 1, seeds * (arms + 1))[0, 1].reshape(arms + 1, seeds)
            p_values += [stats.difference(other, runs[0]).p_value for other in runs[1:]]
        any_raw += min(p_values) < 0.05
        any_holm += min(stats.holm(p_values)) < 0.05
    return any_raw / n_experiments, any_holm / n_experiments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000, help="simulated experiments per setting")
    parser.add_argument("--truth-runs", type=int, default=200, help="extra runs per arm for a pooled metric's truth")
    args = parser.parse_args()
    n = args.experiments
    tolerance = 1.96 * math.sqrt(0.05 * 0.95 / n)
    print(f"{n} experiments per setting; {IMAGE_SD} image sd; known difference {EFFECT}; "
          f"binomial 95% band of a 5% rate: {0.05 - tolerance:.3f}-{0.05 + tolerance:.3f}")
    print(f"| metric | design | seed sd | seeds | false-claim rate (true diff 0) | coverage of the known difference |")
    print("|---|---|---|---|---|---|")
    start = time.perf_counter()
    worst = [1.0, 0.0, 1.0]
    for index, (metric, design, seed_sd, seeds) in enumerate(
            itertools.product(("per_image", "pooled"), ("paired", "unpaired"), (0.0, 0.01, 0.03, 0.1), (2, 3, 5))):
        setting = Setting(metric, seed_sd, seeds, design)
        null = simulate(setting, 0.0, n, seed=2 * index)
        alt = simulate(setting, EFFECT, n, seed=2 * index + 1, truth_runs=args.truth_runs)
        worst = [min(worst[0], null["claim_rate"]), max(worst[1], null["claim_rate"]), min(worst[2], alt["coverage"])]
        assert null["arm_interval_out_of_range"] == 0 and alt["arm_interval_out_of_range"] == 0
        print(f"| {metric} | {design} | {seed_sd} | {seeds} | {null['claim_rate']:.3f} | {alt['coverage']:.3f} |")
    print(f"\nfalse-claim rate {worst[0]:.3f}-{worst[1]:.3f}, lowest coverage {worst[2]:.3f}; every arm interval "
          f"inside [0, 1]")
    raw, holm = family_error(n)
    print(f"4 identical arms vs a baseline on 3 metrics (12 comparisons, 3 seeds, seed sd 0.03): any false claim "
          f"in {raw:.3f} of experiments at 5% each, {holm:.3f} with Holm")
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
