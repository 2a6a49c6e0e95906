"""What each task of a grid asks a cluster for: the experiment TOML's [cluster] table, then the options.

    [cluster]
    partition = "gpu"          # Slurm partition of the run tasks (report_partition: of the report job)
    gpus = 1                   # per task
    cpus = 8                   # per task
    mem = "32G"                # per task (Slurm's --mem; Kubernetes' memory)
    time = "12:00:00"          # per task
    concurrency = 8            # tasks at once (Slurm's %N, Kubernetes' parallelism)
    setup = "source ~/venvs/mammoseg/bin/activate"   # run before `mammoseg` in each job script
    sbatch = ["--account=lab", "--qos=normal"]        # extra #SBATCH lines
    signal_seconds = 300       # warning before the time limit (--signal=B:USR1@N), grace on Kubernetes
    image = "registry.example.org/mammoseg:1.0"       # Kubernetes: the container image
    volume_claim = "mammoseg-work"                    # Kubernetes: the shared volume, mounted at workdir
    workdir = "/work"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mammoseg.core.errors import InputError
from mammoseg.training.config import check_keys, read_toml, sub_table

TIME = re.compile(r"(\d+-)?\d+(:\d{2}){0,2}")
"""Slurm's time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""
MEMORY = re.compile(r"\d+[KMGT]?")


@dataclass(frozen=True)
class Resources:
    """Per task, unless named otherwise; None leaves the cluster's default."""

    partition: str | None = None
    report_partition: str | None = None
    gpus: int = 0
    cpus: int = 4
    mem: str | None = None
    time: str | None = None
    concurrency: int | None = None
    setup: str = ""
    sbatch: tuple[str, ...] = field(default_factory=tuple)
    signal_seconds: int = 300
    image: str | None = None
    volume_claim: str | None = None
    workdir: str = "/work"


_TYPES = {"partition": str, "report_partition": str, "gpus": int, "cpus": int, "mem": str, "time": str,
          "concurrency": int, "setup": str, "sbatch": list, "signal_seconds": int, "image": str,
          "volume_claim": str, "workdir": str}
_MINIMUM = {"gpus": 0, "cpus": 1, "concurrency": 1, "signal_seconds": 10}


def read_resources(config_path: str | Path, **overrides: Any) -> Resources:
    """The [cluster] table of an experiment TOML (absent: the defaults), with `overrides` (the command
    line's, None meaning not given) on top; every value checked, errors naming the file and the key."""
    path = Path(config_path)
    where = f"{path} [cluster]"
    table = dict(sub_table(read_toml(path), "cluster", path))
    table.update({key: value for key, value in overrides.items() if value is not None})
    check_keys(table, where, tuple(_TYPES))
    for key, value in table.items():
        kind = _TYPES[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise InputError(where, f"{key} must be {'an integer' if kind is int else 'a ' + kind.__name__}, "
                                    f"got {value!r}")
        if key in _MINIMUM and value < _MINIMUM[key]:
            raise InputError(where, f"{key} must be at least {_MINIMUM[key]}, got {value}")
    if "sbatch" in table:
        if not all(isinstance(line, str) and line.startswith("--") for line in table["sbatch"]):
            raise InputError(where, f"sbatch must be a list of sbatch options such as \"--qos=normal\", "
                                    f"got {table['sbatch']!r}")
        table["sbatch"] = tuple(table["sbatch"])
    if "time" in table and not TIME.fullmatch(table["time"]):
        raise InputError(where, f"time must be a Slurm time such as 12:00:00 or 1-00:00:00, got {table['time']!r}")
    if "mem" in table and not MEMORY.fullmatch(table["mem"]):
        raise InputError(where, f"mem must be a size such as 32G or 4000M, got {table['mem']!r}")
    if "setup" in table and "\n" in table["setup"]:
        raise InputError(where, "setup must be one line (join commands with &&)")
    return replace(Resources(), **table)
