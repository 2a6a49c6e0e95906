"""The run folder: where run folders live, what a run is called, every file in one, and its lock.

Training, evaluation, inference and the report read and write a run only through this module, so the
folder's contract is written once (docs/design.md, Code layout). Every file is written atomically::

    RUN/config.json  state.json  history.csv  timing.json  checkerboard_init.json   training
    RUN/last.keras  best.keras                                                     training (checkpoints)
    RUN/tb/  RUN/previews/epoch_NNN/  RUN/previews/inputs/                         training (for people)
    RUN/eval/<split>[@<dataset>]/  metrics.json per_image.csv examples.npz spectrum.npz detections.npz  evaluation
    RUN/layers/ (visualize-layer's default)   RUN/.lock (whoever writes)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mammoseg.core.atomic import atomic_path, strict_json, write_error, write_json, write_npz, write_text
from mammoseg.core.errors import InputError, MammosegError
from mammoseg.metrics.catalog import per_image_columns
from mammoseg.models.steps import AUTHOR_TRANSPOSE_KERNEL
from mammoseg.runs.external import describe, eval_name, evaluate_hint

if TYPE_CHECKING:
    import pandas as pd  # loaded when a table is read, not with every command's start

DEFAULT_RUNS_DIR = "experiments/runs"
RUNS_DIR_ENV = "MAMMOSEG_RUNS_DIR"
CHECKPOINTS = ("best", "last")
LOCK_NAME = ".lock"
RUN_NAME = re.compile(r"(.+)-seed(\d+)")
"""A run folder's name, `<arm>-seed<k>`: the arm (a variant, or an ablation's arm name) and the seed."""
SPECTRUM_GROUPS = {"all": "power", "negatives": "power_negative", "positives": "power_positive"}
"""spectrum.npz: the key of each image group's mean radial power spectrum (beside `freqs` and `n_<group>`)."""
REQUIRED_PER_IMAGE = ("example_id", "dice", "iou", "tp", "fp", "fn")

LOCK_OWNER_ENV = "MAMMOSEG_LOCK_OWNER"  # a scheduler task's name, shared by its attempts, which run one at a time
_HELD: set[Path] = set()  # run folders whose lock this process holds: taking one again is a no-op


class RunLocked(MammosegError):
    """Another live process is writing into this run folder."""


