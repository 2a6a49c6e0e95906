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
from pathlib import Path
from typing import Any

import numpy as np

from mammoseg.core.conventions import abnormal_probability, logit_margin
from mammoseg.core.errors import InputError, MammosegError
from mammoseg.training.config import TRAIN_KEYS, TrainConfig, build_config
from mammoseg.runs.rundir import RunDir, resolve_run_dir

logger = logging.getLogger("mammoseg.training")

STOP_ENV = "MAMMOSEG_STOP_AFTER_EPOCH"
"""Test hook: stop (as if killed) right after this many epochs are finished and saved."""

PREVIEWS_PER_KIND = 2
RESUMABLE_KEYS = ("epochs",)
"""Options a resumed run may change: only extending it; anything else would make it a different run."""


class RunInterrupted(MammosegError):
    """Training stopped before its last epoch; `--resume` continues it."""


class WorkerLost(RunInterrupted):
    """Multi-worker training lost a worker; every worker continues with `--resume`."""


class TrainingDiverged(MammosegError):
    """The loss became NaN or infinite."""


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of one epoch: a pure function of the run seed and the absolute epoch index."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**31 - 1)


def default_run_name(config: TrainConfig) -> str:
    return f"{config.variant}-seed{config.seed}"


def train(config: TrainConfig, runs_dir: str | Path, *, stop_after_epoch: int | None = None) -> RunDir:
    """Start a new run; refuses a folder that already holds one (use `resume`)."""
    config.run_name = config.run_name or default_run_name(config)
    return _start(resolve_run_dir(runs_dir, config.run_name), config, stop_after_epoch)


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
    config = build_config({k: saved.get(k) for k in TRAIN_KEYS}, run.path / "config.json")
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
    from mammoseg.core.runtime import list_devices

    return "mixed_bfloat16" if any(d.lower().startswith("gpu") for d in list_devices()) else "float32"


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
        for name in ("best.keras", "last.keras"):
            if (candidate / name).is_file():
                return candidate / name
    raise InputError(ref, "no run with a checkpoint (best.keras or last.keras) and no .keras file here")


def transfer_encoder(model: Any, source: Path, freeze: bool) -> list[str]:
    """Copy the encoder's layers (conv1 … conv5.1 and their BN) by name from `source`; optionally freeze them."""
    import keras

    from mammoseg.models import encoder_layer_names

    try:
        donor = keras.saving.load_model(source, compile=False)
    except Exception as exc:  # a corrupt or foreign file: say which
        raise InputError(source, f"cannot load the model ({exc})") from exc
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


def _select_previews(dataset: str, size: int, dataset_size: int) -> dict[str, np.ndarray]:
    """The fixed validation images shown every epoch: the first positives and negatives in shard order."""
    from mammoseg.dataset.pipeline import make_dataset, resize_batches

    ds = make_dataset(dataset, "val", batch_size=8, with_metadata=True, deterministic=True)
    ds = resize_batches(ds, size, dataset_size, with_metadata=True)
    picked: dict[str, list] = {"positive": [], "negative": []}
    rows: list[tuple[str, np.ndarray, np.ndarray]] = []
    for batch in ds:
        for i in range(len(batch["example_id"])):
            mask = batch["mask"][i].numpy()
            group = "positive" if mask.any() else "negative"
            if len(picked[group]) < PREVIEWS_PER_KIND:
                picked[group].append(i)
                rows.append((batch["example_id"][i].numpy().decode(), batch["image"][i].numpy(), mask))
        if all(len(v) >= PREVIEWS_PER_KIND for v in picked.values()):
            break
    return {
        "example_id": np.array([r[0] for r in rows]),
        "image": np.stack([r[1] for r in rows]) if rows else np.zeros((0, size, size, 1), np.float32),
        "mask": np.stack([r[2] for r in rows]) if rows else np.zeros((0, size, size, 1), np.float32),
    }


def _logit_margin(model: Any, images: np.ndarray) -> np.ndarray:
    """l1 − l0 [N, S, S] in float64: P(abnormal) = sigmoid(margin), without float32's rounding near 0.5."""
    if len(images) == 0:
        return np.zeros((0,) + images.shape[1:3], np.float64)
    return logit_margin(model.predict_on_batch(images))


