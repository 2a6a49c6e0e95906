"""The callback that records a training run epoch by epoch, in the crash-safe order of `mammoseg.training.train`:
history, timing, previews and the best checkpoint, then state.json, then last.keras (the commit point)."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import keras
import numpy as np

from mammoseg.core.stopping import stop_requested
from mammoseg.runs.rundir import RunDir
from mammoseg.training.config import TrainConfig
from mammoseg.training.previews import write_previews

logger = logging.getLogger("mammoseg.training")


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
        self.run.write_timing(_timing_summary(self.timing, self.train_images))
        write_previews(self.run, self.model, self.previews, epoch + 1)
        if math.isfinite(row["val_loss"]) and row["val_loss"] < self.best:
            self.best, self.best_epoch = row["val_loss"], epoch + 1
            self.run.save_model(self.model, "best")
        self.run.write_state(status="running", epochs_done=epoch + 1, best_epoch=self.best_epoch,
                             best_val_loss=self.best if math.isfinite(self.best) else None)
        self.run.save_model(self.model, "last")
        logger.info("epoch %d/%d  loss %.4f  val_loss %.4f  val_pixel_f1 %.3f  val_negative_fp_rate %.3f  %.1fs",
                    epoch + 1, self.config.epochs, row["loss"], row["val_loss"], row.get("val_pixel_f1", math.nan),
                    row.get("val_negative_fp_rate", math.nan), seconds)


class StopRequested(Exception):
    """Raised out of `model.fit` by `StopOnRequest`; the training loop turns it into `RunStopped`."""


class StopOnRequest(keras.callbacks.Callback):
    """Ends training at the first batch boundary after a stop signal (`mammoseg.core.stopping`), before the
    epoch's results are recorded: the run keeps its last finished epoch, which resumes exactly."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if stop_requested():
            raise StopRequested(stop_requested())


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
