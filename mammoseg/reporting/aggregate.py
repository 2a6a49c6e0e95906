"""Runs grouped into arms, and the numbers a comparison rests on.

Runs are grouped into arms (variant + transpose kernel); seeds are repeated runs of an arm. Every
number is the mean ± sd over seeds with a 95% Student-t interval over the runs. Two arms are compared
by `compare_arms`: per image with seeds and images crossed where the metric is a mean over images
(`stats.crossed_difference`), else one number per run; runs pair by seed where both arms have the same
seeds (seed k gives every arm the same data order). A run that did not learn (evaluate's learning
gate) is shown but left out of every comparison. Differences against the baseline on the experiment's
primary metrics are the report's confirmatory family (Holm's correction over all of them and every
arm) unless the article's claims are (`exploratory_only`); every other metric is exploratory. With
one seed per arm the seed variation is unknown and nothing about designs is claimed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mammoseg.evaluation.evaluate import GATE_KEY
from mammoseg.core.conventions import predicted_positive
from mammoseg.models.registry import variant_names
from mammoseg.runs.rundir import Run
from mammoseg.metrics.stats import (CONFIDENCE, NAN_INTERVAL, Interval, crossed_difference, difference, holm,
                                     nanmean_ci, paired, pooled_ci, seed_interval)
from mammoseg.core.errors import MammosegError
from mammoseg.metrics.declaration import NORMAL_KIND, image_metric_value, in_subset
from mammoseg.reporting.registry import DEFAULT_PRIMARY, METRIC_BY_KEY, Metric, compared_keys, metrics, run_value

DEFAULT_BASELINE = "dilated_resize"
ALPHA = 1.0 - CONFIDENCE


def _predicted_positive(table: pd.DataFrame, image_size: int | None) -> np.ndarray:
    """The article's image-level call: more than S²/750 pixels above 0.5 (from evaluation when it says)."""
    if "predicted_positive" in table.columns:
        return table["predicted_positive"].to_numpy(float)
    if image_size is None:
        return np.full(len(table), np.nan)
    return predicted_positive((table["tp"] + table["fp"]).to_numpy(), image_size, image_size).astype(float)


def run_learned(run: Run) -> bool | None:
    """The run's learning gate from its evaluation (None for an evaluation written before the gate)."""
    gate = run.metrics.get(GATE_KEY)
    return bool(gate["learned"]) if isinstance(gate, dict) and "learned" in gate else None


@dataclass
class Cell:
    """One arm's value of one metric: seed mean ± sd, the value of each run, and the interval shown:
    over seeds ("seeds"), over one run's test images ("images": descriptive only) or none ("exact")."""

    mean: float
    sd: float
    interval: Interval
    per_run: np.ndarray
    over: str

    @property
    def seed_interval(self) -> Interval:
        """The interval a comparison may rest on: never one over a single run's images."""
        return self.interval if self.over in ("seeds", "exact") else Interval(self.interval.estimate, math.nan, math.nan)


@dataclass
class Arm:
    """The runs (seeds) of one design, with every metric's cell and its differences from the baseline."""

    name: str
    runs: list[Run]
    ids: list[str] = field(default_factory=list)
    table: dict[str, np.ndarray] = field(default_factory=dict)  # per-image column -> [runs counted, images]
    cells: dict[str, Cell] = field(default_factory=dict)
    paired: dict[str, Interval] = field(default_factory=dict)  # arm − baseline, per metric
    adjusted: dict[str, float] = field(default_factory=dict)  # Holm-adjusted p of each primary difference

    @property
    def variant(self) -> str:
        return self.runs[0].variant

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    @property
    def failed(self) -> list[Run]:
        """Runs the learning gate rejected."""
        return [r for r in self.runs if run_learned(r) is False]

    @property
    def learned(self) -> bool:
        return len(self.failed) < len(self.runs)

    @property
    def counted(self) -> list[Run]:
        """The runs its numbers come from: those that learned, or all of them when none did (shown, never compared)."""
        return [r for r in self.runs if run_learned(r) is not False] or self.runs