def _png(path: Path, array: np.ndarray) -> None:
    import cv2

    from mammoseg.core.atomic import write_bytes

    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise MammosegError(f"{path}: PNG encoding failed")
    write_bytes(path, data.tobytes())


def write_previews(run: RunDir, model: Any, previews: dict[str, np.ndarray], epoch: int) -> np.ndarray:
    """previews/epoch_NNN/<id>_soft.png (P(abnormal) x 255) and _hard.png (argmax); returns the logit margins."""
    margin = _logit_margin(model, previews["image"])
    prob = abnormal_probability(margin)
    folder = run.path / "previews" / f"epoch_{epoch:03d}"
    for example_id, p in zip(previews["example_id"], prob):
        _png(folder / f"{example_id}_soft.png", np.clip(np.rint(p * 255), 0, 255).astype(np.uint8))
        _png(folder / f"{example_id}_hard.png", np.where(p > 0.5, 255, 0).astype(np.uint8))
    return margin


def write_preview_inputs(run: RunDir, previews: dict[str, np.ndarray]) -> None:
    from mammoseg.dataset.pipeline import denormalize

    folder = run.path / "previews" / "inputs"
    for example_id, image, mask in zip(previews["example_id"], previews["image"], previews["mask"]):
        _png(folder / f"{example_id}_image.png", denormalize(image[..., 0]))
        _png(folder / f"{example_id}_mask.png", np.where(mask[..., 0] > 0.5, 255, 0).astype(np.uint8))


def checkerboard_at_init(model: Any, margin: np.ndarray) -> dict[str, Any]:
    """Kernel scores of the transposed layers and the output maps' scores, before any training.

    The maps measured are the logit margins l1 − l0, not P(abnormal): at initialisation a narrow network's
    logits can be ~1e-9, where float32 probabilities are all exactly 0.5 and would score a false zero.
    Near P = 0.5 the sigmoid is linear and both measures are scale-free, so the two agree wherever the
    probabilities are resolvable.
    """
    from mammoseg.metrics import checkerboard
    from mammoseg.models.kernels import model_kernel_overlap, model_kernel_scores

    # The measures are scale-free; normalising keeps tiny margins above their absolute flatness cut-offs.
    maps = [checkerboard.map_scores(m / max(float(np.abs(m).max()), 1e-300)) for m in margin]
    return {
        "kernel": model_kernel_scores(model),
        "overlap": model_kernel_overlap(model),
        "map": {key: float(np.mean([m[key] for m in maps])) for key in (maps[0] if maps else {})},
        "map_of": "logit margin l1 - l0 of the preview images (a monotone map of P(abnormal))",
        "n_images": len(maps),
    }


# --------------------------------------------------------------------------- the epoch recorder


