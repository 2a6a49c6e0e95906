"""`mammoseg evaluate`: a trained run's checkpoint on one split, streamed batch by batch.

Only per-image rows, fixed-size histograms, a running spectrum sum and a handful of figure examples are
kept, never the probability maps of the whole split. Outputs (docs/design.md §5 conventions, named in the keys):

    RUN/eval/<split>/metrics.json    summary metrics, output-map checkerboard scores, throughput, learning gate
    RUN/eval/<split>/per_image.csv   one row per image
    RUN/eval/<split>/examples.npz    the first EXAMPLES_PER_GROUP positive and negative images with their maps
    RUN/eval/<split>/spectrum.npz    mean radial power spectrum of the probability maps
"""

from __future__ import annotations

import io
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from mammoseg.core.conventions import abnormal_probability, logit_margin
from mammoseg.metrics.metrics import SegmentationAccumulator
from mammoseg.core.atomic import write_bytes, write_json
from mammoseg.core.errors import InputError
from mammoseg.core.progress import Progress

logger = logging.getLogger("mammoseg.evaluate")

EXAMPLES_PER_GROUP = 4
PER_IMAGE_COLUMNS = (
    "example_id", "kind", "patient_id", "positive_fraction", "dice", "iou", "tp", "fp", "fn", "tn",
    "max_prob", "mean_prob", "frac_above_05", "predicted_positive", "phase_mean", "aliasing_fraction",
    "phase_mean_margin",
)  # fmt: skip
SPECTRUM_GROUPS = {"all": "power", "negatives": "power_negative", "positives": "power_positive"}  # group -> npz key
GATE_KEY = "learning_gate"
GATE_RULE = (
    "a run learned when the validation loss of its evaluated checkpoint is below the loss of always predicting "
    "the best constant (the class prior of the validation masks, weighted as the loss weighs abnormal pixels, on "
    "the loss's own scale; the validation loss includes the L2 penalty, which makes the rule stricter) and "
    "at least one abnormal pixel of the positive images is predicted abnormal (P > 0.5)"
)


class _Spectrum:
    """Running sums of radially averaged power spectra, overall and by positive/negative image
    (normal images count in the overall sum only)."""

    def __init__(self) -> None:
        self.freqs: np.ndarray | None = None
        self.sums: dict[str, np.ndarray | None] = {group: None for group in SPECTRUM_GROUPS}
        self.counts = {group: 0 for group in SPECTRUM_GROUPS}

    def add(self, prob: np.ndarray, positive: bool, normal: bool = False) -> None:
        from mammoseg.metrics.checkerboard import radial_power_spectrum

        freqs, power = radial_power_spectrum(prob)
        self.freqs = freqs
        for group in ("all",) if normal else ("all", "positives" if positive else "negatives"):
            self.sums[group] = power.astype(np.float64) if self.sums[group] is None else self.sums[group] + power
            self.counts[group] += 1

    def arrays(self) -> dict[str, np.ndarray]:
        n = 0 if self.freqs is None else len(self.freqs)
        out = {"freqs": self.freqs if self.freqs is not None else np.zeros(0)}
        for group, total in self.sums.items():
            out[SPECTRUM_GROUPS[group]] = total / self.counts[group] if total is not None else np.full(n, np.nan)
            out[f"n_{group}"] = np.array(self.counts[group])
        return out


