"""A scheduler's request to stop: SIGUSR1 (Slurm's warning before a time limit, `--signal`) or SIGTERM
(preemption, `scontrol requeue`, a Kubernetes pod's eviction), turned into a flag that long work polls
at points where stopping loses nothing, instead of the default of dying wherever the signal lands."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)

_requested: list[int] = []  # the signals received while caught, in order
_depth = 0  # nesting of `stop_signals_caught` (a task around its training): only the outermost installs


def stop_requested() -> str | None:
    """The name of the first stop signal received while caught (e.g. "SIGUSR1"), or None."""
    return signal.Signals(_requested[0]).name if _requested else None


@contextlib.contextmanager
def stop_signals_caught() -> Iterator[None]:
    """Record SIGUSR1 and SIGTERM instead of dying from them, for the duration; re-entrant. Outside the
    main thread (where Python cannot install handlers) it does nothing and the signals keep their default."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}
    if _depth == 0:
        _requested.clear()
        previous = {sig: signal.signal(sig, _record) for sig in STOP_SIGNALS}
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _record(signum: int, _frame: Any) -> None:
    _requested.append(signum)