def _recorder_class() -> type:
    import keras

    class EpochRecorder(keras.callbacks.Callback):
        """Writes everything an epoch produces, in the crash-safe order described in the module docstring."""

        def __init__(self, run: RunDir, config: TrainConfig, history: list[dict], timing: dict,
                     previews: dict[str, np.ndarray], train_images: int) -> None:
            super().__init__()
            self.run, self.config, self.history, self.timing = run, config, history, timing
            self.previews, self.train_images = previews, train_images
            self.diverged_epoch: int | None = None
            finite = [r["val_loss"] for r in history
                      if isinstance(r.get("val_loss"), float) and math.isfinite(r["val_loss"])]
            self.best = min(finite) if finite else math.inf
            self.best_epoch = next((r["epoch"] for r in history if r.get("val_loss") == self.best), 0)

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.t0 = time.perf_counter()
            self.t_train = None
            _rekey_dropout(self.model, self.config.seed, epoch)

        def on_test_begin(self, logs: dict | None = None) -> None:
            if self.t_train is None and hasattr(self, "t0"):
                self.t_train = time.perf_counter() - self.t0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = dict(logs or {})
            seconds = time.perf_counter() - self.t0
            train_seconds = self.t_train if self.t_train is not None else seconds
            if not math.isfinite(float(logs.get("loss", math.nan))) or self.model.stop_training:
                self.diverged_epoch = epoch + 1
                self.model.stop_training = True
                return
            row = {"epoch": epoch + 1, "loss": float(logs.pop("loss")),
                   "val_loss": float(logs.pop("val_loss", math.nan)), "lr": self.config.learning_rate_at(epoch),
                   "seconds": round(seconds, 3), "train_seconds": round(train_seconds, 3)}
            row.update({k: float(v) for k, v in sorted(logs.items()) if k != "learning_rate"})
            self.history.append(row)
            self.timing.setdefault("seconds_per_epoch", []).append(round(seconds, 3))
            self.timing.setdefault("train_seconds_per_epoch", []).append(round(train_seconds, 3))
            self.run.write_history(self.history)
            self.run.write_json("timing.json", _timing_summary(self.timing, self.train_images))
            write_previews(self.run, self.model, self.previews, epoch + 1)
            if math.isfinite(row["val_loss"]) and row["val_loss"] < self.best:
                self.best, self.best_epoch = row["val_loss"], epoch + 1
                self.run.save_model(self.model, self.run.best)
            self.run.write_state(status="running", epochs_done=epoch + 1, best_epoch=self.best_epoch,
                                 best_val_loss=self.best if math.isfinite(self.best) else None)
            self.run.save_model(self.model, self.run.last)
            logger.info("epoch %d/%d  loss %.4f  val_loss %.4f  val_pixel_f1 %.3f  val_negative_fp_rate %.3f  %.1fs",
                        epoch + 1, self.config.epochs, row["loss"], row["val_loss"], row.get("val_pixel_f1", math.nan),
                        row.get("val_negative_fp_rate", math.nan), seconds)

    return EpochRecorder


def _rekey_dropout(model: Any, seed: int, epoch: int) -> None:
    """Set every random-seed state (dropout) from (seed, epoch): checkpoints don't carry it, resumes must match."""
    for i, variable in enumerate(v for v in model.variables if v.name == "seed_generator_state"):
        value = np.array([(seed * 7919 + 104729 * i) % (2**31 - 1), epoch << 20], dtype=variable.dtype)
        variable.assign(value)


def _timing_summary(timing: dict, train_images: int) -> dict[str, Any]:
    """Seconds per epoch and training throughput; the first epoch (tracing, compilation) is left out of
    the throughput when later epochs exist."""
    train_seconds = timing.get("train_seconds_per_epoch", [])
    steady = train_seconds[1:] or train_seconds
    out = dict(timing)
    seconds = timing.get("seconds_per_epoch", [])
    out["mean_seconds_per_epoch"] = float(np.mean(seconds)) if seconds else None
    out["train_images_per_epoch"] = train_images
    out["train_images_per_second"] = train_images / float(np.mean(steady)) if steady else None
    out["throughput_excludes_first_epoch"] = len(train_seconds) > 1
    return out


# --------------------------------------------------------------------------- the run


