"""What `mammoseg bench` measures, checked before anything runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mammoseg.core.conventions import PRECISIONS
from mammoseg.core.errors import MammosegError


@dataclass(frozen=True)
class BenchOptions:
    """What to measure. `variants` empty: no model timings (pipeline and prepare only). Several
    `image_sizes` time every variant at each and add a scaling summary; prepare uses the first."""

    variants: tuple[str, ...] = ("dilated_resize",)
    image_sizes: tuple[int, ...] = (640,)
    batch_size: int = 16
    precision: str = "float32"
    steps: int = 20
    warmup: int = 3
    width: float = 1.0
    jit_compile: bool | str = "auto"
    inference: bool = True
    data: Path | None = None
    pipeline_seconds: float = 15.0
    dicom_dir: Path | None = None
    prepare_images: int = 16

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise MammosegError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.batch_size < 1 or self.steps < 1 or self.warmup < 0 or self.prepare_images < 1:
            raise MammosegError("--batch-size, --steps and the image count must be positive, --warmup non-negative")
        if self.pipeline_seconds <= 0:
            raise MammosegError("--pipeline-seconds must be positive")
        if not self.image_sizes or min(self.image_sizes) < 8:
            raise MammosegError("--image-size must be given at least once, each at least 8")

    @property
    def image_size(self) -> int:
        return self.image_sizes[0]
