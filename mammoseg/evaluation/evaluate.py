"""`mammoseg evaluate`: a trained run's checkpoint on one split, streamed batch by batch.

Only per-image rows, fixed-size histograms, a running spectrum sum and a handful of figure examples are
kept, never the probability maps of the whole split. Outputs (docs/design.md §5 conventions, named in the keys):

    RUN/eval/<split>/metrics.json    summary metrics, output-map checkerboard scores, throughput, learning gate
    RUN/eval/<split>/per_image.csv   one row per image
    RUN/eval/<split>/examples.npz    the first EXAMPLES_PER_GROUP positive and negative images with their maps
    RUN/eval/<split>/spectrum.npz    mean radial power spectrum of the probability maps
    RUN/eval/<split>/detections.npz  every image's lesion candidates: enough to redraw the FROC curve

The per-image columns are the declared metrics' (`metrics/catalog.py`); those at the operating point use
the threshold chosen first on the validation split of the run's own dataset (`detections.choose_operating_point`).
On another prepared dataset than the run's own (external validation) the same files go to
RUN/eval/<split>@<dataset>/ (`mammoseg.runs.external`), and metrics.json names the dataset external.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from mammoseg.core.conventions import abnormal_probability, logit_margin
from mammoseg.core.errors import InputError
from mammoseg.core.progress import Progress
from mammoseg.evaluation.detections import DetectionLog, choose_operating_point, circle_annotated
from mammoseg.metrics.catalog import ImageMaps, image_columns, image_metric_value, in_subset, metrics
from mammoseg.metrics.declaration import NORMAL_KIND, SUBSETS
from mammoseg.metrics.detection import TARGET_SENSITIVITY
from mammoseg.metrics.segmentation import SegmentationAccumulator
from mammoseg.runs.external import eval_name, external_name
from mammoseg.runs.rundir import SPECTRUM_GROUPS, RunDir, per_image_columns

logger = logging.getLogger("mammoseg.evaluate")

EXAMPLES_PER_GROUP = 4
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
        for group in (g for g in SPECTRUM_GROUPS if in_subset(g, positive, normal)):
            self.sums[group] = power.astype(np.float64) if self.sums[group] is None else self.sums[group] + power
            self.counts[group] += 1

    def arrays(self) -> dict[str, np.ndarray]:
        n = 0 if self.freqs is None else len(self.freqs)
        out = {"freqs": self.freqs if self.freqs is not None else np.zeros(0)}
        for group, total in self.sums.items():
            out[SPECTRUM_GROUPS[group]] = total / self.counts[group] if total is not None else np.full(n, np.nan)
            out[f"n_{group}"] = np.array(self.counts[group])
        return out


class _Pass:
    """One streaming pass over a split: per-image rows, the metric accumulators, the running spectrum and
    the figure examples; the probability maps of a batch are dropped once it is counted."""

    def __init__(self, manifest: Any, threshold: float = math.nan, prior_shift: float = 0.0) -> None:
        self.manifest = manifest
        self.threshold = threshold
        self.acc = SegmentationAccumulator(prior_shift)
        self.spectrum = _Spectrum()
        self.detections = DetectionLog()
        self.rows: list[dict[str, Any]] = []
        self.examples: dict[str, list] = {k: [] for k in ("example_id", "kind", "image", "mask", "prob")}
        self.picked = {True: 0, False: 0}
        self.predict_seconds, self.timed_images, self.first = 0.0, 0, True

    def predict(self, model: Any, images: np.ndarray) -> np.ndarray:
        """The model's logits, timed; the first batch pays for tracing/compilation and is not counted."""
        t0 = time.perf_counter()
        logits = model.predict_on_batch(images)
        if not self.first:
            self.predict_seconds += time.perf_counter() - t0
            self.timed_images += len(images)
        self.first = False
        return logits

    def add(self, batch: dict[str, Any], images: np.ndarray, logits: np.ndarray) -> None:
        from mammoseg.dataset.pipeline import denormalize

        margins = logit_margin(logits)
        prob = abnormal_probability(margins).astype(np.float32)
        masks = batch["mask"].numpy()[..., 0]
        kinds = [k.decode() for k in batch["kind"].numpy()]
        for i, s in enumerate(self.acc.update(prob, masks, margins, kinds)):
            example_id = batch["example_id"][i].numpy().decode()
            meta = self.manifest.loc[example_id] if example_id in self.manifest.index else None
            circle = circle_annotated(self.manifest, example_id)
            maps = ImageMaps(images[i][..., 0], prob[i], margins[i], masks[i] > 0.5, kinds[i], self.threshold, circle)
            self.spectrum.add(prob[i], s.positive, s.normal)
            self.detections.add(maps.detections, margins[i], masks[i], circle)
            self.rows.append({
                "example_id": example_id, "kind": kinds[i],
                "patient_id": "" if meta is None else meta["patient_id"],
                "positive_fraction": float(masks[i].mean()),
                **s.as_row(), **image_columns(maps),
            })
            if not s.normal and self.picked[s.positive] < EXAMPLES_PER_GROUP:  # the figure grid's negatives are tiles
                self.picked[s.positive] += 1
                self.examples["example_id"].append(example_id)
                self.examples["kind"].append(kinds[i])
                self.examples["image"].append(denormalize(images[i][..., 0]))
                self.examples["mask"].append((masks[i] > 0.5).astype(np.uint8))
                self.examples["prob"].append(prob[i].astype(np.float16))

    def example_arrays(self, size: int) -> dict[str, np.ndarray]:
        ex = self.examples
        return {
            "example_id": np.array(ex["example_id"]), "kind": np.array(ex["kind"]),
            "image": _stack(ex["image"], (0, size, size), np.uint8),
            "mask": _stack(ex["mask"], (0, size, size), np.uint8),
            "prob": _stack(ex["prob"], (0, size, size), np.float16),
        }

    def inference(self, batch_size: int, backend: str) -> dict[str, Any]:
        return {
            "images_per_second": self.timed_images / self.predict_seconds if self.predict_seconds > 0 else None,
            "batch_size": batch_size, "timed_images": self.timed_images,
            "note": "model.predict_on_batch time only, first batch (tracing) excluded", "backend": backend,
        }


