"""`mammoseg.core.progress` against `click.progressbar`: cost per update and what a log file sees.

    PYTHONPATH=. python benchmarks/performance/progress_bars.py --json benchmarks/results/progress-bars.json

On a terminal (a pseudo-terminal here, drained by a thread) and off one (/dev/null), N updates of one bar,
median of 5 repeats; then the lines each leaves in a non-terminal stream over 1,000 updates.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import logging
import os
import pty
import statistics
import sys
import threading
import time

from pathlib import Path

import click

from mammoseg.core.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the record every benchmark writes
from record import table, write_record  # noqa: E402

N = 50_000
REPEATS = 5


def ours(tty: bool) -> float:
    logging.basicConfig(level=logging.INFO, stream=io.StringIO(), force=True)
    bar = Progress(N, "work", "img")
    bar.tty = tty and bar.enabled
    t0 = time.perf_counter()
    for _ in range(N):
        bar.update()
    return time.perf_counter() - t0


def clicks(stream: object) -> float:
    t0 = time.perf_counter()
    with click.progressbar(length=N, label="work", file=stream) as bar:
        for _ in range(N):
            bar.update(1)
    return time.perf_counter() - t0


def median_ns(fn, *args) -> float:
    return statistics.median(fn(*args) for _ in range(REPEATS)) / N * 1e9


def _drain(fd: int) -> None:
    """Read the pseudo-terminal's output as a terminal would, so that writes never block."""
    try:
        while os.read(fd, 65536):
            pass
    except OSError:  # closed at exit
        pass


def lines_off_a_terminal() -> tuple[int, int, str]:
    """Lines ours and click's bar leave in a non-terminal stream over 1,000 updates, and click's text."""
    log = io.StringIO()
    logging.basicConfig(level=logging.INFO, stream=log, force=True)
    with Progress(1000, "work", "img") as bar:
        for _ in range(1000):
            bar.update()
    plain = io.StringIO()
    with click.progressbar(length=1000, label="work", file=plain) as cbar:
        for _ in range(1000):
            cbar.update(1)
    return len(log.getvalue().splitlines()), len(plain.getvalue().splitlines()), plain.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures and the RESULTS table here")
    args = parser.parse_args()
    master, slave = pty.openpty()
    threading.Thread(target=_drain, args=(master,), daemon=True).start()
    tty, devnull = os.fdopen(slave, "w"), open(os.devnull, "w")
    stderr = sys.stderr
    sys.stderr = tty
    ns = {"ours_terminal": median_ns(ours, True)}
    sys.stderr = devnull
    ns["ours_off_terminal"] = median_ns(ours, False)
    sys.stderr = stderr
    ns["click_terminal"], ns["click_off_terminal"] = median_ns(clicks, tty), median_ns(clicks, devnull)
    print(f"ns per update (median of {REPEATS} x {N}): terminal: ours {ns['ours_terminal']:.0f}, click "
          f"{ns['click_terminal']:.0f}; not a terminal: ours {ns['ours_off_terminal']:.0f}, click {ns['click_off_terminal']:.0f}")
    ours_lines, click_lines, click_text = lines_off_a_terminal()
    print(f"lines in a non-terminal stream over 1,000 updates: ours {ours_lines}, click {click_lines} ({click_text!r})")
    rows = [["ours", f"{ns['ours_terminal']:,.0f}", f"{ns['ours_off_terminal']:,.0f}", f"{ours_lines}"],
            ["`click.progressbar`", f"{ns['click_terminal']:,.0f}", f"{ns['click_off_terminal']:,.0f}", f"{click_lines}"]]
    columns = ["", f"ns per update on a terminal (median of {REPEATS})", "ns per update off one",
               "lines a log file gets over 1,000 updates"]
    write_record(args.json, {"ns_per_update": ns, "updates": N, "repeats": REPEATS, "click": importlib.metadata.version("click"),
                             "log_lines": {"ours": ours_lines, "click": click_lines}},
                 {"progress-bars": table(columns, rows)})


if __name__ == "__main__":
    main()
