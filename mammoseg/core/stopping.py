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

_requested: list[int] = []  # the stop signals received while caught, in order


def stop_requested() -> str | None:
    """The name of the first stop signal received while caught (e.g. "SIGUSR1"), or None."""
    return signal.Signals(_requested[0]).name if _requested else None


def ignore_stop_signals() -> None:
    """For a process that saved and is about to exit: a second stop signal (`scancel --batch` sends one to
    the batch shell and to its children alike, and the shell passes its own on) must not kill it, which
    would replace its exit status by the signal's."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def stop_signals_caught() -> Iterator[None]:
    """Record SIGUSR1 and SIGTERM instead of dying from them, for the duration; a request recorded before,
    under an outer catch, is kept. Outside the main thread (where Python cannot install handlers) it does
    nothing and the signals keep their default."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {sig: signal.signal(sig, _record) for sig in STOP_SIGNALS}
    if all(handler is not _record for handler in previous.values()):
        _requested.clear()  # nobody was catching: an old request (of an earlier run in this process) is over
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _record(signum: int, _frame: Any) -> None:
    _requested.append(signum)
