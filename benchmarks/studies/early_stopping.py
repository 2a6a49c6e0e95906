"""Would early stopping on the validation loss have saved time without changing the answer?

Replays each run's recorded history (history.csv) under "stop after P epochs without a new lowest
validation loss" and reports, per run, where training would have stopped, the epochs saved, and
whether the checkpoint evaluated ("best": the epoch of the lowest validation loss) would have been
the same one. Nothing is retrained: the answer rests only on the histories the study wrote.

    python benchmarks/studies/early_stopping.py experiments/runs/study --patience 2 3 4
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the record every benchmark writes
from record import write_record  # noqa: E402


def stop_epoch(val_loss: list[float], patience: int) -> int:
    """The number of epochs trained when the rule stops (all of them when it never does)."""
    best, since = math.inf, 0
    for epoch, loss in enumerate(val_loss, start=1):
        if loss < best:
            best, since = loss, 0
        else:
            since += 1
            if since >= patience:
                return epoch
    return len(val_loss)


def best_epoch(val_loss: list[float]) -> int:
    return min(range(len(val_loss)), key=val_loss.__getitem__) + 1


def replay(folder: Path, patiences: list[int]) -> pd.DataFrame:
    rows = []
    for history in sorted(folder.glob("*/history.csv")):
        losses = pd.read_csv(history)["val_loss"].astype(float).tolist()
        best = best_epoch(losses)
        for patience in patiences:
            stopped = stop_epoch(losses, patience)
            kept = best_epoch(losses[:stopped])
            rows.append({"run": history.parent.name, "patience": patience, "epochs": len(losses), "best": best,
                         "stopped": stopped, "saved": len(losses) - stopped, "same_checkpoint": kept == best})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="an experiment's runs folder (<runs_dir>/<experiment>)")
    parser.add_argument("--patience", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--json", type=Path, help="write the figures here (benchmarks/record.py)")
    args = parser.parse_args()
    table = replay(args.folder, args.patience)
    if table.empty:
        raise SystemExit(f"{args.folder}: no run with a history.csv")
    print(table.to_string(index=False))
    summary = table.groupby("patience").agg(runs=("run", "size"), epochs_saved=("saved", "sum"),
                                            epochs=("epochs", "sum"), same_checkpoint=("same_checkpoint", "sum"))
    summary["share_saved"] = (summary["epochs_saved"] / summary["epochs"]).round(3)
    print()
    print(summary.to_string())
    write_record(args.json, {"folder": str(args.folder), "runs": table.to_dict("records"),
                             "by_patience": summary.reset_index().to_dict("records")})


if __name__ == "__main__":
    main()
