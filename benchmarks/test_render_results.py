"""RESULTS.md's tables are the records' tables: rendering changes nothing, and mismatches are errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import render_results
from record import record, table


def test_results_md_is_rendered_from_the_records() -> None:
    text = render_results.RESULTS_MD.read_text(encoding="utf-8")
    assert render_results.render(text, render_results.load_tables()) == text, "run python benchmarks/render_results.py"


def test_blocks_and_tables_must_match(tmp_path: Path) -> None:
    rec = record({"x": 1}, {"t1": table(["a", "b"], [[1, "**2**"], ["", None]])})
    assert set(rec) == set(render_results.SCHEMA) and rec["source"] == "measured"
    (tmp_path / "one.json").write_text(json.dumps(rec))
    tables = render_results.load_tables(tmp_path)
    text = "before\n<!-- results:t1 -->\nstale\n<!-- /results -->\nafter\n"
    assert render_results.render(text, tables) == (
        "before\n<!-- results:t1 -->\n| a | b |\n|---|---|\n| 1 | **2** |\n| | |\n<!-- /results -->\nafter\n")
    with pytest.raises(render_results.RecordError, match="no record holds table t2"):
        render_results.render(text.replace("t1", "t2"), tables)
    with pytest.raises(render_results.RecordError, match="no block for table"):
        render_results.render("no blocks\n", tables)
    (tmp_path / "two.json").write_text(json.dumps(rec))
    with pytest.raises(render_results.RecordError, match="also in one.json"):
        render_results.load_tables(tmp_path)
    with pytest.raises(ValueError, match="every row needs 2 cells"):
        table(["a", "b"], [[1]])