def _train(run: RunDir, config: TrainConfig, *, resume: bool, stop_after_epoch: int | None,
           checkpoint: Path | None = None) -> RunDir:
    """Train into `run`; on resume start from `checkpoint` (the run's last.keras; the chief's for a worker)."""
    import keras

    from mammoseg.core import runtime
    from mammoseg.dataset.pipeline import make_dataset, read_dataset_info, read_manifest, resize_batches
    from mammoseg.models import build_model, count_flops
    from mammoseg.training import loss  # noqa: F401  registers the loss and metrics a checkpoint names, for resume
    from mammoseg.training.distribute import make_distribution

    if stop_after_epoch is None and os.environ.get(STOP_ENV):
        stop_after_epoch = int(os.environ[STOP_ENV])
    keras.backend.clear_session()
    # First of all: multi-worker collectives can only be configured before TensorFlow's runtime starts
    # (listing logical devices, as precision "auto" does, starts it).
    dist = make_distribution(config.distribute)
    try:
        info = read_dataset_info(config.data)
        dataset_size = info["image_size"]
        config.image_size = config.image_size or dataset_size
        config.precision = _resolve_precision(config.precision)
        manifest = read_manifest(config.data)
        n_train = int((manifest["split"] == "train").sum())
        n_val = int((manifest["split"] == "val").sum())
        if n_train == 0 or n_val == 0:
            raise InputError(Path(config.data) / "manifest.csv",
                             f"needs train and val examples (has {n_train} and {n_val})")
        steps_per_epoch = math.ceil(n_train / config.batch_size)

        keras.mixed_precision.set_dtype_policy(config.precision)
        _seed_everything(config)
        with dist.scope():
            epochs_done = 0
            checkpoint = checkpoint or run.last
            if resume and checkpoint.is_file():
                model = keras.saving.load_model(checkpoint, compile=True)
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
            dist.adapt_model(model)

        previews = _select_previews(config.data, config.image_size, dataset_size)
        resolved = config.to_dict() | {"jit_compile": bool(model.jit_compile),
                                       "jit_compile_requested": config.jit_compile}
        if not resume or not (run.path / "config.json").is_file():
            margin = write_previews(run, model, previews, 0)
            write_preview_inputs(run, previews)
            run.write_json("checkerboard_init.json", checkerboard_at_init(model, margin))
            run.write_json("config.json", {
                **resolved,
                "format_version": 1,
                "run_name": config.run_name,
                "dataset": {"path": str(Path(config.data).resolve()), "image_size": dataset_size,
                            "train_images": n_train, "val_images": n_val, "counts": info.get("counts", {})},
                "steps_per_epoch": steps_per_epoch,
                "preview_ids": previews["example_id"].tolist(),
                "distribution": dist.describe(),
                "params": int(model.count_params()),
                "trainable_params": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
                "flops": int(count_flops(model)),
                "environment": runtime.environment(),
                "command": " ".join(sys.argv),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            })
        elif config.epochs != run.config().get("epochs"):
            run.write_json("config.json", run.config() | {"epochs": config.epochs})

        history = [r for r in run.read_history() if r.get("epoch", 0) <= epochs_done] if resume else []
        timing_file = run.read_json("timing.json") or {}
        timing = {k: list(timing_file.get(k, []))[:epochs_done]
                  for k in ("seconds_per_epoch", "train_seconds_per_epoch")}
        timing.update(backend=keras.backend.backend(), precision=config.precision, jit_compile=bool(model.jit_compile),
                      batch_size=config.batch_size, replicas=dist.replicas, devices=runtime.list_devices())
        if resume:
            logger.info("%s: resuming after epoch %d of %d", run.path, epochs_done, config.epochs)
            run.write_history(history)
        run.write_state(status="running", epochs_done=epochs_done, epochs=config.epochs, pid=os.getpid())

        recorder = _recorder_class()(run, config, history, timing, previews, n_train)
        callbacks = [
            keras.callbacks.LearningRateScheduler(config.learning_rate_at),
            keras.callbacks.TerminateOnNaN(),
            recorder,
            *_tensorboard(run),
        ]
        val_ds = dist.shard_by_data(resize_batches(
            make_dataset(config.data, "val", batch_size=config.batch_size, deterministic=config.deterministic,
                         cache=n_val * dataset_size**2 * 2 < 2**30),
            config.image_size, dataset_size))
        try:
            _fit_epochs(model, config, run, dist, recorder, callbacks, val_ds, epochs_done, dataset_size,
                        steps_per_epoch, stop_after_epoch)
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
    """One `model.fit` per remaining epoch, on that epoch's seeded dataset (see the module docstring)."""
    from mammoseg.dataset.pipeline import Augmentation, make_dataset, resize_batches

    augment = Augmentation(flips=config.flips)
    for epoch in range(epochs_done, config.epochs):
        train_ds = make_dataset(config.data, "train", batch_size=config.batch_size, shuffle=True, augment=augment,
                                seed=epoch_seed(config.seed, epoch), deterministic=config.deterministic)
        train_ds = dist.shard_by_data(resize_batches(train_ds, config.image_size, dataset_size))
        with warnings.catch_warnings():
            # Each epoch's dataset ends after exactly steps_per_epoch batches, by design.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            model.fit(train_ds, epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=steps_per_epoch,
                      validation_data=val_ds, callbacks=callbacks, shuffle=False, verbose=0)
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
    return [keras.callbacks.TensorBoard(log_dir=str(run.path / "tb"), write_graph=False, profile_batch=0)]
