"""The on-disk layouts `prepare` reads, one module each in this package, found by the registry.

A layout module defines `LAYOUT`, a `Layout`: its name (a `--layout` choice), a one-line summary,
`detect(root)` (cheap signs that a folder holds this layout) and `plan(root, options, skips)`, the
images to prepare as `ImageJob`s. A layout with an official split (CBIS-DDSM) gives each job its
split and returns every patient's split; the others leave splits empty, and `prepare` deals their
patients into folds (`mammoseg.dataset.split.assign_folds`). Adding a layout is adding a module here.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mammoseg.core.errors import InputError, MammosegError, Skip

if TYPE_CHECKING:
    from mammoseg.dataset.examples import ImageJob, PrepareOptions

AUTO = "auto"


@dataclass
class Plan:
    """What a layout found: the images to prepare, and every patient's official split (empty for a
    layout without one; patients whose images were all skipped count too, as they shape the split)."""

    jobs: list[ImageJob]
    patient_split: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    """One way a dataset lies on disk. `detect` None: never detected, only chosen by name. `order`:
    detection order, lower first (specific signs before generic ones). `resolver`: for the CBIS-DDSM
    layouts, the `Resolver` of CSV paths to files (`cbis_tree.open_layout`)."""

    name: str
    summary: str
    detect: Callable[[Path], bool] | None
    plan: Callable[[Path, PrepareOptions, list[Skip]], Plan]
    order: int
    resolver: Callable[[Path, Any], Any] | None = None


@functools.cache
def registry() -> dict[str, Layout]:
    """Every layout of this package by name, in detection order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        layout = getattr(importlib.import_module(f"{__name__}.{info.name}"), "LAYOUT", None)
        if isinstance(layout, Layout):
            found.append(layout)
    return {layout.name: layout for layout in sorted(found, key=lambda l: (l.order, l.name))}


def names() -> tuple[str, ...]:
    """The `--layout` choices besides `auto`."""
    return tuple(registry())


def get(name: str) -> Layout:
    """The layout called `name`; MammosegError naming the choices for an unknown one."""
    try:
        return registry()[name]
    except KeyError:
        raise MammosegError(f"unknown layout {name!r}; choose one of {AUTO}, {', '.join(names())}") from None


def detect(root: str | Path) -> Layout:
    """The first layout, in detection order, whose signs `root` shows."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "data root is not a folder")
    for layout in registry().values():
        if layout.detect is not None and layout.detect(root):
            return layout
    looked = "; ".join(f"{l.name}: {l.summary}" for l in registry().values() if l.detect is not None)
    raise InputError(root, f"no known dataset layout found (looked for {looked})")


def choose(root: str | Path, name: str = AUTO) -> Layout:
    """The layout called `name`, or the detected one for `auto`."""
    return detect(root) if name == AUTO else get(name)


from mammoseg.dataset.layouts.cbis_tree import open_layout  # noqa: E402  (the CBIS-DDSM resolver, by layout name)

__all__ = ["AUTO", "Layout", "Plan", "choose", "detect", "get", "names", "open_layout", "registry"]
