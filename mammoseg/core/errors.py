"""User-facing errors: the CLI prints them as one line and exits non-zero; and the input a long job
skips instead of failing on, reported with its reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class MammosegError(Exception):
    """An error caused by the user's input or environment, not by a bug."""


class InputError(MammosegError):
    """Bad input: the message always names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Pickle by its parts, so that it crosses from a worker process unchanged."""
        return (type(self), (self.path, self.problem))


@dataclass(frozen=True)
class Skip:
    """One input (a CSV row, a case, an image) left out of a job, and why; the job reports it and goes on."""

    source: str
    file: str
    reason: str