def resolve_runs_dir(option: str | Path | None = None, configured: str | Path | None = None) -> Path:
    """Where run folders go: the command-line option, else the TOML's `runs_dir`, else the environment's
    MAMMOSEG_RUNS_DIR, else experiments/runs."""
    return Path(option or configured or os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


def run_name(arm: str, seed: int) -> str:
    """The folder name of one seed of an arm."""
    return f"{arm}-seed{seed}"


def parse_run_name(name: str) -> tuple[str, int] | None:
    """(arm, seed) of a `<arm>-seed<k>` folder name; None for any other name."""
    match = RUN_NAME.fullmatch(name)
    return (match.group(1), int(match.group(2))) if match else None


def resolve_run_dir(runs_dir: str | Path, name: str) -> RunDir:
    """The run folder `name` under `runs_dir`; a name that would leave it is refused."""
    if not name or ".." in Path(name).parts or Path(name).is_absolute():
        raise InputError(name or "<empty>", "not a usable run name")
    return RunDir(Path(runs_dir) / name)


class RunDir:
    """One run folder: a typed reader and writer for each of its files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    def exists(self) -> bool:
        return self.config_file.is_file()

    # ------------------------------------------------------------------ training's files

    def config(self, required: bool = True) -> dict[str, Any]:
        """config.json, the resolved options; {} when absent and not `required`."""
        config = read_json(self.config_file, required=False)
        if config is None and required:
            raise InputError(self.path, "not a run folder (no config.json); train it with `mammoseg train` first")
        return config or {}

    def write_config(self, config: dict[str, Any]) -> None:
        write_json(self.config_file, config)

    def state(self) -> dict[str, Any]:
        return read_json(self.path / "state.json", required=False) or {"status": "new", "epochs_done": 0}

    def write_state(self, **fields: Any) -> dict[str, Any]:
        state = self.state()
        state.update(fields, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        write_json(self.path / "state.json", state)
        return state

    def is_finished(self) -> bool:
        return self.state().get("status") == "finished"

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

    def timing(self) -> dict[str, Any]:
        return read_json(self.path / "timing.json", required=False) or {}

    def write_timing(self, timing: dict[str, Any]) -> None:
        write_json(self.path / "timing.json", timing)

    def checkerboard_init(self) -> dict[str, Any]:
        return read_json(self.path / "checkerboard_init.json", required=False) or {}

    def write_checkerboard_init(self, scores: dict[str, Any]) -> None:
        write_json(self.path / "checkerboard_init.json", scores)

    def previews(self, epoch: int | None) -> Path:
        """Folder of one epoch's preview maps (epoch 0: at initialisation), or of the preview inputs (None)."""
        return self.path / "previews" / ("inputs" if epoch is None else f"epoch_{epoch:03d}")

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    @property
    def layers(self) -> Path:  # visualize-layer's default output folder
        return self.path / "layers"

    @property
    def last(self) -> Path:
        return self.path / "last.keras"

    @property
    def best(self) -> Path:
        return self.path / "best.keras"

    def checkpoint(self, which: str = "best") -> Path:
        """Path of the `best` or `last` checkpoint; a clear error (naming the other one if present) otherwise."""
        if which not in CHECKPOINTS:
            raise InputError(self.path, f"checkpoint must be 'best' or 'last', got {which!r}")
        path = self.path / f"{which}.keras"
        if not path.is_file():
            other = self.path / ("last.keras" if which == "best" else "best.keras")
            hint = f" ({other.name} exists: try --checkpoint {other.stem})" if other.is_file() else ""
            raise InputError(path, f"no such checkpoint; is this a trained run folder?{hint}")
        return path

    def any_checkpoint(self) -> Path | None:
        """The best checkpoint, else the last one, else None."""
        return next((p for p in (self.best, self.last) if p.is_file()), None)

    def load_model(self, which: str = "best") -> Any:
        """The checkpoint's network without its training configuration (inference and analysis need none)."""
        from mammoseg.models.saving import load_model

        return load_model(self.checkpoint(which))

    def save_model(self, model: Any, which: str) -> None:
        """`model.save` to a temporary `.keras` file beside the checkpoint, then os.replace: never a torn one."""
        with atomic_path(self.path / f"{which}.keras") as tmp:
            model.save(tmp)

    # ------------------------------------------------------------------ evaluation's files

    def eval_dir(self, split: str, dataset: str | None = None) -> Path:
        return self.path / "eval" / eval_name(split, dataset)

    def write_evaluation(self, split: str, metrics: dict[str, Any], per_image: pd.DataFrame,
                         examples: dict[str, np.ndarray], spectrum: dict[str, np.ndarray],
                         detections: dict[str, np.ndarray]) -> Path:
        """RUN/eval/<split>/: metrics.json (NaN as null: strict JSON), per_image.csv (the declared columns, in
        order: a missing one is an error, never a silently dropped column), examples.npz, spectrum.npz,
        detections.npz."""
        missing = [c for c in per_image_columns() if c not in per_image.columns]
        if missing:
            raise MammosegError(f"per-image rows lack the declared column(s) {', '.join(missing)}")
        per_image = per_image[list(per_image_columns())]
        out = self.eval_dir(split)
        write_json(out / "metrics.json", strict_json(metrics))
        write_text(out / "per_image.csv", per_image.to_csv(index=False))
        write_npz(out / "examples.npz", examples)
        write_npz(out / "spectrum.npz", spectrum)
        write_npz(out / "detections.npz", detections)
        return out

    def is_evaluated(self, split: str, checkpoint: str, dataset: str | None = None) -> bool:
        """The metrics on `split` (of the external `dataset`) exist and are newer than the checkpoint they evaluate."""
        metrics, model = self.eval_dir(split, dataset) / "metrics.json", self.path / f"{checkpoint}.keras"
        return metrics.is_file() and model.is_file() and metrics.stat().st_mtime >= model.stat().st_mtime

    def examples(self) -> Iterator[dict[str, np.ndarray]]:
        """The saved example images and maps of every evaluated split, split by split in name order."""
        for path in sorted((self.path / "eval").glob("*/examples.npz")):
            yield _read_npz(path)

    def holder(self) -> str | None:
        """The live process that holds this folder's lock, or None."""
        return _lock_holder(self.path / LOCK_NAME)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold RUN/.lock (pid, host, LOCK_OWNER_ENV) while writing; a stale lock (see _lock_holder) is taken over.
        Re-entrant: a process that holds the lock may take it again (released by the outermost holder)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(self.path, exc) from exc
        if self.path.resolve() in _HELD:
            yield
            return
        lock = self.path / LOCK_NAME
        stamp = f"{os.getpid()} {socket.gethostname()} {os.environ.get(LOCK_OWNER_ENV, '')}".strip() + "\n"
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if (holder := _lock_holder(lock)) is not None:
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


# ---------------------------------------------------------------------- a finished run, for the report


@dataclass
class Run:
    """One trained and evaluated run: the files of the run contract, parsed."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    per_image: pd.DataFrame
    history: pd.DataFrame | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    checkerboard_init: dict[str, Any] = field(default_factory=dict)
    examples: dict[str, np.ndarray] | None = None
    spectra: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # group -> (freqs, power)
    detections: dict[str, np.ndarray] | None = None  # detections.npz: every image's lesion candidates

    @property
    def variant(self) -> str:
        return str(self.config.get("variant", self.path.name))

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed")
        return None if seed is None else int(seed)

    @property
    def transpose_kernel(self) -> int:
        return int(self.config.get("transpose_kernel") or AUTHOR_TRANSPOSE_KERNEL)

    @property
    def design(self) -> str:
        """The upsampling design: variant, plus the transpose kernel when it is not the author's 4."""
        if self.transpose_kernel == AUTHOR_TRANSPOSE_KERNEL:
            return self.variant
        return f"{self.variant}-k{self.transpose_kernel}"

    @property
    def arm(self) -> str:
        """The arm this run is a seed of: `<arm>` of an `<arm>-seed<k>` folder (an ablation arm), else the design."""
        parsed = parse_run_name(self.path.name)
        return parsed[0] if parsed else self.design

    @property
    def image_size(self) -> int | None:
        size = self.config.get("image_size")
        return None if size is None else int(size)


def load_run(run_dir: str | Path, split: str = "test", dataset: str | None = None) -> Run:
    """Load a run folder and its evaluation on `split` (of the external `dataset`); a user error naming the folder
    and what to run if it is not evaluated yet: a report silently built from fewer runs than asked for would mislead."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise InputError(run.path, "no such run folder")
    config = run.config()
    eval_dir = run.eval_dir(split, dataset)
    if not (eval_dir / "metrics.json").is_file() or not (eval_dir / "per_image.csv").is_file():
        raise InputError(
            run.path, f"not evaluated on {describe(split, dataset)}; run `{evaluate_hint(run.path, split, dataset)}` first"
        )
    per_image = _read_csv(eval_dir / "per_image.csv")
    missing = [c for c in REQUIRED_PER_IMAGE if c not in per_image.columns]
    if missing:
        raise InputError(eval_dir / "per_image.csv", f"missing columns {', '.join(missing)}; re-run `mammoseg evaluate`")
    per_image["example_id"] = per_image["example_id"].astype(str)
    result = Run(path=run.path, config=config, metrics=read_json(eval_dir / "metrics.json"), per_image=per_image,
                 timing=run.timing(), checkerboard_init=run.checkerboard_init())
    if (run.path / "history.csv").is_file():
        result.history = _read_csv(run.path / "history.csv")
    if (eval_dir / "examples.npz").is_file():
        result.examples = _read_npz(eval_dir / "examples.npz")
    if (eval_dir / "detections.npz").is_file():
        result.detections = _read_npz(eval_dir / "detections.npz")
    if (eval_dir / "spectrum.npz").is_file():
        spectrum = _read_npz(eval_dir / "spectrum.npz")
        freqs = np.asarray(spectrum.get("freqs", np.zeros(0)), float)
        for group, key in SPECTRUM_GROUPS.items():
            power = np.asarray(spectrum.get(key, np.zeros(0)), float)
            if freqs.size and power.shape == freqs.shape and np.isfinite(power).any():
                result.spectra[group] = (freqs, power)
    return result


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """metrics.json flattened to dotted keys with numeric values, so lookups survive nesting choices."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_metrics(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def lookup(flat: dict[str, float], key: str) -> float:
    """The value at exactly this dotted key; NaN when the file lacks it (evaluated before the metric existed, or
    not measured). A test checks declared keys against what evaluation writes: a misspelt one fails it."""
    return flat.get(key, math.nan)


def operating_point_of(metrics: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's lesion operating point (metrics.json's detection.operating_point), {} where it has none."""
    point = metrics.get("detection", {}).get("operating_point") if isinstance(metrics.get("detection"), dict) else None
    return point if isinstance(point, dict) else {}


def read_json(path: Path, required: bool = True) -> dict[str, Any] | None:
    """A JSON object file; None when absent and not `required`; a one-line InputError when unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not required:
            return None
        raise InputError(path, "no such file") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from exc
    if not isinstance(data, dict):
        raise InputError(path, f"not a JSON object (a {type(data).__name__})")
    return data


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable CSV ({exc})") from exc


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable .npz archive ({exc})") from exc


def _number(text: str) -> Any:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    if math.isfinite(value) and value == int(value) and "." not in text and "e" not in text.lower():
        return int(value)
    return value


def _lock_holder(lock: Path) -> str | None:
    """The live process holding `lock`; None when stale (dead, or an earlier attempt of this LOCK_OWNER_ENV task)."""
    try:
        pid_text, host, *owner = lock.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if owner and owner == os.environ.get(LOCK_OWNER_ENV, "").split():
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
