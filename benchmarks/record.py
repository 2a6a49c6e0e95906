"""The one schema every benchmark writes with `--json PATH`, read back by render_results.py.

    {"command": "python benchmarks/... --flags", "machine": {...}, "date": "2026-12-07 19:05 UTC",
     "source": "measured" | "transcribed from the run of <date>",
     "figures": {...whatever the benchmark measured...},
     "tables": {"<table id>": {"columns": [...], "rows": [[...], ...]}}}

A table id names the `<!-- results:ID -->` block of RESULTS.md it fills. Standard library only: the
PyTorch twins run in environments without mammoseg's dependencies.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

Table = dict[str, list[Any]]


def machine() -> dict[str, Any]:
    """What a figure depends on beyond the code: CPU, cores this process may use, load, Python."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cores": cores, "load_average": load, "python": platform.python_version()}


def table(columns: list[str], rows: list[list[Any]]) -> Table:
    """A table of RESULTS.md: cells are written as given (format numbers before)."""
    if any(len(row) != len(columns) for row in rows):
        raise ValueError(f"every row needs {len(columns)} cells ({columns})")
    return {"columns": list(columns), "rows": [list(row) for row in rows]}


def record(figures: dict[str, Any], tables: dict[str, Table] | None = None) -> dict[str, Any]:
    """A measurement made now by this process's command line."""
    command = "python " + shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return {"command": command, "machine": machine(), "date": date, "source": "measured",
            "figures": figures, "tables": tables or {}}


def write_record(path: str | Path | None, figures: dict[str, Any], tables: dict[str, Table] | None = None) -> None:
    """Write `record(...)` to `path` atomically (nothing when `path` is None)."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record(figures, tables), f, indent=1)
        f.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a shared results folder from other readers
    os.replace(tmp, path)
