"""Run folders: where a run writes, the lock that keeps two processes out of one folder, and its state.

Layout (all files written atomically)::

    RUN/config.json  state.json  history.csv  timing.json  checkerboard_init.json
    RUN/last.keras   best.keras  tb/  previews/epoch_NNN/  eval/<split>/
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mammoseg.core.atomic import atomic_path, write_error, write_json, write_text
from mammoseg.core.errors import InputError, MammosegError

LOCK_NAME = ".lock"
_HELD: set[Path] = set()
"""Run folders whose lock this process holds: taking one again is a no-op (see `RunDir.lock`)."""


class RunLocked(MammosegError):
    """Another live process is writing into this run folder."""


class RunDir:
    """One run folder and the files in it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def last(self) -> Path:
        return self.path / "last.keras"

    @property
    def best(self) -> Path:
        return self.path / "best.keras"

    def exists(self) -> bool:
        return (self.path / "config.json").is_file()

    def read_json(self, name: str) -> dict[str, Any] | None:
        path = self.path / name
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(path, f"not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise InputError(path, f"not a JSON object (a {type(data).__name__})")
        return data

    def config(self) -> dict[str, Any]:
        config = self.read_json("config.json")
        if config is None:
            raise InputError(self.path, "not a run folder (no config.json)")
        return config

    def state(self) -> dict[str, Any]:
        return self.read_json("state.json") or {"status": "new", "epochs_done": 0}

    def is_finished(self) -> bool:
        return self.state().get("status") == "finished"

    def write_json(self, name: str, obj: Any) -> None:
        write_json(self.path / name, obj)

    def write_state(self, **fields: Any) -> dict[str, Any]:
        state = self.state()
        state.update(fields, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self.write_json("state.json", state)
        return state

    def read_history(self) -> list[dict[str, Any]]:
        path = self.path / "history.csv"
        if not path.is_file():
            return []
        with open(path, newline="") as f:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path / "history.csv", buf.getvalue())

    def checkpoint(self, which: str = "best") -> Path:
        """Path of the `best` or `last` checkpoint; a clear error (naming the other one if present) otherwise."""
        if which not in ("best", "last"):
            raise InputError(self.path, f"checkpoint must be 'best' or 'last', got {which!r}")
        path = self.path / f"{which}.keras"
        if not path.is_file():
            other = self.path / ("last.keras" if which == "best" else "best.keras")
            hint = f" ({other.name} exists: try --checkpoint {other.stem})" if other.is_file() else ""
            raise InputError(path, f"no such checkpoint; is this a trained run folder?{hint}")
        return path

    def load_model(self, which: str = "best") -> Any:
        """The checkpoint's network without its training configuration (inference and analysis need none)."""
        import keras

        path = self.checkpoint(which)
        try:
            return keras.saving.load_model(path, compile=False)
        except (ValueError, OSError, TypeError, KeyError) as exc:
            raise InputError(path, f"cannot load the model ({str(exc).splitlines()[0][:160]})") from exc

    def save_model(self, model: Any, path: Path) -> None:
        """`model.save` to a temporary `.keras` file beside `path`, then os.replace: never a torn checkpoint."""
        with atomic_path(path) as tmp:
            model.save(tmp)

    def holder(self) -> str | None:
        """The live process that holds this folder's lock, or None."""
        return _lock_holder(self.path / LOCK_NAME)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold RUN/.lock (pid and host) while writing; a stale lock of a dead process is taken over.
        Re-entrant: a process that holds the lock may take it again (released by the outermost holder)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(self.path, exc) from exc
        if self.path.resolve() in _HELD:
            yield
            return
        lock = self.path / LOCK_NAME
        stamp = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _lock_holder(lock)
                if holder is not None:
                    raise RunLocked(f"{self.path}: run folder is in use by process {holder} (lock file {lock})")
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            except OSError as exc:
                raise write_error(self.path, exc) from exc
            with os.fdopen(fd, "w") as f:
                f.write(stamp)
            break
        else:
            raise RunLocked(f"{self.path}: could not take the lock file {lock}")
        _HELD.add(self.path.resolve())
        try:
            yield
        finally:
            _HELD.discard(self.path.resolve())
            with contextlib.suppress(FileNotFoundError):
                if lock.read_text() == stamp:
                    lock.unlink()


def _lock_holder(lock: Path) -> str | None:
    """Description of the live process holding `lock`, or None when the lock is stale."""
    try:
        pid_text, host = lock.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if host != socket.gethostname():
        return f"{pid} on {host}"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return str(pid)


def _number(text: str) -> Any:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    if math.isfinite(value) and value == int(value) and "." not in text and "e" not in text.lower():
        return int(value)
    return value


def resolve_run_dir(runs_dir: str | Path, run_name: str) -> RunDir:
    if not run_name or ".." in Path(run_name).parts or Path(run_name).is_absolute():
        raise InputError(run_name or "<empty>", "not a usable run name")
    return RunDir(Path(runs_dir) / run_name)
