"""`mammoseg.core.progress` against `click.progressbar`: cost per update and what a log file sees.

    PYTHONPATH=. python benchmarks/performance/progress_bars.py

On a terminal (a pseudo-terminal here, drained by a thread) and off one (/dev/null), N updates of one bar,
median of 5 repeats; then the lines each leaves in a non-terminal stream over 1,000 updates.
"""

from __future__ import annotations

import io
import logging
import os
import pty
import statistics
import sys
import threading
import time

import click

from mammoseg.core.progress import Progress

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


def main() -> None:
    master, slave = pty.openpty()
    threading.Thread(target=_drain, args=(master,), daemon=True).start()
    tty, devnull = os.fdopen(slave, "w"), open(os.devnull, "w")
    stderr = sys.stderr
    sys.stderr = tty
    ours_tty = median_ns(ours, True)
    sys.stderr = devnull
    ours_file = median_ns(ours, False)
    sys.stderr = stderr
    print(f"ns per update (median of {REPEATS} x {N}): terminal: ours {ours_tty:.0f}, click {median_ns(clicks, tty):.0f}; "
          f"not a terminal: ours {ours_file:.0f}, click {median_ns(clicks, devnull):.0f}")
    log = io.StringIO()
    logging.basicConfig(level=logging.INFO, stream=log, force=True)
    with Progress(1000, "work", "img") as bar:
        for _ in range(1000):
            bar.update()
    plain = io.StringIO()
    with click.progressbar(length=1000, label="work", file=plain) as cbar:
        for _ in range(1000):
            cbar.update(1)
    print(f"lines in a non-terminal stream over 1,000 updates: ours {len(log.getvalue().splitlines())}, "
          f"click {len(plain.getvalue().splitlines())} ({plain.getvalue()!r})")


if __name__ == "__main__":
    main()
