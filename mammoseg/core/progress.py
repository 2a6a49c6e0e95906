"""A dependency-free progress bar on stderr, silenced by `--quiet` or a non-terminal at INFO level."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
logger = logging.getLogger("mammoseg")


class Progress:
    """Counts finished units of work and redraws at most ~5 times a second.

    On a terminal it draws a bar; otherwise it logs a line every 10% so that CI logs and files
    still show that long work is moving.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "it") -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.done = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1
        self.enabled = logger.getEffectiveLevel() <= logging.INFO
        self.tty = self.enabled and sys.stderr.isatty()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.tty and (now - self._last_draw > 0.2 or self.done == self.total):
            self._last_draw = now
            sys.stderr.write("\r" + self._line())
            sys.stderr.flush()
        elif self.enabled and not self.tty and self.total:
            decile = int(10 * self.done / self.total)
            if decile != self._last_decile:
                self._last_decile = decile
                logger.info(self._line())

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + self._line() + "\n")
            sys.stderr.flush()

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            frac = self.done / self.total
            bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            return f"{self.desc} [{bar}] {self.done}/{self.total} {rate:.1f} {self.unit}/s eta {eta:.0f}s"
        return f"{self.desc} {self.done} {self.unit} {rate:.1f} {self.unit}/s"

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Iterate over `items`, showing progress."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit) as bar:
        for item in items:
            yield item
            bar.update()
