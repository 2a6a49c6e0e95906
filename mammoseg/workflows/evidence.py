"""Evidence an experiment gathers once beside its runs (`reporting.evidence` says what each file holds):
rebuilt networks at initialisation for claim (b), and an interleaved speed comparison for claim (c).

Enabled per experiment in its TOML: `[init_networks] networks = 20` and `[speed] blocks = 10, steps = 5`.
Each is done in a process of its own and skipped when its file already records the same settings, so
running `ablate` again costs nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mammoseg.core.errors import InputError, MammosegError
from mammoseg.models.registry import get_spec
from mammoseg.reporting.evidence import INIT_NETWORKS_FILE, INIT_SCORES, SPEED_FILE
from mammoseg.training.config import TrainConfig, check_keys, sub_table

if TYPE_CHECKING:
    from mammoseg.workflows.ablate import Plan

logger = logging.getLogger("mammoseg.ablate")

TABLES = ("init_networks", "speed")
"""The experiment TOML's tables that enable the evidence."""
DEFAULTS = {"init_networks": {"networks": 20}, "speed": {"blocks": 10, "steps": 5}}
MINIMUM = {"networks": 2, "blocks": 2, "steps": 1}  # two networks or block pairs: the least a t interval needs
NETWORK_KEYS = ("variant", "image_size", "width", "transpose_kernel")
BENCH_KEYS = ("variant", "image_size", "width", "batch_size", "precision")


@dataclass(frozen=True)
class EvidenceSettings:
    """Rebuilt networks per arm (0: none) and the interleaved benchmark's blocks (0: none) and steps per block."""

    networks: int = 0
    blocks: int = 0
    steps: int = 0


def read_settings(doc: dict[str, Any], path: Path) -> EvidenceSettings:
    """The evidence tables of an experiment TOML, each absent one disabled; bad values name the file."""
    values: dict[str, int] = {}
    for table in TABLES:
        if table not in doc:
            continue
        given = sub_table(doc, table, path)
        check_keys(given, f"{path} [{table}]", tuple(DEFAULTS[table]))
        for key, default in DEFAULTS[table].items():
            value = given.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < MINIMUM[key]:
                raise InputError(path, f"[{table}] {key} must be an integer of at least {MINIMUM[key]}, got {value!r}")
            values[key] = value
    return EvidenceSettings(**values)


def gather_evidence(plan: Plan) -> None:
    """Write the evidence the plan enables into its report folder, each file only when it is not current."""
    configs = {run.arm: run.config for run in plan.runs}  # each arm's settings (they differ only by seed)
    settings = plan.evidence
    if (settings.networks or settings.blocks) and not all(c.image_size for c in configs.values()):
        logger.warning("no evidence gathered: it needs image_size in the experiment's [train]")
        return
    if settings.networks:
        arms = [name for name in configs if any(c.metric in INIT_SCORES and name in (c.arm, c.other)
                                                for claim in plan.claims for c in claim.comparisons)]
        _gather(plan.report_dir / INIT_NETWORKS_FILE,
                {"networks": settings.networks, "arms": _specs(arms, configs, NETWORK_KEYS)}, measure_networks)
    if settings.blocks:
        pairs = speed_pairs(plan)
        arms = sorted({name for pair in pairs for name in pair})
        _gather(plan.report_dir / SPEED_FILE, {"blocks": settings.blocks, "steps": settings.steps, "pairs": pairs,
                                               "arms": _specs(arms, configs, BENCH_KEYS)}, benchmark_pairs)


def speed_pairs(plan: Plan) -> list[tuple[str, str]]:
    """The pairs of arms the plan's timed claims compare that the interleaved benchmark can time."""
    configs = {run.arm: run.config for run in plan.runs}
    return [(c.arm, c.other) for claim in plan.claims if claim.timed for c in claim.comparisons
            if all(_benchable(name, configs) for name in (c.arm, c.other))]


def _specs(arms: list[str], configs: dict[str, TrainConfig], keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The settings each arm's measurement depends on: a change to any of them measures again."""
    return {arm: {k: getattr(configs[arm], k) for k in keys} for arm in arms}


def _benchable(arm: str, configs: dict[str, TrainConfig]) -> bool:
    """The benchmark builds variants as their specs are: an arm it can time is its variant unchanged (a resolved
    config carries the spec's own transpose kernel)."""
    config = configs.get(arm)
    return (config is not None and config.variant == arm
            and config.transpose_kernel in (None, get_spec(arm).transpose_kernel))


def _gather(path: Path, request: dict[str, Any], work: Callable[[dict[str, Any], Path], None]) -> None:
    """`work(request, path)` in a process of its own, unless `path` already records `request`."""
    from mammoseg.core.runtime import run_in_fresh_process

    if not request["arms"]:
        logger.info("%s: none of the experiment's arms needs it", path.name)
        return
    if path.is_file():
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("request") == json.loads(json.dumps(request)):
                logger.info("%s up to date", path)
                return
        except (OSError, ValueError, AttributeError):
            pass  # unreadable: measured again and replaced
    logger.info("measuring %s", path)
    try:
        run_in_fresh_process(work, request, path, what=str(path))
    except MammosegError as exc:  # the runs' report does not depend on it: the claims fall back on the runs
        logger.warning("%s not written: %s", path, exc)


def measure_networks(request: dict[str, Any], path: Path) -> None:
    """First-upsampling checkerboard scores of `networks` networks per arm built at seeds 0..N-1, untrained."""
    from mammoseg.core.atomic import write_json
    from mammoseg.core.progress import track
    from mammoseg.evaluation.init_study import measure_variant

    count = request["networks"]
    arms: dict[str, dict[str, list[float]]] = {arm: {key: [] for key in INIT_SCORES} for arm in request["arms"]}
    jobs = [(arm, seed) for arm in request["arms"] for seed in range(count)]
    for arm, seed in track(jobs, "networks at initialisation", unit="network"):
        spec = request["arms"][arm]
        upsampling = measure_variant(spec["variant"], seed, image_size=spec["image_size"], width=spec["width"],
                                     transpose_kernel=spec["transpose_kernel"])["upsampling"]
        for metric, key in INIT_SCORES.items():
            arms[arm][metric].append(upsampling.get(key, float("nan")))
    write_json(path, {"request": request, "networks": count, "seeds": list(range(count)), "arms": arms})


def benchmark_pairs(request: dict[str, Any], path: Path) -> None:
    """The interleaved speed comparison of the pairs, at the first arm's image size, width, batch size and
    precision (as training resolves it)."""
    from mammoseg.core.atomic import write_json
    from mammoseg.core.runtime import gpu_compute_capabilities
    from mammoseg.training.config import auto_precision
    from mammoseg.workflows.bench.interleaved import compare_pairs
    from mammoseg.workflows.bench.options import BenchOptions

    first = next(iter(request["arms"].values()))
    precision = first["precision"] if first["precision"] != "auto" else auto_precision(gpu_compute_capabilities())
    options = BenchOptions(variants=(), image_sizes=(first["image_size"],), batch_size=first["batch_size"],
                           precision=precision, steps=request["steps"], width=first["width"], inference=False,
                           compare=tuple(tuple(p) for p in request["pairs"]), blocks=request["blocks"])
    write_json(path, {"request": request, **compare_pairs(options)})