def evaluate_run(run_dir: str | Path, split: str = "test", checkpoint: str = "best",
                 batch_size: int | None = None, data: str | Path | None = None) -> dict[str, Any]:
    """Evaluate RUN's checkpoint on `split`; writes RUN/eval/<split>/ and returns the metrics."""
    import keras
    import pandas as pd

    from mammoseg.metrics.checkerboard import map_scores, phase_mean_score
    from mammoseg.dataset.pipeline import denormalize, make_dataset, read_dataset_info, read_manifest, resize_batches
    from mammoseg.runs.rundir import RunDir

    run = RunDir(run_dir)
    config = run.config()
    recorded = config.get("dataset")
    if not data and not (isinstance(recorded, dict) and isinstance(recorded.get("path"), str)):
        raise InputError(run.path / "config.json", "no dataset path recorded; give --data")
    dataset = Path(data) if data else Path(recorded["path"])
    info = read_dataset_info(dataset)
    manifest = read_manifest(dataset).set_index("example_id")
    path = run.checkpoint(checkpoint)
    model = run.load_model(checkpoint)
    size = int(model.input_shape[1])
    batch_size = batch_size or int(config.get("batch_size", 16))
    ds = make_dataset(dataset, split, batch_size=batch_size, with_metadata=True, deterministic=True)
    ds = resize_batches(ds, size, info["image_size"], with_metadata=True)
    n_total = int((manifest["split"] == split).sum())

    acc = SegmentationAccumulator()
    spectrum = _Spectrum()
    rows: list[dict[str, Any]] = []
    examples: dict[str, list] = {k: [] for k in ("example_id", "kind", "image", "mask", "prob")}
    picked = {True: 0, False: 0}
    predict_seconds, timed_images, first = 0.0, 0, True
    with Progress(n_total, f"evaluate {run.path.name} on {split}", "img") as bar:
        for batch in ds:
            images = batch["image"].numpy()
            t0 = time.perf_counter()
            logits = model.predict_on_batch(images)
            elapsed = time.perf_counter() - t0
            if not first:  # the first batch pays for tracing/compilation
                predict_seconds += elapsed
                timed_images += len(images)
            first = False
            margins = logit_margin(logits)
            prob = abnormal_probability(margins).astype(np.float32)
            masks = batch["mask"].numpy()[..., 0]
            kinds = [k.decode() for k in batch["kind"].numpy()]
            stats = acc.update(prob, masks, margins, kinds)
            for i, s in enumerate(stats):
                example_id = batch["example_id"][i].numpy().decode()
                meta = manifest.loc[example_id] if example_id in manifest.index else None
                scores = map_scores(prob[i])
                spectrum.add(prob[i], s.positive, s.normal)
                rows.append({
                    "example_id": example_id, "kind": kinds[i],
                    "patient_id": "" if meta is None else meta["patient_id"],
                    "positive_fraction": float(masks[i].mean()),
                    **s.as_row(),
                    "phase_mean": scores["phase_mean"], "aliasing_fraction": scores["aliasing_fraction"],
                    "phase_mean_margin": phase_mean_score(margins[i]),
                })
                if not s.normal and picked[s.positive] < EXAMPLES_PER_GROUP:  # the figure grid's negatives are tiles
                    picked[s.positive] += 1
                    examples["example_id"].append(example_id)
                    examples["kind"].append(rows[-1]["kind"])
                    examples["image"].append(denormalize(images[i][..., 0]))
                    examples["mask"].append((masks[i] > 0.5).astype(np.uint8))
                    examples["prob"].append(prob[i].astype(np.float16))
            bar.update(len(images))
    if not rows:
        raise InputError(dataset, f"the {split} split has no examples")

    frame = pd.DataFrame(rows, columns=list(PER_IMAGE_COLUMNS))
    metrics = acc.summary()
    normal = frame["kind"] == "normal"
    by_group = {"all": frame, "positives": frame[frame["tp"] + frame["fn"] > 0],
                "negatives": frame[(frame["tp"] + frame["fn"] == 0) & ~normal]}
    if normal.any():
        by_group["normals"] = frame[normal]
    metrics["checkerboard"] = {
        f"{key}_{group}": float(part[key].mean()) if len(part) else math.nan
        for group, part in by_group.items() for key in ("phase_mean", "aliasing_fraction", "phase_mean_margin")
    }
    metrics["checkerboard"]["convention"] = (
        "mean over images of the per-image map score of P(abnormal); *_margin: of the logit margin l1 - l0, "
        "the map checkerboard_init.json scores before training"
    )
    metrics[GATE_KEY] = learning_gate(
        _checkpoint_val_loss(run.read_history(), checkpoint),
        prior_loss(float(manifest.loc[manifest["split"] == "val", "positive_fraction"].mean()),
                   float(config.get("positive_weight") or 1.0),
                   config.get("loss_normalization", "weights")),  # runs from before the key: weighted mean
        int(frame.loc[frame["tp"] + frame["fn"] > 0, "tp"].sum()),
    )
    metrics.update({
        "split": split, "checkpoint": checkpoint, "checkpoint_path": str(path), "image_size": size,
        "dataset": str(dataset.resolve()), "variant": config.get("variant"), "seed": config.get("seed"),
        "run_name": config.get("run_name"),
        "inference": {
            "images_per_second": timed_images / predict_seconds if predict_seconds > 0 else None,
            "batch_size": batch_size, "timed_images": timed_images,
            "note": "model.predict_on_batch time only, first batch (tracing) excluded",
            "backend": keras.backend.backend(),
        },
    })
    out = run.path / "eval" / split
    write_json(out / "metrics.json", _json_safe(metrics))
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    write_bytes(out / "per_image.csv", buf.getvalue().encode())
    _write_npz(out / "examples.npz", {
        "example_id": np.array(examples["example_id"]), "kind": np.array(examples["kind"]),
        "image": _stack(examples["image"], (0, size, size), np.uint8),
        "mask": _stack(examples["mask"], (0, size, size), np.uint8),
        "prob": _stack(examples["prob"], (0, size, size), np.float16),
    })
    _write_npz(out / "spectrum.npz", spectrum.arrays())
    logger.info("%s: %s split, %d images: dice per image (positives) %.3f, pooled %.3f; FP rate on negatives %.3f%s",
                run.path, split, len(rows), metrics["dice_per_image_positives"], metrics["dice_pooled_positives"],
                metrics["negatives_fp_rate_author"],
                f", on {metrics['n_normal_images']} normal images {metrics['normals_fp_rate_author']:.3f}"
                if "n_normal_images" in metrics else "")
    return metrics