def evaluate_run(run_dir: str | Path, split: str = "test", checkpoint: str = "best", batch_size: int | None = None,
                 data: str | Path | None = None, data_name: str | None = None,
                 target: float = TARGET_SENSITIVITY) -> dict[str, Any]:
    """Evaluate RUN's checkpoint on `split` of its dataset, or of another one (`data`, named `data_name`
    or after its folder), at the operating point reaching lesion sensitivity `target` on validation (an
    experiment gives all its runs one, `workflows.ablate.align_operating_points`); writes
    RUN/eval/<split>[@<dataset>]/ and returns the metrics."""
    import keras
    import pandas as pd

    from mammoseg.dataset.pipeline import make_dataset, read_dataset_info, read_manifest, resize_batches

    run = RunDir(run_dir)
    config = run.config()
    dataset = _dataset_of(run, config, data)
    external = external_name(config, dataset, data_name)
    folder = eval_name(split, external)
    if external is not None:
        _check_same_dataset(run.eval_dir(folder) / "metrics.json", dataset)
    info = read_dataset_info(dataset)
    manifest = read_manifest(dataset).set_index("example_id")
    own_dataset = dataset if external is None else _own_dataset(config, dataset)
    own = manifest if own_dataset == dataset else read_manifest(own_dataset).set_index("example_id")
    path = run.checkpoint(checkpoint)
    model = run.load_model(checkpoint)
    size = int(model.input_shape[1])
    batch_size = batch_size or int(config.get("batch_size", 16))
    ds = make_dataset(dataset, split, batch_size=batch_size, with_metadata=True, deterministic=True)
    ds = resize_batches(ds, size, info["image_size"], with_metadata=True)
    operating_point = choose_operating_point(model, own_dataset, size, batch_size, target)
    scan = _Pass(manifest, operating_point["threshold"], math.log(float(config.get("positive_weight") or 1.0)))
    with Progress(int((manifest["split"] == split).sum()), f"evaluate {run.path.name} on {split}", "img") as bar:
        for batch in ds:
            images = batch["image"].numpy()
            scan.add(batch, images, scan.predict(model, images))
            bar.update(len(images))
    if not scan.rows:
        raise InputError(dataset, f"the {split} split has no examples")

    frame = pd.DataFrame(scan.rows, columns=list(per_image_columns()))
    metrics = scan.acc.summary()
    metrics["per_image_means"] = per_image_means(frame)
    metrics["detection"] = scan.detections.summary(operating_point)
    metrics["checkerboard"] = _checkerboard_summary(frame)
    metrics["checkerboard"]["upsampling"] = _upsampling_checkerboard(model, config, run.checkerboard_init())
    metrics[GATE_KEY] = learning_gate(
        _checkpoint_val_loss(run.read_history(), checkpoint),
        prior_loss(float(own.loc[own["split"] == "val", "positive_fraction"].mean()),
                   float(config.get("positive_weight") or 1.0),
                   config.get("loss_normalization", "weights")),  # runs from before the key: weighted mean
        int(frame.loc[frame["tp"] + frame["fn"] > 0, "tp"].sum()),
    )
    metrics.update({
        "split": split, "checkpoint": checkpoint, "checkpoint_path": str(path), "image_size": size,
        "dataset": str(dataset.resolve()), "variant": config.get("variant"), "seed": config.get("seed"),
        "run_name": config.get("run_name"), "inference": scan.inference(batch_size, keras.backend.backend()),
        "external": external is not None, "dataset_name": external or Path(dataset).resolve().name,
    })
    run.write_evaluation(folder, metrics, frame, scan.example_arrays(size), scan.spectrum.arrays(),
                         scan.detections.arrays())
    logger.info("%s: %s split, %d images: dice per image (positives) %.3f, pooled %.3f; FP rate on negatives %.3f%s",
                run.path, folder, len(scan.rows), metrics["dice_per_image_positives"], metrics["dice_pooled_positives"],
                metrics["negatives_fp_rate_author"],
                f", on {metrics['n_normal_images']} normal images {metrics['normals_fp_rate_author']:.3f}"
                if "n_normal_images" in metrics else "")
    return metrics


