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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mammoseg.core.errors import MammosegError

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

    def shard_by_data(self, dataset: Any) -> Any:
        """Under TensorFlow multi-worker, split each global batch across the workers (DATA sharding)
        instead of giving each worker whole shard files: a dataset may have fewer files than there are
        workers, and this way step k of every worker sees the part of global batch k a single process
        would, so the run keeps its data order whatever the worker count."""
        if self.backend != "tensorflow" or self.kind != "multi-worker":
            return dataset
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return dataset.with_options(options)

    def adapt_model(self, model: Any) -> None:
        """Make a compiled model train under this TensorFlow strategy as on a single device at the same
        global batch, and let Keras' `fit` run under multi-worker, which Keras 3 breaks in two places
        (keras-team/keras#20585).

        BatchNorm takes its batch statistics over the global batch, not each replica's part (the layers'
        saved config keeps `synchronized` false, so a checkpoint loads anywhere). Before its first step
        Keras all-reduces an input batch only to learn its shapes and dtypes, and
        MultiWorkerMirroredStrategy cannot reduce a nested batch ("Attempt to convert a value (PerReplica
        ...)"): this worker's own part has the same structure and dtypes, all that build needs. The
        second break is mended by `_average_scalars_across_workers`.
        """
        if self.strategy is None:
            return
        import keras
        import tensorflow as tf

        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
                layer.get_config = _unsynchronized_config(layer)
        if self.kind != "multi-worker":
            return
        _average_scalars_across_workers()
        strategy = self.strategy

        def local(value: Any) -> Any:
            if isinstance(value, tf.distribute.DistributedValues):
                return strategy.experimental_local_results(value)[0]
            return value

        def build_from_local_batch(iterator: Any = None, data_batch: Any = None) -> None:
            if iterator is not None:
                for _, _, batches in iterator:
                    data_batch = keras.tree.map_structure(local, next(batches))
                    break
            with strategy.scope():
                model._symbolic_build(data_batch=data_batch)

        model._maybe_symbolic_build = build_from_local_batch

    def lost_peer(self, exc: BaseException) -> str | None:
        """What happened, when `exc` says another worker of a multi-worker cluster died or is unreachable
        (its collectives abort on this worker, gRPC having seen the connection drop); else None."""
        if self.backend != "tensorflow" or self.kind != "multi-worker":
            return None
        import tensorflow as tf

        if not isinstance(exc, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                                tf.errors.CancelledError, tf.errors.AbortedError)):
            return None
        detail = next((line.strip() for line in str(exc).splitlines() if "aborted" in line.lower()), "")
        return f"another worker stopped or cannot be reached ({type(exc).__name__}{': ' + detail[:200] if detail else ''})"

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
            try:
                strategy = tf.distribute.MultiWorkerMirroredStrategy()
            except RuntimeError as exc:  # "Collective ops must be configured at program startup"
                raise MammosegError(f"--distribute multi-worker: {exc}; in this process TensorFlow ran before the "
                                    "training started (train must be the first TensorFlow work of a process)") from exc
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


def _unsynchronized_config(layer: Any) -> Callable[[], dict[str, Any]]:
    def get_config() -> dict[str, Any]:
        return {**type(layer).get_config(layer), "synchronized": False}

    return get_config


def _average_scalars_across_workers() -> None:
    """Keras averages a step's losses and metrics over the workers with `strategy.reduce(MEAN, v, axis=0)`,
    which fails on a scalar ("Invalid reduction dimension 0 for input with 0 dimensions"): reduce scalars
    over the workers alone (axis None). Installed once per process, only under multi-worker training."""
    import keras
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "averages_scalars", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str = "auto") -> Any:
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return keras.tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=0 if v.shape.rank else None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.averages_scalars = True  # type: ignore[attr-defined]
    trainer.reduce_per_replica = reduce_per_replica


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
