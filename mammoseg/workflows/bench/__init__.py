"""Performance measurements: training step, inference, input pipeline and prepare throughput.

Every figure is recorded with the backend, devices, versions, precision and the resolved
jit_compile setting, because a timing without them cannot be compared with another one.
Model timings use random tensors created on the accelerator, so they show the network's own speed,
not the input pipeline's; the pipeline is measured separately, on real shards, per CPU core. A speed
comparison of two networks is timed interleaved (`interleaved.py`), so both meet the same machine load.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mammoseg.workflows.bench.interleaved import compare_pairs
from mammoseg.workflows.bench.models import bench_or_skip, scaling
from mammoseg.workflows.bench.options import BenchOptions
from mammoseg.workflows.bench.pipeline import bench_pipeline
from mammoseg.workflows.bench.prepare import bench_prepare
from mammoseg.workflows.bench.table import format_table

__all__ = ["BenchOptions", "format_table", "run", "write"]

SPEED_VARIABLES = (
    "KERAS_BACKEND", "CUDA_VISIBLE_DEVICES", "XLA_FLAGS", "TF_XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION", "TF_GPU_ALLOCATOR", "TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS",
)  # fmt: skip
"""Environment variables that change speeds; recorded with every result when set."""


def run(options: BenchOptions) -> dict[str, Any]:
    """Run every requested measurement and return the results record (see `write`)."""
    from mammoseg.core.runtime import environment

    models = [bench_or_skip(v, size, options) for v in options.variants for size in sorted(set(options.image_sizes))]
    result: dict[str, Any] = {
        "format_version": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "environment": environment(),
        "environment_variables": {k: os.environ[k] for k in SPEED_VARIABLES if k in os.environ},
        "models": models,
        "scaling": scaling(models),
        "comparisons": compare_pairs(options) if options.compare else {"skipped": "no --compare given"},
        "pipeline": bench_pipeline(options) if options.data else {"skipped": "no --data given"},
        "prepare": bench_prepare(options) if options.dicom_dir else {"skipped": "no --dicom-dir given"},
    }
    return result


def write(path: str | Path, result: dict[str, Any]) -> None:
    """The results record as JSON, atomically."""
    from mammoseg.core.atomic import write_json

    write_json(path, result)
