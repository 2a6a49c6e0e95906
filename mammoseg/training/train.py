"""Training one variant into a run folder, the author's way (docs/design.md §2), and resuming it.

One `model.fit` call per epoch, each on a dataset seeded by (seed, epoch): the data order and the
augmentations of an epoch do not depend on whether the process was restarted before it. Dropout's
random state is re-keyed the same way at each epoch start, the learning rate is a function of the
absolute epoch index, and the optimizer state travels in `last.keras`. So in deterministic mode a run
killed at any moment and resumed ends with the same weights as one that never stopped.

Order of writes at the end of an epoch: history/timing/previews/best, then state.json, then last.keras.
`last.keras` is the commit point: on resume its optimizer step count says how many epochs it holds,
and any history row beyond that is dropped and recomputed.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mammoseg.core.errors import InputError, MammosegError
from mammoseg.core.stopping import stop_requested, stop_signals_caught
from mammoseg.runs.rundir import RunDir, resolve_run_dir, resolve_runs_dir, run_name
from mammoseg.training.config import TRAIN_KEYS, TrainConfig, auto_precision, build_config
from mammoseg.training.previews import select_previews, write_preview_inputs, write_previews

logger = logging.getLogger("mammoseg.training")

STOP_ENV = "MAMMOSEG_STOP_AFTER_EPOCH"
"""Test hook: stop (as if killed) right after this many epochs are finished and saved."""

RESUMABLE_KEYS = ("epochs",)
"""Options a resumed run may change: only extending it; anything else would make it a different run."""


class RunInterrupted(MammosegError):
    """Training stopped before its last epoch; `--resume` continues it."""


class RunStopped(RunInterrupted):
    """A stop signal (a scheduler's warning before a time limit, a preemption) arrived: the run stopped at
    a batch boundary and keeps its last finished epoch; resuming it ends as if it had never stopped."""


class WorkerLost(RunInterrupted):
    """Multi-worker training lost a worker; every worker continues with `--resume`."""


class TrainingDiverged(MammosegError):
    """The loss became NaN or infinite."""


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of one epoch: a pure function of the run seed and the absolute epoch index."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**31 - 1)


def train(config: TrainConfig, runs_dir: str | Path, *, stop_after_epoch: int | None = None) -> RunDir:
    """Start a new run; refuses a folder that already holds one (use `resume`)."""
    config.run_name = config.run_name or run_name(config.variant, config.seed)
    return _start(resolve_run_dir(runs_dir, config.run_name), config, stop_after_epoch)


def train_or_resume(values: dict[str, Any], source: str | Path, *, runs_dir: str | Path | None = None,
                    resume_from: str | None = None, given: dict[str, Any] | None = None) -> RunDir:
    """`mammoseg train`: a new run from the merged options `values`, or with `resume_from` ("" for the run
    named by the options) the continuation of one; `given` are the options typed on the command line."""
    root = resolve_runs_dir(runs_dir, values.pop("runs_dir", None))
    if resume_from is None:
        return train(build_config(values, source), root)
    if resume_from:
        run_path = Path(resume_from)
    else:
        run_path = root / (values.get("run_name") or run_name(values["variant"], build_config(values).seed))
    started = RunDir(run_path).exists() or not (values.get("variant") and values.get("data"))
    fresh = None if started else build_config(values | {"run_name": values.get("run_name") or run_path.name}, source)
    return resume(run_path, given, fresh=fresh)


def _start(run: RunDir, config: TrainConfig, stop_after_epoch: int | None) -> RunDir:
    from mammoseg.training.distribute import worker_subfolder

    sub = worker_subfolder(config.distribute)
    if sub:
        run = RunDir(run.path / sub)
    if run.exists():
        status = run.state().get("status", "unknown")
        raise InputError(run.path, f"a run already exists here ({status}); "
                                   "continue it with --resume or choose another --run-name")
    with run.lock():
        return _train(run, config, resume=False, stop_after_epoch=stop_after_epoch)


def resume(run_path: str | Path, overrides: dict[str, Any] | None = None, *,
           stop_after_epoch: int | None = None, fresh: TrainConfig | None = None) -> RunDir:
    """Continue an unfinished run from its last finished epoch with its own config.

    `overrides` are options the user gave explicitly; only `epochs` may differ from the saved config.
    A run killed before it wrote config.json finished no epoch: it starts again from `fresh` (the
    options given with --resume), or an error says which options are needed.
    """
    run = RunDir(run_path)
    if not run.exists() and run.path.is_dir():
        if fresh is None:
            raise InputError(run.path, "the run stopped before it wrote config.json, so its options are unknown: "
                                       "give them with --resume (--variant, --data, ...) to start it again")
        fresh.run_name = fresh.run_name or run.path.name
        logger.info("%s: stopped before its first epoch; starting it again", run.path)
        return _start(run, fresh, stop_after_epoch)
    saved = {"loss_normalization": "weights", **run.config()}  # runs from before the key kept Σ w·CE / Σ w
    config = build_config({k: saved.get(k) for k in TRAIN_KEYS}, run.config_file)
    for key, value in (overrides or {}).items():
        if value is None or key not in TRAIN_KEYS or value == getattr(config, key):
            continue
        if key not in RESUMABLE_KEYS:
            option = "--" + key.replace("_", "-")
            raise InputError(run.path, f"{option} {value} differs from the run's {getattr(config, key)}; "
                                       "a resumed run keeps its config (only --epochs may be raised)")
        setattr(config, key, value)
    if run.is_finished() and config.epochs <= run.state().get("epochs_done", 0):
        logger.info("%s: already finished (%d epochs)", run.path, run.state()["epochs_done"])
        return run
    from mammoseg.training.distribute import worker_subfolder

    sub = worker_subfolder(config.distribute)
    writer = RunDir(run.path / sub) if sub else run
    with writer.lock():
        return _train(writer, config, resume=True, stop_after_epoch=stop_after_epoch, checkpoint=run.last)


# --------------------------------------------------------------------------- set-up


def _resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    from mammoseg.core.runtime import gpu_compute_capabilities

    return auto_precision(gpu_compute_capabilities())


def _seed_everything(config: TrainConfig) -> None:
    import keras

    keras.utils.set_random_seed(config.seed)
    if config.deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _encoder_source(ref: str, runs_dir: Path) -> Path:
    """A run folder (its best, else last, checkpoint) or a .keras file; also looked up under runs_dir."""
    for candidate in (Path(ref), runs_dir / ref):
        if candidate.is_file() and candidate.suffix == ".keras":
            return candidate
        found = RunDir(candidate).any_checkpoint()
        if found is not None:
            return found
    raise InputError(ref, "no run with a checkpoint (best.keras or last.keras) and no .keras file here")


def transfer_encoder(model: Any, source: Path, freeze: bool) -> list[str]:
    """Copy the encoder's layers (conv1 … conv5.1 and their BN) by name from `source`; optionally freeze them."""
    from mammoseg.models import encoder_layer_names
    from mammoseg.models.saving import load_model

    donor = load_model(source)
    names = encoder_layer_names(model)
    donor_names = {layer.name for layer in donor.layers}
    missing = [n for n in names if n not in donor_names]
    if missing:
        raise InputError(source, f"lacks encoder layers {', '.join(missing)}")
    for name in names:
        target, weights = model.get_layer(name), donor.get_layer(name).get_weights()
        shapes = [w.shape for w in target.get_weights()]
        if shapes != [w.shape for w in weights]:
            raise InputError(source, f"layer {name} has shapes {[w.shape for w in weights]}, this model {shapes} "
                                     "(different width?)")
        target.set_weights(weights)
        if freeze:
            target.trainable = False
    logger.info("encoder: %d layers from %s%s", len(names), source, " (frozen)" if freeze else "")
    return names


def _compile(model: Any, config: TrainConfig, optimizer: Any = None) -> None:
    import keras

    from mammoseg.training.loss import WeightedPixelCrossEntropy, validation_metrics

    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=WeightedPixelCrossEntropy(config.positive_weight, config.loss_normalization),
        metrics=validation_metrics(),
        jit_compile=config.jit_compile,
    )
    if not model.optimizer.built:
        # Built here rather than lazily inside the first step: otherwise TensorFlow traces the train
        # step twice (variables created during tracing), which doubles the first epoch's cost.
        model.optimizer.build(model.trainable_variables)


