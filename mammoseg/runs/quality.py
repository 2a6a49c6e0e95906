"""Time to quality of a run: how many epochs and training seconds its history took to reach a declared
validation loss (`metrics.speed.time_to_quality` on the run folder's history.csv)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mammoseg.core.errors import InputError
from mammoseg.metrics.speed import HISTORY_COLUMNS, WITHIN_BEST, TimeToQuality, time_to_quality
from mammoseg.runs.rundir import RunDir

if TYPE_CHECKING:
    import pandas as pd


def history_time_to_quality(history: pd.DataFrame | list[dict[str, Any]], source: str | Path,
                            level: float | None = None, within: float = WITHIN_BEST) -> TimeToQuality:
    """Time to quality of a history (`Run.history`, or `RunDir.read_history()`'s rows); errors name `source`."""
    rows = history.to_dict("records") if hasattr(history, "to_dict") else list(history)
    if not rows:
        raise InputError(source, "no epochs recorded: time to quality needs at least one")
    missing = [c for c in HISTORY_COLUMNS if c not in rows[0]]
    if missing:
        raise InputError(source, f"missing columns {', '.join(missing)}")
    try:
        columns = {c: [r[c] for r in rows] for c in HISTORY_COLUMNS}
        return time_to_quality(columns["epoch"], columns["val_loss"], columns["train_seconds"], level, within)
    except (TypeError, ValueError) as exc:
        raise InputError(source, f"cannot measure time to quality ({exc})") from None


def run_time_to_quality(run_dir: str | Path, level: float | None = None, within: float = WITHIN_BEST) -> TimeToQuality:
    """Time to quality of the run in `run_dir`, read from its history.csv."""
    run = RunDir(run_dir)
    return history_time_to_quality(run.read_history(), run.path / "history.csv", level, within)
