"""Timing a step and the memory it uses, read from the allocator of the Keras backend in use."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

logger = logging.getLogger("mammoseg.bench")

MemoryUse = tuple[int, int, str]
"""(bytes in use, peak bytes in use, where from) of the backend's allocator."""


def measure(step: Any, warmup: int, steps: int, batch_size: int) -> dict[str, Any]:
    """Time `steps` calls after `warmup` untimed ones (compilation; optimizer state created), and the
    memory they use. Each call returns host values, so it ends when the device is done."""
    for _ in range(max(1, warmup)):
        step()
    reset_peak_memory()
    resident = _memory_in_use()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return {**_rates(seconds, batch_size), **_memory_record(resident, _memory_in_use(), batch_size)}


def _rates(seconds: list[float], batch_size: int) -> dict[str, Any]:
    total = float(np.sum(seconds))
    return {
        "images_per_second": batch_size * len(seconds) / total,
        "step_seconds_median": float(np.median(seconds)),
        "step_seconds_min": float(np.min(seconds)),
        "steps": len(seconds),
        "batch_size": batch_size,
    }


def reset_peak_memory() -> None:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats(_tensorflow_device())
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
    except (RuntimeError, ValueError) as exc:
        logger.debug("cannot reset peak memory statistics: %s", exc)


def _tensorflow_device() -> str:
    import tensorflow as tf

    return "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"


def _memory_in_use() -> MemoryUse | None:
    """Bytes in use and peak of the allocator that holds the model's tensors: TensorFlow's (GPU, or
    its CPU allocator), CUDA's under torch, the accelerator's under JAX (whose peak cannot be reset:
    it is the process's so far). None where the backend keeps no count (torch and JAX on a CPU)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            device = _tensorflow_device()
            info = tf.config.experimental.get_memory_info(device)
            return int(info["current"]), int(info["peak"]), f"TensorFlow allocator, {device}, peak of this measurement"
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            stats = device.memory_stats() if device.platform != "cpu" else None
            if stats and "peak_bytes_in_use" in stats:
                scope = "peak of the process so far (JAX cannot reset it: time one variant per process, sizes ascending)"
                return int(stats["bytes_in_use"]), int(stats["peak_bytes_in_use"]), f"JAX {device.platform}, {scope}"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return int(torch.cuda.memory_allocated()), int(torch.cuda.max_memory_allocated()), "torch CUDA, peak of this measurement"
    except (RuntimeError, ValueError) as exc:
        logger.debug("cannot read memory statistics: %s", exc)
    return None


def _memory_record(resident: MemoryUse | None, after: MemoryUse | None, batch_size: int) -> dict[str, Any]:
    """Peak memory of the timed steps, and per image the part above what stayed resident between
    steps (weights, optimizer state, the input batch): the activations and gradients a batch needs."""
    if resident is None or after is None:
        return {"peak_memory_bytes": None, "resident_memory_bytes": None, "peak_memory_per_image_bytes": None,
                "memory_source": None}  # fmt: skip
    peak = after[1]
    return {
        "peak_memory_bytes": peak,
        "resident_memory_bytes": resident[0],
        "peak_memory_per_image_bytes": max(0, peak - resident[0]) / batch_size,
        "memory_source": after[2],
    }
