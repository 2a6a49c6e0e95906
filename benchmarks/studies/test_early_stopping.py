"""The replay of early stopping over recorded histories (early_stopping.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import early_stopping as replay


def test_early_stopping_replay_stops_where_the_rule_says_and_keeps_the_best_seen(tmp_path):
    losses = [1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.72, 0.71, 0.69]
    assert replay.stop_epoch(losses, 2) == 4 and replay.stop_epoch(losses, 3) == 8 and replay.stop_epoch(losses, 4) == 9
    assert replay.best_epoch(losses) == 9 and replay.best_epoch(losses[:8]) == 5
    for run, values in (("a-seed0", losses), ("b-seed0", [1.0, 0.9, 0.8])):
        (tmp_path / run).mkdir()
        pd.DataFrame({"epoch": range(1, len(values) + 1), "val_loss": values}).to_csv(tmp_path / run / "history.csv")
    table = replay.replay(tmp_path, [2]).set_index("run")
    assert table.loc["a-seed0", "stopped"] == 4 and not table.loc["a-seed0", "same_checkpoint"]
    assert table.loc["b-seed0", "saved"] == 0 and table.loc["b-seed0", "same_checkpoint"]