def _dataset_of(run: RunDir, config: dict[str, Any], data: str | Path | None) -> Path:
    """The dataset to evaluate on: `--data`, else the one the run recorded."""
    recorded = config.get("dataset")
    if not data and not (isinstance(recorded, dict) and isinstance(recorded.get("path"), str)):
        raise InputError(run.config_file, "no dataset path recorded; give --data")
    return Path(data) if data else Path(recorded["path"])


def _subsets(frame: Any) -> dict[str, np.ndarray]:
    """Each image subset of a per-image frame as a boolean mask (`in_subset`)."""
    positive = (frame["tp"] + frame["fn"] > 0).to_numpy()
    normal = (frame["kind"] == NORMAL_KIND).to_numpy()
    return {subset: np.asarray(in_subset(subset, positive, normal)) for subset in SUBSETS}


def per_image_means(frame: Any) -> dict[str, float]:
    """Every declared image metric's value for this run, as the report computes it from per_image.csv."""
    subsets = _subsets(frame)
    table = {c: frame[c].to_numpy(float) for c in frame.columns if c not in ("example_id", "kind", "patient_id")}
    return {m.key: image_metric_value(m, table, subsets[m.subset]) for m in metrics() if m.source == "image"}


def _check_same_dataset(metrics_file: Path, dataset: Path) -> None:
    """Refuse to overwrite an external evaluation of another dataset that has the same name."""
    import json

    if metrics_file.is_file():
        earlier = json.loads(metrics_file.read_text()).get("dataset")
        if earlier and Path(earlier) != dataset.resolve():
            raise InputError(metrics_file.parent, f"holds an evaluation on {earlier}, another dataset of that name; "
                                                  "give --data-name")


def _own_dataset(config: dict[str, Any], external: Path) -> Path:
    """The run's own prepared dataset, whose validation split sets its learning gate's prior and its operating
    point; the external one where the run's is gone."""
    recorded = Path(config["dataset"]["path"]) if isinstance(config.get("dataset"), dict) else None
    if recorded is None or not (recorded / "manifest.csv").is_file():
        logger.warning("the run's own dataset is gone: its learning gate and operating point use the external "
                       "dataset's validation split")
        return external
    return recorded


def _checkerboard_summary(frame: Any) -> dict[str, Any]:
    """Mean per-image map scores by image group (all, positives, negatives, normals where present)."""
    subsets = _subsets(frame)
    by_group = {group: frame[subsets[group]] for group in SUBSETS if group != "normals" or subsets[group].any()}
    summary: dict[str, Any] = {
        f"{key}_{group}": float(part[key].mean()) if len(part) else math.nan
        for group, part in by_group.items() for key in ("phase_mean", "aliasing_fraction", "phase_mean_margin")
    }
    summary["convention"] = (
        "mean over images of the per-image map score of P(abnormal); *_margin: of the logit margin l1 - l0, "
        "the map checkerboard_init.json scores before training (on the probe images)"
    )
    return summary


def _upsampling_checkerboard(model: Any, config: dict[str, Any], at_init: dict[str, Any]) -> dict[str, Any]:
    """The first upsampling's checkerboard trained, beside the same measure at initialisation, which training
    wrote (`checkerboard_init.json`, the network training started from): one function on the same probe
    images (`mammoseg.models.probes`). Empty for a variant this process does not know."""
    from mammoseg.models import get_spec
    from mammoseg.models.probes import checkerboard_scores

    try:
        probe_step = get_spec(str(config.get("variant"))).probe_step
    except ValueError:
        return {}
    return {"trained": checkerboard_scores(model, probe_step)["upsampling"], "init": at_init.get("upsampling", {}),
            "convention": "decoder: median per-channel phase-mean after the step that follows the first upsampling; "
                          "output: the logit margin's score at the period that step leaves in the output; means over "
                          "the probe images (a constant and a smooth image)"}


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
