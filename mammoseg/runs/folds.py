"""An experiment's folder of runs, and cross-validated runs: the K fold runs of one arm and seed, read as one
run that tested every image once.

An experiment keeps its runs as `<experiment>/<arm>-seed<s>/`, or, cross-validated, as
`<experiment>/fold-k/<arm>-seed<s>/`, one per fold dataset that `prepare --folds K` wrote. Fold k's run
is trained without fold k's patients and tests them, so the K runs of an arm and seed together test
every image exactly once, each by a model that never saw it.
`merge_folds` reads them as one run of that arm and seed:
- per-image rows and lesion candidates: concatenated (an image tested twice is an error), each image with
  its fold's operating threshold;
- numbers of metrics.json, timing and the checkerboard at initialisation: the mean over folds, the
  usual cross-validated estimate (a pooled measure, such as pooled Dice or the CPM, is the folds' mean,
  not recomputed over the pooled images); counts of images (`n_*`) their sum; a yes/no (the learning
  gate) holds only if it holds in every fold;
- the learning curve: the mean over folds, epoch by epoch; the examples: the first fold's.
Seeds stay the unit of replication and images the crossed unit, as for any run, so the report's per-image
analysis covers every image of the collection.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mammoseg.core.errors import InputError, MammosegError
from mammoseg.dataset.split import FOLD_FOLDER
from mammoseg.runs.rundir import Run, RunDir, operating_point_of

COUNT_PREFIX = "n_"  # metrics.json's counts of images and lesions: summed over folds, not averaged
OP_THRESHOLD = "op_threshold"
"""Merged detections' per-image array: the operating threshold of the fold model that tested the image."""


def find_experiment_runs(runs_dir: str | Path, experiment: str) -> list[Path]:
    """The run folders of an ablation holding a config.json: runs_dir/<experiment>/[fold-k/]<arm>-seed<s>/."""
    folder = Path(runs_dir) / experiment
    if not folder.is_dir():
        raise InputError(folder, "no such experiment folder (check --runs-dir and the experiment name)")
    runs = sorted(p for p in [*folder.iterdir(), *(q for f in folder.iterdir() if FOLD_FOLDER.fullmatch(f.name)
                                                   for q in f.iterdir())] if RunDir(p).exists())
    if not runs:
        raise InputError(folder, "holds no run folders (no */config.json); run `mammoseg ablate` first")
    return runs


def fold_of(run: Run) -> int | None:
    """The fold a run belongs to, from its folder (`.../fold-k/<run>`); None outside a cross-validation."""
    match = FOLD_FOLDER.fullmatch(run.path.parent.name)
    return int(match.group(1)) if match else None


def merge_folds(runs: Sequence[Run]) -> list[Run]:
    """`runs` with the fold runs of each arm and seed merged into one run (see the module docstring), in the
    order of their first fold; runs outside a cross-validation are returned as they are."""
    groups: dict[tuple[Path, str], list[Run]] = defaultdict(list)
    out: list[Run | tuple[Path, str]] = []
    for run in runs:
        if fold_of(run) is None:
            out.append(run)
            continue
        key = (run.path.parent.parent, run.path.name)
        if key not in groups:
            out.append(key)
        groups[key].append(run)
    return [item if isinstance(item, Run) else _merge(sorted(groups[item], key=fold_of)) for item in out]


def _merge(folds: list[Run]) -> Run:
    import pandas as pd  # loaded with the tables, as in rundir

    first = folds[0]
    table = pd.concat([run.per_image for run in folds], ignore_index=True)
    repeated = table["example_id"][table["example_id"].duplicated()]
    if len(repeated):
        raise MammosegError(f"{first.path.parent.parent}: image {repeated.iloc[0]} is tested by more than one fold of "
                            f"{first.path.name}; the fold datasets must each test other patients")
    history = None
    if all(run.history is not None and "epoch" in run.history.columns for run in folds):
        history = pd.concat([run.history for run in folds]).groupby("epoch", as_index=False).mean()
    return replace(
        first,
        path=first.path.parent.parent / "fold-*" / first.path.name,
        metrics=_mean_tree([run.metrics for run in folds]),
        per_image=table,
        history=history,
        timing=_mean_tree([run.timing for run in folds]),
        checkerboard_init=_mean_tree([run.checkerboard_init for run in folds]),
        detections=_concat_detections([run.detections for run in folds], [operating_threshold(r.metrics) for r in folds]),
        spectra=_mean_spectra([run.spectra for run in folds]),
    )


def _mean_tree(trees: list[Any], count: bool = False) -> Any:
    """The folds' values merged leaf by leaf: numbers averaged (NaN-aware), counts of images (`n_*` keys)
    summed, yes/no all-of, anything else the first fold's."""
    first = trees[0]
    if isinstance(first, dict):
        return {key: _mean_tree([t.get(key) for t in trees if isinstance(t, dict)], key.startswith(COUNT_PREFIX))
                for key in first}
    if isinstance(first, bool):
        return all(bool(t) for t in trees)
    if isinstance(first, (int, float)) and all(isinstance(t, (int, float)) and not isinstance(t, bool)
                                                for t in trees if t is not None):
        values = [float(t) for t in trees if t is not None]
        finite = [v for v in values if not math.isnan(v)]
        if count:
            return int(sum(finite))
        return float(np.mean(finite)) if finite else math.nan
    return first


def operating_threshold(metrics: dict[str, Any]) -> float:
    """The margin threshold of a run's operating point (NaN where it has none)."""
    value = operating_point_of(metrics).get("threshold")
    return float(value) if isinstance(value, (int, float)) else math.nan


def _concat_detections(parts: list[dict[str, np.ndarray] | None], thresholds: list[float]) -> dict[str, np.ndarray] | None:
    """Every fold's lesion candidates as one set, image indices shifted past the folds before; each image
    keeps the operating threshold of the fold model that tested it (`OP_THRESHOLD`), as the merged run's
    own threshold is only the folds' mean."""
    if any(part is None for part in parts):
        return None
    out: dict[str, list[np.ndarray]] = defaultdict(list)
    offset = 0
    for part, threshold in zip(parts, thresholds):
        for key, values in part.items():
            out[key].append(np.asarray(values) + offset if key == "image" else np.asarray(values))
        out[OP_THRESHOLD].append(np.full(len(part["n_lesions"]), threshold))
        offset += len(part["n_lesions"])
    return {key: np.concatenate(values) for key, values in out.items()}


def _mean_spectra(parts: list[dict[str, tuple[np.ndarray, np.ndarray]]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The mean power spectrum per group over the folds that have it on the same frequencies."""
    merged = {}
    for group, (freqs, _) in parts[0].items():
        powers = [p[group][1] for p in parts if group in p and np.array_equal(p[group][0], freqs)]
        merged[group] = (freqs, np.mean(powers, axis=0))
    return merged
