"""The variant registry: every network the program can build, as one spec each (docs/design.md §1.3).

A spec holds everything the program knows about a variant: its steps, the image sizes it takes, the
author's loss weight for it, the decoder step whose output shows the first upsampling's checkerboard,
the kernels left without L2, the default transposed kernel, and whether the article has it. The CLI's
choices, training's defaults, the at-init study, `bench`, the benchmarks and the report read it from
here. No backend is imported: the registry can be read before a Keras backend is chosen.

The article's five variants (`mammoseg.models.variants`) and the upsampling designs beyond it
(`mammoseg.models.decoders`) register themselves when the registry is first read; `register` adds
one more from anywhere, e.g. a test or a user's own module. Modules named in the environment variable
MAMMOSEG_VARIANTS (comma-separated: importable names or paths of .py files) are imported then too, so
a design of one's own is one file outside the package, valid in every command and every process a run
starts.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from mammoseg.models.steps import (
    AUTHOR_TRANSPOSE_KERNEL,
    BilinearAdditive,
    Bottleneck,
    Conv,
    Pool,
    Resize,
    Step,
    SubPixel,
    Transpose,
)

@dataclass(frozen=True)
class VariantSpec:
    """One network: trunk (encoder + head) then decoder, and what the program needs to know about it.

    `positive_weight`: the loss weight of abnormal pixels when a run does not set one (the author's
    per-variant value for his networks). `probe_step`: the decoder step right after the first
    upsampling, whose output the checkerboard-at-init and trained measures score. `transpose_kernel`:
    the kernel of steps sized `TRANSPOSE_KERNEL` unless a run sets another. `article`: one of the
    article's five networks (the report lists these first, in the article's order). `size_reason`
    says why an image size that is not a multiple of `size_multiple` cannot be used.
    """

    name: str
    summary: str
    trunk: tuple[Step, ...]
    decoder: tuple[Step, ...]
    size_multiple: int
    size_reason: str
    positive_weight: float
    probe_step: str
    article: bool = False
    transpose_kernel: int = AUTHOR_TRANSPOSE_KERNEL

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.trunk + self.decoder

    @property
    def without_l2(self) -> tuple[str, ...]:
        """Names of the kernels left out of the L2 penalty, bottlenecks included, in build order."""
        names = []
        for step in self.steps:
            skip = getattr(step, "skip", None)
            if isinstance(skip, Bottleneck) and not skip.regularized:
                names.append(skip.name)
            if isinstance(step, (Conv, Transpose, SubPixel)) and not step.regularized:
                names.append(step.name)
        return tuple(names)


logger = logging.getLogger("mammoseg.models")
_REGISTRY: dict[str, VariantSpec] = {}
PLUGINS_ENV = "MAMMOSEG_VARIANTS"
_PLUGINS_TRIED: set[str] = set()
_STEP_TYPES = (Conv, Transpose, Resize, SubPixel, BilinearAdditive, Pool)


def register(spec: VariantSpec) -> VariantSpec:
    """Add a variant; its name becomes valid wherever a variant is named. Registering the same spec again is a
    no-op; another spec under a taken name, or a spec whose probe step is not in its decoder, is an error."""
    if not isinstance(spec, VariantSpec) or not spec.name or not isinstance(spec.name, str):
        raise ValueError(f"register() needs a VariantSpec with a name, got {spec!r}")
    if _REGISTRY.get(spec.name, spec) != spec:
        raise ValueError(f"variant {spec.name!r} is already registered with another spec")
    bad = [step for step in spec.steps if not isinstance(step, _STEP_TYPES)]
    if bad:
        raise ValueError(f"variant {spec.name!r}: {bad[0]!r} is not a step record")
    if spec.probe_step not in {step.name for step in spec.decoder}:
        raise ValueError(f"variant {spec.name!r}: probe step {spec.probe_step!r} is not one of its decoder steps")
    if spec.size_multiple < 1 or not spec.positive_weight > 0:
        raise ValueError(f"variant {spec.name!r}: size_multiple and positive_weight must be positive")
    _REGISTRY[spec.name] = spec
    return spec


def registered() -> dict[str, VariantSpec]:
    """Every registered spec by name: the article's five in its order, then the designs beyond it, then the rest."""
    import mammoseg.models.decoders  # noqa: F401  (the built-in specs register on import; variants first)
    import mammoseg.models.variants  # noqa: F401

    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        _import_plugin(module)
    return _REGISTRY


def variant_names() -> list[str]:
    """Every registered variant, in registration order (the article's five first)."""
    return list(registered())


def article_variant_names() -> list[str]:
    """The article's five networks in its order, from the first FCN to the final model."""
    return [name for name, spec in registered().items() if spec.article]


def get_spec(variant: str) -> VariantSpec:
    try:
        return registered()[variant]
    except (KeyError, TypeError):
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(registered())}") from None


def check_image_size(variant: str, image_size: int) -> None:
    """Raise ValueError unless the variant's down- and upsampling map `image_size` back onto itself exactly."""
    spec = get_spec(variant)
    m = spec.size_multiple
    if not isinstance(image_size, int) or image_size < m or image_size % m:
        raise ValueError(f"{variant}: image size {image_size} is not supported: {spec.size_reason}")


def _import_plugin(module: str) -> None:
    """Import a module of one's own specs once: an importable name, or the path of a .py file. One that does not
    import is left out with a one-line warning naming it (its variants are then unknown), never a traceback:
    the registry is read while the command line is being built."""
    if module in _PLUGINS_TRIED:
        return
    _PLUGINS_TRIED.add(module)
    try:
        if module.endswith(".py"):
            loader = importlib.util.spec_from_file_location(f"mammoseg_variants_{len(_PLUGINS_TRIED)}", Path(module))
            if loader is None or loader.loader is None:
                raise ImportError("not a Python file")
            loader.loader.exec_module(importlib.util.module_from_spec(loader))
        else:
            importlib.import_module(module)
    except Exception as exc:  # a module of one's own may fail in any way; say which and go on without it
        logger.warning("%s: %s names it, and it does not import (%s: %s); its variants are left out", module,
                       PLUGINS_ENV, type(exc).__name__, exc)
