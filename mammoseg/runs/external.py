"""Evaluations on another prepared dataset than the one a run was trained on (external validation):
the name of their folder under RUN/eval/ (`eval_name`, which `rundir` uses), how they are described
to people, and whether a dataset folder is the run's own or another one (`external_name`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mammoseg.core.errors import InputError

EXTERNAL_MARK = "@"
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""An external dataset's name, as its evaluation folder carries it: letters, digits, `.`, `_`, `-`."""


def eval_name(split: str, dataset: str | None = None) -> str:
    """The folder under RUN/eval/ of one evaluation: `<split>` on the dataset the run was trained on,
    `<split>@<dataset>` on another prepared dataset named `dataset`."""
    if dataset is None:
        return split
    if not DATASET_NAME.fullmatch(dataset):
        raise InputError(dataset, "a dataset name may hold only letters, digits, '.', '_' and '-' (give --data-name)")
    return f"{split}{EXTERNAL_MARK}{dataset}"


def describe(split: str, dataset: str | None = None) -> str:
    """An evaluation in words, external ones said to be so (reports, messages)."""
    return f"the {split!r} split" + (f" of the external dataset {dataset!r}" if dataset else "")


def split_label(split: str, dataset: str | None = None) -> str:
    """The split as a report names it, external ones said to be so."""
    return split if dataset is None else f"{split} of the external dataset {dataset!r} (external validation)"


def evaluate_hint(run: Path, split: str, dataset: str | None = None) -> str:
    """The command that writes that evaluation."""
    return f"mammoseg evaluate {run} --split {split}" + (f" --data DATASET --data-name {dataset}" if dataset else "")


def external_name(config: dict[str, Any], data: Path, name: str | None = None) -> str | None:
    """None when `data` is the run's own dataset: the folder it recorded, or, that folder gone, a
    moved copy with the recorded image size and counts; else the external dataset's name (`name`,
    by default the folder's). A `name` always makes the evaluation external."""
    if name is not None:
        return name
    recorded = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}
    path = recorded.get("path")
    if not isinstance(path, str) or Path(path).resolve() == data.resolve():
        return None
    if not (Path(path) / "dataset.json").is_file() and _same_contents(recorded, data):
        return None
    return data.resolve().name


def _same_contents(recorded: dict[str, Any], data: Path) -> bool:
    """Whether `data`'s dataset.json has the image size and example counts the run recorded."""
    try:
        info = json.loads((data / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("image_size") == recorded.get("image_size") and info.get("counts") == recorded.get("counts")
