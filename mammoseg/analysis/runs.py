"""Reading finished run folders: the evaluation outputs a report is built from.

A run folder is only usable here once `mammoseg evaluate` has written `eval/<split>/`; anything
less is a user error that names the folder and says what to run, because a report silently built
from fewer runs than asked for would misstate the evidence.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammoseg.evaluation.evaluate import SPECTRUM_GROUPS
from mammoseg.core.errors import InputError

PER_IMAGE_COLUMNS = ("example_id", "dice", "iou", "tp", "fp", "fn")
DEFAULT_TRANSPOSE_KERNEL = 4
ARM_FOLDER = re.compile(r"(.+)-seed(\d+)")


@dataclass
class Run:
    """One trained and evaluated run: the files of the run contract, parsed."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    per_image: pd.DataFrame
    history: pd.DataFrame | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    checkerboard_init: dict[str, Any] = field(default_factory=dict)
    examples: dict[str, np.ndarray] | None = None
    spectra: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # group -> (freqs, power)

    @property
    def variant(self) -> str:
        return str(self.config.get("variant", self.path.name))

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed")
        return None if seed is None else int(seed)

    @property
    def transpose_kernel(self) -> int:
        return int(self.config.get("transpose_kernel") or DEFAULT_TRANSPOSE_KERNEL)

    @property
    def design(self) -> str:
        """The upsampling design: variant, plus the transpose kernel when it is not the author's 4."""
        if self.transpose_kernel == DEFAULT_TRANSPOSE_KERNEL:
            return self.variant
        return f"{self.variant}-k{self.transpose_kernel}"

    @property
    def arm(self) -> str:
        """The arm this run is a seed of: the ablation's arm name from a `<arm>-seed<k>` folder (arms
        may differ in more than the design), otherwise the design."""
        match = ARM_FOLDER.fullmatch(self.path.name)
        return match.group(1) if match else self.design

    @property
    def image_size(self) -> int | None:
        size = self.config.get("image_size")
        return None if size is None else int(size)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from exc
    if not isinstance(data, dict):
        raise InputError(path, f"not a JSON object (a {type(data).__name__})")
    return data


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable CSV ({exc})") from exc


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable .npz archive ({exc})") from exc


def load_run(run_dir: str | Path, split: str = "test") -> Run:
    """Load a run folder and its evaluation on `split`; InputError if it is not evaluated yet."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, "no such run folder")
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise InputError(run_dir, "not a run folder (no config.json); train it with `mammoseg train` first")
    eval_dir = run_dir / "eval" / split
    if not (eval_dir / "metrics.json").is_file() or not (eval_dir / "per_image.csv").is_file():
        raise InputError(
            run_dir, f"not evaluated on the {split!r} split; run `mammoseg evaluate {run_dir} --split {split}` first"
        )
    per_image = _read_csv(eval_dir / "per_image.csv")
    missing = [c for c in PER_IMAGE_COLUMNS if c not in per_image.columns]
    if missing:
        raise InputError(eval_dir / "per_image.csv", f"missing columns {', '.join(missing)}; re-run `mammoseg evaluate`")
    per_image["example_id"] = per_image["example_id"].astype(str)
    run = Run(path=run_dir, config=read_json(config_path), metrics=read_json(eval_dir / "metrics.json"), per_image=per_image)
    if (run_dir / "history.csv").is_file():
        run.history = _read_csv(run_dir / "history.csv")
    if (run_dir / "timing.json").is_file():
        run.timing = read_json(run_dir / "timing.json")
    if (run_dir / "checkerboard_init.json").is_file():
        run.checkerboard_init = read_json(run_dir / "checkerboard_init.json")
    if (eval_dir / "examples.npz").is_file():
        run.examples = _read_npz(eval_dir / "examples.npz")
    if (eval_dir / "spectrum.npz").is_file():
        spectrum = _read_npz(eval_dir / "spectrum.npz")
        freqs = np.asarray(spectrum.get("freqs", np.zeros(0)), float)
        for group, key in SPECTRUM_GROUPS.items():
            power = np.asarray(spectrum.get(key, np.zeros(0)), float)
            if freqs.size and power.shape == freqs.shape and np.isfinite(power).any():
                run.spectra[group] = (freqs, power)
    return run


def find_experiment_runs(runs_dir: str | Path, experiment: str) -> list[Path]:
    """The run folders of an ablation: runs_dir/<experiment>/<variant>-seed<k>/ holding a config.json."""
    folder = Path(runs_dir) / experiment
    if not folder.is_dir():
        raise InputError(folder, "no such experiment folder (check --runs-dir and the experiment name)")
    runs = sorted(p for p in folder.iterdir() if (p / "config.json").is_file())
    if not runs:
        raise InputError(folder, "holds no run folders (no */config.json); run `mammoseg ablate` first")
    return runs


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """metrics.json flattened to dotted keys with numeric values, so lookups survive nesting choices."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_metrics(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def lookup(flat: dict[str, float], *candidates: str) -> float:
    """The first candidate key present (exact, then as a dotted suffix); NaN when none is."""
    for key in candidates:
        if key in flat:
            return flat[key]
    for key in candidates:
        for name, value in flat.items():
            if name.endswith("." + key):
                return value
    return math.nan