# --------------------------------------------------------------------------- the run


@dataclass
class _Data:
    """What a run needs to know of its dataset before it builds anything."""

    info: dict[str, Any]
    dataset_size: int
    n_train: int
    n_val: int
    steps_per_epoch: int


def _read_data(config: TrainConfig) -> _Data:
    """The dataset's size and split counts; resolves the run's image size and precision from them."""
    from mammoseg.dataset.pipeline import read_dataset_info, read_manifest

    info = read_dataset_info(config.data)
    config.image_size = config.image_size or info["image_size"]
    config.precision = _resolve_precision(config.precision)
    manifest = read_manifest(config.data)
    n_train = int((manifest["split"] == "train").sum())
    n_val = int((manifest["split"] == "val").sum())
    if n_train == 0 or n_val == 0:
        raise InputError(Path(config.data) / "manifest.csv",
                         f"needs train and val examples (has {n_train} and {n_val})")
    return _Data(info, info["image_size"], n_train, n_val, math.ceil(n_train / config.batch_size))


def _model(run: RunDir, config: TrainConfig, dist: Any, checkpoint: Path | None,
           steps_per_epoch: int) -> tuple[Any, int]:
    """The compiled network and the epochs it holds: restored from `checkpoint` when one is given and
    exists, else built new (with a transferred encoder if asked)."""
    import keras

    from mammoseg.models import build_model
    from mammoseg.models.saving import load_model

    with dist.scope():
        if checkpoint is not None and checkpoint.is_file():
            model = load_model(checkpoint, compile=True)
            optimizer = model.optimizer
            _compile(model, config, optimizer)
            epochs_done = int(keras.ops.convert_to_numpy(optimizer.iterations)) // steps_per_epoch
        else:
            try:
                model = build_model(config.variant, image_size=config.image_size, width=config.width,
                                    transpose_kernel=config.transpose_kernel, dropout=config.dropout, l2=config.l2)
            except ValueError as exc:
                raise InputError(config.data, str(exc)) from exc
            if config.init_encoder_from:
                transfer_encoder(model, _encoder_source(config.init_encoder_from, run.path.parent),
                                 config.freeze_encoder)
            _compile(model, config)
            epochs_done = 0
        dist.adapt_model(model)
    return model, epochs_done


