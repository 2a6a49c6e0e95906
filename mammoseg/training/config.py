"""Training configuration: the author's defaults (docs/design.md §2), TOML files, and their precedence.

Precedence, lowest to highest: built-in defaults < the TOML file < options given on the command line.
`config.json` in the run folder records the fully resolved result.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammoseg.core.conventions import PRECISIONS
from mammoseg.core.errors import InputError
from mammoseg.models.registry import get_spec, variant_names
from mammoseg.models.steps import L2_LAMBDA

LOSS_NORMALIZATIONS = ("pixels", "weights")
"""What the weighted cross-entropy sum is divided by: the pixel count (the author's) or the sum of the weights."""

PRECISION_CHOICES = ("auto", *PRECISIONS)
"""Keras dtype policies, or `auto` (`auto_precision`)."""
BF16_MIN_CAPABILITY = (8, 0)
"""The first NVIDIA compute capability (Ampere) with bfloat16 tensor cores."""
DISTRIBUTIONS = ("none", "mirrored", "multi-worker")


@dataclass
class TrainConfig:
    """Everything that determines a training run. Field names are the TOML keys and the option names."""

    variant: str = ""
    data: str = ""
    image_size: int | None = None
    width: float = 1.0
    seed: int = 0
    epochs: int = 30
    batch_size: int = 16
    learning_rate: float = 7e-4
    lr_decay: float = 0.85
    lr_decay_epochs: int = 10
    positive_weight: float | None = None
    loss_normalization: str = "pixels"
    transpose_kernel: int | None = None
    l2: float = L2_LAMBDA
    dropout: bool = True
    flips: bool = True
    init_encoder_from: str | None = None
    freeze_encoder: bool = False
    precision: str = "auto"
    jit_compile: bool | str = "auto"
    distribute: str = "none"
    deterministic: bool = False
    run_name: str | None = None

    def learning_rate_at(self, epoch: int) -> float:
        """Staircase decay by absolute epoch index (0-based), so a resumed run gets the same rate."""
        return self.learning_rate * self.lr_decay ** (epoch // self.lr_decay_epochs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig))
EXTRA_KEYS = ("runs_dir",)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is an InputError naming it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as exc:
        raise InputError(path, "config file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, f"not valid TOML ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text, as TOML must be ({exc.reason} at byte {exc.start})") from exc


def train_table(path: str | Path) -> dict[str, Any]:
    """The training options of a TOML file.

    A file with a `[train]` table (an ablation config) contributes that table, plus `data` from its
    `[experiment]` table; any other file is read as a flat table of training options.
    """
    doc = read_toml(path)
    if "train" in doc:
        table = sub_table(doc, "train", path)
        experiment = sub_table(doc, "experiment", path)
        if "data" in experiment and "data" not in table:
            table["data"] = experiment["data"]
    else:
        table = dict(doc)
    check_keys(table, path, TRAIN_KEYS + EXTRA_KEYS)
    return table


def sub_table(doc: dict[str, Any], key: str, path: str | Path, name: str | None = None) -> dict[str, Any]:
    """A copy of `doc[key]` (empty when absent), which must be a TOML table."""
    table = doc.get(key, {})
    if not isinstance(table, dict):
        raise InputError(path, f"[{name or key}] must be a table, got {table!r}")
    return dict(table)


def check_keys(table: dict[str, Any], path: str | Path, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise InputError(path, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def build_config(values: dict[str, Any], source: str | Path = "configuration") -> TrainConfig:
    """A validated TrainConfig from option values (None means "not given"), per-variant defaults filled in."""
    check_keys(values, source, TRAIN_KEYS + EXTRA_KEYS)
    given = {k: v for k, v in values.items() if v is not None and k in TRAIN_KEYS}
    try:
        config = TrainConfig(**given)
    except TypeError as exc:
        raise InputError(source, str(exc)) from exc
    validate(config, source)
    spec = get_spec(config.variant)
    if config.positive_weight is None:
        config.positive_weight = spec.positive_weight
    if config.transpose_kernel is None:
        config.transpose_kernel = spec.transpose_kernel
    return config


def auto_precision(gpu_capabilities: list[tuple[int, int]]) -> str:
    """What precision `auto` means on devices with these GPU compute capabilities (empty: no GPU):
    mixed_bfloat16 when every GPU has bfloat16 tensor cores (capability >= 8.0), else float32. Older
    GPUs emulate bfloat16 slowly, and float16 would need loss scaling the author's recipe never had."""
    if gpu_capabilities and all(tuple(c) >= BF16_MIN_CAPABILITY for c in gpu_capabilities):
        return "mixed_bfloat16"
    return "float32"


def validate(config: TrainConfig, source: str | Path = "configuration") -> None:
    """Clear errors for values that would otherwise fail deep inside training."""
    names = variant_names()
    problems = []
    for key in ("variant", "data", "init_encoder_from", "run_name"):
        value = getattr(config, key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{key} must be a string, got {value!r}")
    for key in ("dropout", "flips", "freeze_encoder", "deterministic"):
        if not isinstance(getattr(config, key), bool):
            problems.append(f"{key} must be true or false, got {getattr(config, key)!r}")
    if not config.variant:
        problems.append("no variant given")
    elif isinstance(config.variant, str) and config.variant not in names:
        problems.append(f"unknown variant {config.variant!r}; choose one of {', '.join(names)}")
    if not config.data:
        problems.append("no dataset given (--data)")
    for key in ("epochs", "batch_size", "lr_decay_epochs", "transpose_kernel"):
        value = getattr(config, key)
        if value is None and key == "transpose_kernel":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{key} must be a positive integer, got {value!r}")
    if config.image_size is not None and (not isinstance(config.image_size, int) or config.image_size < 8):
        problems.append(f"image_size must be an integer >= 8, got {config.image_size!r}")
    for key in ("width", "learning_rate", "lr_decay", "positive_weight"):
        value = getattr(config, key)
        if value is None and key == "positive_weight":
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
            problems.append(f"{key} must be a positive number, got {value!r}")
    if not isinstance(config.l2, (int, float)) or isinstance(config.l2, bool) or not 0 <= config.l2 < math.inf:
        problems.append(f"l2 must be a non-negative number, got {config.l2!r}")
    if config.loss_normalization not in LOSS_NORMALIZATIONS:
        problems.append(f"loss_normalization must be one of {', '.join(LOSS_NORMALIZATIONS)}, "
                        f"got {config.loss_normalization!r}")
    if not isinstance(config.seed, int) or isinstance(config.seed, bool) or config.seed < 0:
        problems.append(f"seed must be a non-negative integer, got {config.seed!r}")
    if config.precision not in PRECISION_CHOICES:
        problems.append(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {config.precision!r}")
    if config.distribute not in DISTRIBUTIONS:
        problems.append(f"distribute must be one of {', '.join(DISTRIBUTIONS)}, got {config.distribute!r}")
    if not (isinstance(config.jit_compile, bool) or config.jit_compile == "auto"):
        problems.append(f"jit_compile must be true, false or \"auto\", got {config.jit_compile!r}")
    if config.freeze_encoder and not config.init_encoder_from:
        problems.append("freeze_encoder needs init_encoder_from (a run to take the encoder from)")
    if problems:
        raise InputError(source, "; ".join(problems))


def merge_options(config_file: str | Path | None, given: dict[str, Any]) -> dict[str, Any]:
    """The TOML file's options overlaid with those the user gave on the command line (command line wins)."""
    values = train_table(config_file) if config_file else {}
    values.update({k: v for k, v in given.items() if v is not None})
    return values
