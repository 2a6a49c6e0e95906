"""Evidence an experiment gathers once, beside its runs, for claims the runs alone cannot answer cleanly.

Both files lie in the experiment's report folder, written by `ablate` and read by the report:

* `init_networks.json`: the first upsampling's checkerboard at initialisation of many freshly built
  networks per arm (no training), so that claim (b) at initialisation has networks, not one run's
  initial network per seed, as its units;
* `speed.json`: the interleaved speed comparison (`mammoseg bench --compare`'s record) of claim (c)'s
  pairs, whose block timings share the machine's load, unlike the study's own timings.

A missing file leaves the claims on the runs' own numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mammoseg.core.errors import InputError

INIT_NETWORKS_FILE = "init_networks.json"
SPEED_FILE = "speed.json"
INIT_SCORES = {"decoder_init": "decoder", "output_upsampling_init": "output"}
"""Claim (b)'s at-initialisation metrics and the key of `checkerboard_scores(...)["upsampling"]` each reads."""
SPEED_KEYS = ("speed_ratio", "speed_ratio_low", "speed_ratio_high", "p_value", "a_images_per_second_median",
              "b_images_per_second_median")
"""What claim (c) reads of each pair in the interleaved record."""


@dataclass(frozen=True)
class Evidence:
    """`networks`: arm → metric → one value per rebuilt network; `speed`: (arm A, arm B) → the interleaved
    benchmark's pair record (speed ratio A/B with its interval and p-value)."""

    networks: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    speed: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    network_count: int = 0


def read_evidence(folder: str | Path) -> Evidence:
    """The evidence files in `folder`, each absent one empty; a malformed one is an InputError naming it."""
    folder = Path(folder)
    init = _read(folder / INIT_NETWORKS_FILE)
    speed = _read(folder / SPEED_FILE)
    try:
        networks = {arm: {key: [float(v) for v in record[key]] for key in INIT_SCORES}
                    for arm, record in init.get("arms", {}).items()}
        count = int(init.get("networks", 0))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(folder / INIT_NETWORKS_FILE, f"not a record of rebuilt networks ({exc!r})") from None
    try:
        pairs = {(p["a"], p["b"]): {**p, **{k: float(p[k]) for k in SPEED_KEYS}} for p in speed.get("pairs", [])}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(folder / SPEED_FILE, f"not an interleaved speed record ({exc!r})") from None
    return Evidence(networks, pairs, count)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable JSON ({exc})") from None
    if not isinstance(record, dict):
        raise InputError(path, "expected a JSON object")
    return record
