"""Data-parallel training on several devices, on whichever Keras backend is active.

TensorFlow: `tf.distribute.MirroredStrategy` (one host) or `MultiWorkerMirroredStrategy` (TF_CONFIG
describes the workers); the model is built, loaded and compiled inside the strategy's scope and the
dataset's batch is the global batch, split across replicas by Keras. JAX: `keras.distribution.DataParallel`
over all local devices (multi-worker initialises `jax.distributed` from the environment first).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mammoseg.errors import MammosegError

logger = logging.getLogger("mammoseg.training")


@dataclass
class Distribution:
    """What a run executes under: `scope()` to build and compile in, and the replica count it records."""

    kind: str
    backend: str
    replicas: int = 1
    devices: list[str] = field(default_factory=list)
    strategy: Any = None

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        if self.strategy is not None:
            with self.strategy.scope():
                yield
        else:
            yield

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "backend": self.backend, "replicas": self.replicas, "devices": self.devices}

    def close(self) -> None:
        """Undo a global JAX distribution so later runs in the same process start clean."""
        if self.backend == "jax" and self.kind != "none":
            import keras

            keras.distribution.set_distribution(None)


def make_distribution(kind: str) -> Distribution:
    """Set up `kind` (none | mirrored | multi-worker) for the active backend."""
    import keras

    backend = keras.backend.backend()
    if kind == "none":
        return Distribution(kind, backend)
    if backend == "tensorflow":
        import tensorflow as tf

        if kind == "mirrored":
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
            strategy = tf.distribute.MirroredStrategy(devices=devices)
        else:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
            devices = list(strategy.extended.worker_devices)
        logger.info("distribution: %s over %d replica(s) %s", kind, strategy.num_replicas_in_sync, devices)
        return Distribution(kind, backend, strategy.num_replicas_in_sync, devices, strategy)
    if backend == "jax":
        if kind == "multi-worker":
            keras.distribution.initialize()
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        logger.info("distribution: %s (DataParallel) over %d device(s)", kind, len(devices))
        return Distribution(kind, backend, len(devices), [str(d) for d in devices])
    raise MammosegError(f"--distribute {kind} is not supported on the {backend} backend; use tensorflow or jax")


def worker_subfolder(kind: str) -> str | None:
    """Where this process writes under multi-worker training: None for the chief, else a private subfolder.

    Every worker must make the same saves (they run collective ops), but only the chief's may land in
    the run folder; the others write into RUN/.workers/<type>-<index>/ (TensorFlow's TF_CONFIG names the
    task; the chief is the "chief" task, else worker 0).
    """
    if kind != "multi-worker":
        return None
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError as exc:
        raise MammosegError(f"TF_CONFIG is not valid JSON ({exc})") from exc
    task = tf_config.get("task", {})
    task_type, index = task.get("type"), int(task.get("index", 0))
    chief = task_type in (None, "chief") or (task_type == "worker" and index == 0
                                              and "chief" not in tf_config.get("cluster", {}))
    return None if chief else f".workers/{task_type}-{index}"