def prior_loss(positive_fraction: float, positive_weight: float, normalization: str = "pixels") -> float:
    """The training loss of the best constant prediction, p = wπ / (wπ + 1 − π): what a network that
    learned nothing about the images reaches. On the loss's own scale: Σ w·CE per pixel (the author's
    `pixels` normalisation), or per unit of weight (`weights`). NaN without a prior."""
    if not math.isfinite(positive_fraction):
        return math.nan
    weighted_pos, weighted_neg = positive_weight * positive_fraction, 1.0 - positive_fraction
    if weighted_pos <= 0.0 or weighted_neg <= 0.0:
        return 0.0
    p = weighted_pos / (weighted_pos + weighted_neg)
    per_pixel = -(weighted_pos * math.log(p) + weighted_neg * math.log(1.0 - p))
    return per_pixel if normalization == "pixels" else per_pixel / (weighted_pos + weighted_neg)


def learning_gate(val_loss: float, prior: float, abnormal_pixels_found: int) -> dict[str, Any]:
    """Whether a run learned at all (GATE_RULE), with the numbers the rule looked at: a run that did not is
    left out of every comparison instead of winning on false positives by predicting nothing."""
    learned = math.isfinite(val_loss) and math.isfinite(prior) and val_loss < prior and abnormal_pixels_found > 0
    return {"learned": bool(learned), "val_loss": val_loss, "prior_loss": prior,
            "abnormal_pixels_found": abnormal_pixels_found, "rule": GATE_RULE}


def _checkpoint_val_loss(history: list[dict[str, Any]], checkpoint: str) -> float:
    """Validation loss of the evaluated checkpoint: the lowest for `best`, the last epoch's for `last`."""
    losses = [float(row["val_loss"]) for row in history
              if isinstance(row.get("val_loss"), (int, float)) and math.isfinite(row["val_loss"])]
    if not losses:
        return math.nan
    return min(losses) if checkpoint == "best" else losses[-1]


def _stack(items: list[np.ndarray], empty: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.stack(items).astype(dtype) if items else np.zeros(empty, dtype)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue())


def _json_safe(obj: Any) -> Any:
    """NaN/inf become null: metrics.json stays strict JSON for any reader."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