def _image_matrices(runs: list[Run]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Per-image columns as [runs, images] arrays over the union of example ids (NaN where a run lacks an image)."""
    frames = []
    for run in runs:
        frame = run.per_image.drop_duplicates("example_id").set_index("example_id")
        frame["predicted_positive"] = _predicted_positive(frame, run.image_size)
        frame["normal"] = (frame["kind"] == NORMAL_KIND).astype(float) if "kind" in frame.columns else 0.0
        frames.append(frame)
    ids = sorted(set().union(*(f.index for f in frames)))
    columns = set.intersection(*(set(c for c in f.columns if pd.api.types.is_numeric_dtype(f[c])) for f in frames))
    return ids, {c: np.stack([f[c].reindex(ids).to_numpy(float) for f in frames]) for c in sorted(columns)}


def subset_mask(table: dict[str, np.ndarray], subset: str) -> np.ndarray:
    """Images of a subset (`declaration.in_subset`) over the union of the runs' images."""
    empty = np.all(np.nan_to_num(table["tp"] + table["fn"]) <= 0, axis=0)
    normal = np.any(np.nan_to_num(table["normal"]) > 0, axis=0) if "normal" in table else np.zeros_like(empty)
    return np.asarray(in_subset(subset, ~empty, normal))


def _per_run_image_values(metric: Metric, table: dict[str, np.ndarray], keep: np.ndarray | None = None) -> np.ndarray:
    """An image metric of each run (rows of the [runs, images] columns), on the metric's subset of the images
    selected by `keep`."""
    n_runs = next(iter(table.values())).shape[0]
    if not set(metric.reads) <= set(table):
        return np.full(n_runs, np.nan)
    mask = subset_mask(table, metric.subset) & (True if keep is None else keep)
    if not mask.any():
        return np.full(n_runs, np.nan)
    return np.array([image_metric_value(metric, {c: table[c][r] for c in metric.reads}, mask) for r in range(n_runs)])


def _one_run_image_interval(metric: Metric, table: dict[str, np.ndarray]) -> Interval:
    """A single run's image metric with its bootstrap interval over its test images (descriptive)."""
    if not set(metric.reads) <= set(table):
        return NAN_INTERVAL
    keep = subset_mask(table, metric.subset)
    cols = [table[c][0, keep] for c in metric.reads]
    if cols[0].size == 0:
        return NAN_INTERVAL
    if metric.pooled:
        return pooled_ci(*cols, metric.pooled)
    return nanmean_ci(cols[0])


def _sd(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.size >= 2 else math.nan


def _arm_cells(arm: Arm) -> None:
    runs = arm.counted
    arm.ids, arm.table = _image_matrices(runs)
    for metric in metrics():
        if metric.source == "image":
            per_run = _per_run_image_values(metric, arm.table)
        else:
            per_run = np.array([run_value(metric, run) for run in runs])
        finite = per_run[np.isfinite(per_run)]
        mean = float(finite.mean()) if finite.size else math.nan
        if metric.source == "exact":
            interval, over = Interval(mean, mean, mean), "exact"
        elif metric.source == "image" and len(runs) == 1:
            interval, over = _one_run_image_interval(metric, arm.table), "images"
        else:
            interval, over = seed_interval(per_run, metric.bounds), "seeds"
        arm.cells[metric.key] = Cell(mean, _sd(per_run), interval, per_run, over)


def _image_table(arm: Arm, metric: Metric, ids: list[str]) -> np.ndarray:
    """The metric's per-image column of the arm's runs [runs, images] on `ids`, NaN off the metric's subset."""
    position = {example: index for index, example in enumerate(arm.ids)}
    columns = [position[i] for i in ids]
    values = arm.table[metric.reads[0]][:, columns]
    return np.where(subset_mask(arm.table, metric.subset)[columns], values, np.nan)


def images_in_subset(arms: Sequence[Arm], metric: Metric) -> list[str]:
    """The images any of the arms was evaluated on that lie in the metric's subset."""
    ids: set[str] = set()
    for arm in arms:
        if arm.ids:
            ids |= {i for i, keep in zip(arm.ids, subset_mask(arm.table, metric.subset)) if keep}
    return sorted(ids)


def on_images(arm: Arm, metric: Metric, within: Collection[str]) -> Interval:
    """An image metric of the arm on the images `within` (a stratum): mean over its runs with the interval over
    seeds, or over the images where it has one run (as its results cell)."""
    wanted = set(within)
    keep = np.array([i in wanted for i in arm.ids], dtype=bool)
    if len(arm.counted) == 1:
        return _one_run_image_interval(metric, {c: v[:, keep] for c, v in arm.table.items()})
    return seed_interval(_per_run_image_values(metric, arm.table, keep), metric.bounds)


def image_differences(arm: Arm, other: Arm, metric: Metric, within: Collection[str]) -> np.ndarray:
    """Per image of `within` that both arms were evaluated on: arm's mean over runs − other's (NaN off the
    metric's subset)."""
    ids = sorted(set(arm.ids) & set(other.ids) & set(within))
    if not ids:
        return np.array([])
    with warnings.catch_warnings():  # an image off the subset is NaN in every run: its difference stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(_image_table(arm, metric, ids), axis=0) - np.nanmean(_image_table(other, metric, ids), axis=0)


def shared_seeds(arm: Arm, other: Arm) -> bool:
    """Whether the arms' counted runs have the same seeds: seed k gives every arm the same data order,
    so their runs pair by seed."""
    seeds = [r.seed for r in arm.counted]
    return None not in seeds and len(set(seeds)) == len(seeds) and sorted(seeds) == sorted(r.seed for r in other.counted)


def compare_arms(arm: Arm, other: Arm, metric: Metric, within: Collection[str] | None = None) -> Interval:
    """arm − other on `metric`: a mean over images is compared per image on the images both were evaluated
    on (and, for such a metric, among `within` when given: a stratum), seeds and images crossed; any other metric by one number
    per run; paired by seed where the arms share their seeds. NaN when either arm did not learn."""
    if not (arm.learned and other.learned):
        return NAN_INTERVAL
    pair = shared_seeds(arm, other)
    if metric.source == "image" and not metric.pooled and set(metric.reads) <= set(arm.table) & set(other.table):
        ids = sorted(set(arm.ids) & set(other.ids) & (set(arm.ids) if within is None else set(within)))
        tables = [_image_table(a, metric, ids) for a in (arm, other)]
        if pair:
            order = [np.argsort([r.seed for r in a.counted]) for a in (arm, other)]
            tables = [t[o] for t, o in zip(tables, order)]
        return crossed_difference(*tables, metric.bounds, paired_seeds=pair)
    if metric.source == "image":
        common = set(arm.ids) & set(other.ids)
        values = [_per_run_image_values(metric, a.table, np.array([i in common for i in a.ids], dtype=bool))
                  for a in (arm, other)]
    else:
        values = [a.cells[metric.key].per_run for a in (arm, other)]
    if pair:
        by_seed = [dict(zip((r.seed for r in a.counted), v)) for a, v in zip((arm, other), values)]
        return paired([by_seed[0][s] - by_seed[1][s] for s in by_seed[0]], metric.bounds)
    return difference(*values, metric.bounds)


def _paired(arm: Arm, baseline: Arm, keys: Sequence[str]) -> None:
    """Differences arm − baseline, image metrics on the images both were evaluated on."""
    for key in keys:
        arm.paired[key] = compare_arms(arm, baseline, METRIC_BY_KEY[key])


def _group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs by arm; an arm name shared by runs of different designs is split by design, so seeds
    of different networks are never pooled."""
    by_name: dict[str, list[Run]] = {}
    for run in runs:
        by_name.setdefault(run.arm, []).append(run)
    grouped: dict[str, list[Run]] = {}
    for name, members in by_name.items():
        designs = {r.design for r in members}
        for run in members:
            grouped.setdefault(name if len(designs) == 1 else f"{name} ({run.design})", []).append(run)
    return grouped


def _arm_sort_key(arm: Arm) -> tuple[int, int, str]:
    """The registry's order of variants (the article's first), then transpose kernel, then name."""
    run = arm.runs[0]
    names = variant_names()
    order = names.index(run.variant) if run.variant in names else len(names)
    return (order, run.transpose_kernel, arm.name)


def build_arms(runs: list[Run], baseline: str | None,
               primary: Sequence[str] = DEFAULT_PRIMARY) -> tuple[list[Arm], Arm | None]:
    """Group runs into arms, compute every cell, the differences against the baseline, and Holm's adjusted
    p-values over the family of primary differences (every primary metric of every compared arm)."""
    arms = sorted((Arm(name, sorted(members, key=lambda r: (r.seed is None, r.seed or 0)))
                   for name, members in _group_runs(runs).items()), key=_arm_sort_key)
    for arm in arms:
        _arm_cells(arm)
    base = _pick_baseline(arms, baseline)
    if base is not None:
        family = [(arm, key) for arm in arms if arm is not base for key in primary]
        for arm in arms:
            if arm is not base:
                _paired(arm, base, compared_keys(primary))
        for (arm, key), p in zip(family, holm([arm.paired[key].p_value for arm, key in family])):
            arm.adjusted[key] = p
    return arms, base


def _pick_baseline(arms: list[Arm], baseline: str | None) -> Arm | None:
    """The arm named `baseline`, else the only arm of that variant; by default dilated_resize if present."""
    wanted = baseline or DEFAULT_BASELINE
    named = [a for a in arms if a.name == wanted] or [a for a in arms if a.variant == wanted]
    if len(named) == 1:
        return named[0]
    if baseline is None:
        return None
    if len(named) > 1:
        raise MammosegError(f"baseline {baseline!r} matches several arms ({', '.join(a.name for a in named)}); "
                            "give the arm name")
    raise MammosegError(f"baseline {baseline!r} is not among the compared arms: {', '.join(a.name for a in arms)}")


def exploratory_only(arms: Sequence[Arm]) -> None:
    """Leave the differences against the baseline out of the confirmatory family (the article's claims
    are the report's one family): no Holm-adjusted p-values, so nothing is claimed on them."""
    for arm in arms:
        arm.adjusted.clear()


def claimed(arm: Arm, key: str) -> bool:
    """Whether the arm's difference from the baseline on `key` is a claim: Holm-adjusted p below ALPHA."""
    return arm.adjusted.get(key, math.nan) < ALPHA
