"""The author's loss and the per-epoch validation metrics, in backend-agnostic `keras.ops`.

All of these take the model's two-class LOGITS `[B, H, W, 2]` and the binary mask `[B, H, W, 1]`, so
the same code runs under TensorFlow, JAX or torch, inside `model.fit` and under a distribution.
They are registered as serializable so that a checkpoint saved with its compile state (optimizer
included) loads back for `--resume`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mammoseg.core.conventions import author_pixel_threshold
from mammoseg.training.config import LOSS_NORMALIZATIONS


def _labels(y_true: Any) -> Any:
    y = ops.cast(y_true, "float32")
    if len(y.shape) == 4:
        y = y[..., 0]
    return y


def _summed_over_replicas(value: Any) -> Any:
    """`value` summed over the replicas of a TensorFlow distribution strategy (itself without one).

    Each replica sees its part of the global batch and Keras sums the replicas' gradients of a scalar
    loss: dividing each part's Σ w·CE by the whole batch's pixel count (or Σ w) makes that sum the
    global batch's loss, as a single device computes it. (JAX shards one global computation: its sums
    are already global.)"""
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def _predicted_abnormal(y_pred: Any) -> Any:
    """Argmax of the two logits as a float mask: class 1 only when its logit is strictly larger."""
    logits = ops.cast(y_pred, "float32")
    return ops.cast(logits[..., 1] > logits[..., 0], "float32")


@keras.saving.register_keras_serializable(package="mammoseg")
class WeightedPixelCrossEntropy(keras.losses.Loss):
    """Per-pixel two-class softmax cross-entropy, abnormal pixels weighted `positive_weight`.

    `normalization="pixels"` is the author's: Σ wᵢ·CEᵢ / number of pixels. His TF1
    `sparse_softmax_cross_entropy(..., weights=w)` reduces by SUM_BY_NONZERO_WEIGHTS and every weight
    is at least 1, so a batch with more abnormal pixels carries a larger loss (and larger gradients).
    `normalization="weights"` divides by Σ wᵢ instead: a weighted mean whose scale does not move with
    the share of abnormal pixels in the batch — an alternative for comparison, not what he trained.
    The L2 terms come from the layers' regularizers and are added by Keras.
    """

    def __init__(self, positive_weight: float, normalization: str = "pixels", name: str = "weighted_pixel_ce",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        if normalization not in LOSS_NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(LOSS_NORMALIZATIONS)}, got {normalization!r}")
        self.positive_weight = float(positive_weight)
        self.normalization = normalization

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y = _labels(y_true)
        log_p = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        ce = -(y * log_p[..., 1] + (1.0 - y) * log_p[..., 0])
        w = 1.0 + (self.positive_weight - 1.0) * y
        # his reduction divides by the pixel count; the alternative by the summed weights
        total = ops.sum(ops.ones_like(w)) if self.normalization == "pixels" else ops.sum(w)
        return ops.sum(w * ce) / ops.maximum(_summed_over_replicas(total), 1e-12)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(positive_weight=self.positive_weight, normalization=self.normalization)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "WeightedPixelCrossEntropy":
        """Checkpoints saved before `normalization` existed divided by Σ w: they keep doing so."""
        return cls(**{"normalization": "weights", **config})


class _PixelCounts(keras.metrics.Metric):
    """Accumulates the abnormal-class confusion counts over the epoch."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.tp = self.add_variable(shape=(), initializer="zeros", name="tp", dtype="float32")
        self.fp = self.add_variable(shape=(), initializer="zeros", name="fp", dtype="float32")
        self.fn = self.add_variable(shape=(), initializer="zeros", name="fn", dtype="float32")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y = _labels(y_true)
        pred = _predicted_abnormal(y_pred)
        self.tp.assign_add(ops.sum(pred * y))
        self.fp.assign_add(ops.sum(pred * (1.0 - y)))
        self.fn.assign_add(ops.sum((1.0 - pred) * y))

    def reset_state(self) -> None:
        for v in (self.tp, self.fp, self.fn):
            v.assign(0.0)


@keras.saving.register_keras_serializable(package="mammoseg")
class PixelPrecision(_PixelCounts):
    def __init__(self, name: str = "pixel_precision", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def result(self) -> Any:
        return ops.divide_no_nan(self.tp, self.tp + self.fp)


@keras.saving.register_keras_serializable(package="mammoseg")
class PixelRecall(_PixelCounts):
    def __init__(self, name: str = "pixel_recall", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def result(self) -> Any:
        return ops.divide_no_nan(self.tp, self.tp + self.fn)


@keras.saving.register_keras_serializable(package="mammoseg")
class PixelF1(_PixelCounts):
    def __init__(self, name: str = "pixel_f1", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def result(self) -> Any:
        return ops.divide_no_nan(2.0 * self.tp, 2.0 * self.tp + self.fp + self.fn)


@keras.saving.register_keras_serializable(package="mammoseg")
class NegativeImageFalsePositiveRate(keras.metrics.Metric):
    """Share of images without abnormal pixels that the author's rule calls positive (> H·W/750 pixels).

    0 when the epoch saw no negative image.
    """

    def __init__(self, name: str = "negative_fp_rate", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.negatives = self.add_variable(shape=(), initializer="zeros", name="negatives", dtype="float32")
        self.false_positives = self.add_variable(shape=(), initializer="zeros", name="false_positives",
                                                 dtype="float32")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y = _labels(y_true)
        pred = _predicted_abnormal(y_pred)
        height, width = pred.shape[1], pred.shape[2]
        negative = ops.cast(ops.sum(y, axis=(1, 2)) == 0.0, "float32")
        flagged = ops.cast(ops.sum(pred, axis=(1, 2)) > author_pixel_threshold(height, width), "float32")
        self.negatives.assign_add(ops.sum(negative))
        self.false_positives.assign_add(ops.sum(negative * flagged))

    def result(self) -> Any:
        return ops.divide_no_nan(self.false_positives, self.negatives)

    def reset_state(self) -> None:
        self.negatives.assign(0.0)
        self.false_positives.assign(0.0)


def validation_metrics() -> list[keras.metrics.Metric]:
    """The metrics tracked every epoch (history columns `pixel_*`, `negative_fp_rate` and their `val_` forms)."""
    return [PixelPrecision(), PixelRecall(), PixelF1(), NegativeImageFalsePositiveRate()]