def _record_start(run: RunDir, config: TrainConfig, model: Any, dist: Any, data: _Data,
                  previews: dict[str, np.ndarray]) -> None:
    """A new run's first files: the previews and checkerboard scores at initialisation, then config.json."""
    from mammoseg.core import runtime
    from mammoseg.models import count_flops, get_spec
    from mammoseg.models.probes import checkerboard_scores

    write_previews(run, model, previews, 0)
    write_preview_inputs(run, previews)
    run.write_checkerboard_init(checkerboard_scores(model, get_spec(config.variant).probe_step))
    run.write_config({
        **config.to_dict(),
        "jit_compile": bool(model.jit_compile),
        "jit_compile_requested": config.jit_compile,
        "format_version": 1,
        "run_name": config.run_name,
        "dataset": {"path": str(Path(config.data).resolve()), "image_size": data.dataset_size,
                    "train_images": data.n_train, "val_images": data.n_val, "counts": data.info.get("counts", {})},
        "steps_per_epoch": data.steps_per_epoch,
        "preview_ids": previews["example_id"].tolist(),
        "distribution": dist.describe(),
        "params": int(model.count_params()),
        "trainable_params": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        "flops": int(count_flops(model)),
        "environment": runtime.environment(),
        "command": " ".join(sys.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def _restored_log(run: RunDir, config: TrainConfig, model: Any, dist: Any, resume: bool,
                  epochs_done: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """History rows and per-epoch timings of the epochs the checkpoint holds (none for a new run)."""
    import keras

    from mammoseg.core.runtime import list_devices

    history = [r for r in run.read_history() if r.get("epoch", 0) <= epochs_done] if resume else []
    saved = run.timing()
    timing: dict[str, Any] = {k: list(saved.get(k, []))[:epochs_done]
                              for k in ("seconds_per_epoch", "train_seconds_per_epoch")}
    timing.update(backend=keras.backend.backend(), precision=config.precision, jit_compile=bool(model.jit_compile),
                  batch_size=config.batch_size, replicas=dist.replicas, devices=list_devices())
    if resume:
        logger.info("%s: resuming after epoch %d of %d", run.path, epochs_done, config.epochs)
        run.write_history(history)
    return history, timing


def _train(run: RunDir, config: TrainConfig, *, resume: bool, stop_after_epoch: int | None,
           checkpoint: Path | None = None) -> RunDir:
    """Train into `run`; on resume start from `checkpoint` (the run's last.keras; the chief's for a worker)."""
    import keras

    from mammoseg.dataset.pipeline import make_dataset, resize_batches
    from mammoseg.training import loss  # noqa: F401  registers the loss and metrics a checkpoint names, for resume
    from mammoseg.training.callbacks import EpochRecorder, StopOnRequest
    from mammoseg.training.distribute import make_distribution

    if stop_after_epoch is None and os.environ.get(STOP_ENV):
        stop_after_epoch = int(os.environ[STOP_ENV])
    keras.backend.clear_session()
    # First of all: multi-worker collectives can only be configured before TensorFlow's runtime starts
    # (listing logical devices, as precision "auto" does, starts it).
    dist = make_distribution(config.distribute)
    try:
        data = _read_data(config)
        keras.mixed_precision.set_dtype_policy(config.precision)
        _seed_everything(config)
        model, epochs_done = _model(run, config, dist, (checkpoint or run.last) if resume else None,
                                    data.steps_per_epoch)
        previews = select_previews(config.data, config.image_size, data.dataset_size)
        if not resume or not run.exists():
            _record_start(run, config, model, dist, data, previews)
        elif config.epochs != run.config().get("epochs"):
            run.write_config(run.config() | {"epochs": config.epochs})
        history, timing = _restored_log(run, config, model, dist, resume, epochs_done)
        run.write_state(status="running", epochs_done=epochs_done, epochs=config.epochs, pid=os.getpid())

        recorder = EpochRecorder(run, config, history, timing, previews, data.n_train)
        callbacks = [keras.callbacks.LearningRateScheduler(config.learning_rate_at), keras.callbacks.TerminateOnNaN(),
                     recorder, StopOnRequest(), *_tensorboard(run)]
        val_ds = dist.shard_by_data(resize_batches(
            make_dataset(config.data, "val", batch_size=config.batch_size, deterministic=config.deterministic,
                         cache=data.n_val * data.dataset_size**2 * 2 < 2**30),
            config.image_size, data.dataset_size))
        try:
            with stop_signals_caught():
                _fit_epochs(model, config, run, dist, recorder, callbacks, val_ds, epochs_done, data.dataset_size,
                            data.steps_per_epoch, stop_after_epoch)
        except Exception as exc:
            lost = dist.lost_peer(exc)
            if lost is None:
                raise
            raise WorkerLost(f"{run.path}: {lost}; the run keeps its last finished epoch "
                             f"({run.state().get('epochs_done', 0)}): start every worker again with --resume") from None
        run.write_state(status="finished", epochs_done=config.epochs, best_epoch=recorder.best_epoch,
                        best_val_loss=recorder.best if math.isfinite(recorder.best) else None, error=None)
        logger.info("%s: finished %d epochs (best epoch %d)", run.path, config.epochs, recorder.best_epoch)
        return run
    finally:
        dist.close()


def _fit_epochs(model: Any, config: TrainConfig, run: RunDir, dist: Any, recorder: Any, callbacks: list[Any],
                val_ds: Any, epochs_done: int, dataset_size: int, steps_per_epoch: int,
                stop_after_epoch: int | None) -> None:
    """One `model.fit` per remaining epoch, on that epoch's seeded dataset (see the module docstring). A stop
    signal ends it at the next batch: the unfinished epoch is dropped, so the run resumes exactly."""
    from mammoseg.dataset.pipeline import Augmentation, make_dataset, resize_batches
    from mammoseg.training.callbacks import StopRequested

    augment = Augmentation(flips=config.flips)
    for epoch in range(epochs_done, config.epochs):
        if stop_requested():
            raise RunStopped(f"{run.path}: stopped by {stop_requested()} after epoch {epoch} of {config.epochs}, "
                             "its last checkpoint; continue with --resume (ablate resumes it by itself)")
        train_ds = make_dataset(config.data, "train", batch_size=config.batch_size, shuffle=True, augment=augment, random_tiles=True,
                                seed=epoch_seed(config.seed, epoch), deterministic=config.deterministic)
        train_ds = dist.shard_by_data(resize_batches(train_ds, config.image_size, dataset_size))
        with warnings.catch_warnings():
            # Each epoch's dataset ends after exactly steps_per_epoch batches, by design.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            try:
                model.fit(train_ds, epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=steps_per_epoch,
                          validation_data=val_ds, callbacks=callbacks, shuffle=False, verbose=0)
            except StopRequested:
                raise RunStopped(f"{run.path}: stopped by {stop_requested()} during epoch {epoch + 1} of "
                                 f"{config.epochs}; it keeps epoch {epoch}, its last checkpoint: continue with "
                                 "--resume (ablate resumes it by itself)") from None
        if recorder.diverged_epoch is not None:
            message = (f"{run.path}: the loss became NaN or infinite in epoch {recorder.diverged_epoch}; "
                       f"the last good checkpoint (epoch {epoch}) is kept in last.keras. "
                       "Try a lower --learning-rate or --precision float32.")
            run.write_state(status="failed", error=message)
            raise TrainingDiverged(message)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < config.epochs:
            raise RunInterrupted(f"{run.path}: stopped after epoch {epoch + 1} ({STOP_ENV}); "
                                 "continue with --resume")


def _tensorboard(run: RunDir) -> list[Any]:
    """Keras' TensorBoard callback; it writes through TensorFlow's summary ops, so a host without
    TensorFlow (a JAX-only GPU machine) trains without event files and says so."""
    import importlib.util

    import keras

    if importlib.util.find_spec("tensorflow") is None:
        logger.warning("no TensorBoard logs: TensorFlow is not installed")
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(run.tensorboard), write_graph=False, profile_batch=0)]
