"""Render the tables of benchmarks/RESULTS.md from the benchmarks' JSON records (benchmarks/results/).

Every table of RESULTS.md sits between `<!-- results:ID -->` and `<!-- /results -->`; this script
replaces what is between them with the table `ID` of the record that holds it (record.py's schema),
so no figure is copied by hand. The prose around the tables stays hand-written.

    python benchmarks/render_results.py           # rewrite RESULTS.md
    python benchmarks/render_results.py --check   # exit 1 when RESULTS.md differs from the records
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
RECORDS = HERE / "results"
BLOCK = re.compile(r"<!-- results:(?P<id>[\w.-]+) -->\n(?P<body>.*?)<!-- /results -->", re.S)
MAX_RECORD_BYTES = 1_000_000
SCHEMA = ("command", "machine", "date", "source", "figures", "tables")


class RecordError(ValueError):
    """A record that does not follow the schema, or a table that no record or no block holds."""


def load_tables(folder: Path = RECORDS) -> dict[str, tuple[str, dict[str, Any]]]:
    """Table id -> (record file name, table) over every record in `folder`; an id held twice is an error."""
    tables: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.json")):
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise RecordError(f"{path}: over {MAX_RECORD_BYTES} bytes; keep records small")
        record = json.loads(path.read_text(encoding="utf-8"))
        missing = [key for key in SCHEMA if key not in record]
        if missing:
            raise RecordError(f"{path}: missing {', '.join(missing)}")
        for table_id, table in record["tables"].items():
            if table_id in tables:
                raise RecordError(f"{path}: table {table_id} is also in {tables[table_id][0]}")
            tables[table_id] = (path.name, table)
    return tables


def markdown_table(table: dict[str, Any]) -> str:
    def line(cells: list[Any]) -> str:
        return "|" + "|".join(f" {c} " if c not in (None, "") else " " for c in cells) + "|"

    columns = table["columns"]
    return "\n".join([line(columns), "|" + "---|" * len(columns), *(line(row) for row in table["rows"])]) + "\n"


def render(text: str, tables: dict[str, tuple[str, dict[str, Any]]]) -> str:
    """`text` with every results block refilled; a block without a table, or a table without a block, is an error."""
    used: set[str] = set()

    def fill(match: re.Match) -> str:
        table_id = match["id"]
        if table_id not in tables:
            raise RecordError(f"{RESULTS_MD.name}: no record holds table {table_id}")
        used.add(table_id)
        return f"<!-- results:{table_id} -->\n{markdown_table(tables[table_id][1])}<!-- /results -->"

    rendered = BLOCK.sub(fill, text)
    unused = sorted(set(tables) - used)
    if unused:
        raise RecordError(f"{RESULTS_MD.name}: no block for table(s) {', '.join(unused)}")
    return rendered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when RESULTS.md is stale")
    args = parser.parse_args()
    try:
        text = RESULTS_MD.read_text(encoding="utf-8")
        rendered = render(text, load_tables())
    except (RecordError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if rendered != text:
            print(f"{RESULTS_MD} is stale: run python benchmarks/render_results.py", file=sys.stderr)
            return 1
        return 0
    RESULTS_MD.write_text(rendered, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
