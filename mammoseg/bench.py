"""Performance measurements: training step, inference, input pipeline and prepare throughput.

Every figure is recorded with the backend, devices, versions, precision and the resolved
jit_compile setting, because a timing without them cannot be compared with another one.
Model timings use random tensors created on the accelerator, so they show the network's own speed,
not the input pipeline's; the pipeline is measured separately, on real shards, per CPU core.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mammoseg.errors import InputError, MammosegError

logger = logging.getLogger("mammoseg.bench")

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
BENCH_POSITIVE_WEIGHT = 18.0
"""The final model's loss weight; the weight does not change the cost of a step."""

TRAIN_METHOD = (
    "model.train_on_batch on random tensors created on the device (no host-to-device copy), one "
    "optimizer step per call, synchronised by fetching the loss; warm-up steps (compilation) excluded"
)
INFERENCE_METHOD = "model.predict_on_batch on a device-resident batch; includes copying the logits to host memory"
SPEED_VARIABLES = (
    "KERAS_BACKEND", "CUDA_VISIBLE_DEVICES", "XLA_FLAGS", "TF_XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION", "TF_GPU_ALLOCATOR", "TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS",
)  # fmt: skip
"""Environment variables that change speeds; recorded with every result when set."""


@dataclass(frozen=True)
class BenchOptions:
    """What to measure. `variants` empty: no model timings (pipeline and prepare only)."""

    variants: tuple[str, ...] = ("dilated_resize",)
    image_size: int = 640
    batch_size: int = 16
    precision: str = "float32"
    steps: int = 20
    warmup: int = 3
    width: float = 1.0
    jit_compile: bool | str = "auto"
    inference: bool = True
    data: Path | None = None
    pipeline_seconds: float = 15.0
    dicom_dir: Path | None = None
    prepare_images: int = 16

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise MammosegError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.batch_size < 1 or self.steps < 1 or self.warmup < 0 or self.prepare_images < 1:
            raise MammosegError("--batch-size, --steps and the image count must be positive, --warmup non-negative")
        if self.pipeline_seconds <= 0:
            raise MammosegError("--pipeline-seconds must be positive")


def run(options: BenchOptions) -> dict[str, Any]:
    """Run every requested measurement and return the results record (see `write`)."""
    from mammoseg.runtime import environment

    result: dict[str, Any] = {
        "format_version": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "environment": environment(),
        "environment_variables": {k: os.environ[k] for k in SPEED_VARIABLES if k in os.environ},
        "models": [_bench_or_skip(v, options) for v in options.variants],
        "pipeline": bench_pipeline(options) if options.data else {"skipped": "no --data given"},
        "prepare": bench_prepare(options) if options.dicom_dir else {"skipped": "no --dicom-dir given"},
    }
    return result


# --------------------------------------------------------------------------- models


def _bench_or_skip(variant: str, options: BenchOptions) -> dict[str, Any]:
    """With several variants, one that cannot take the image size is recorded as skipped."""
    from mammoseg.models import check_image_size

    try:
        check_image_size(variant, options.image_size)
    except ValueError as exc:
        if len(options.variants) == 1:
            raise MammosegError(str(exc)) from None
        logger.warning("%s: skipped (%s)", variant, exc)
        return {"variant": variant, "skipped": str(exc)}
    return bench_model(variant, options)


def bench_model(variant: str, options: BenchOptions) -> dict[str, Any]:
    """Training-step and inference throughput of one variant on random device-resident tensors."""
    import keras

    from mammoseg.models import build_model, count_flops
    from mammoseg.training.loss import WeightedPixelCrossEntropy

    previous_policy = keras.mixed_precision.dtype_policy()
    keras.backend.clear_session()
    keras.mixed_precision.set_dtype_policy(options.precision)
    try:
        try:
            model = build_model(variant, image_size=options.image_size, width=options.width)
        except ValueError as exc:
            raise MammosegError(str(exc)) from None
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=7e-4),
            loss=WeightedPixelCrossEntropy(BENCH_POSITIVE_WEIGHT),
            jit_compile=options.jit_compile,
        )
        flops = count_flops(model)
        b, s = options.batch_size, options.image_size
        x = keras.random.uniform((b, s, s, 1), minval=-0.5, maxval=0.5, seed=1)
        y = keras.ops.cast(keras.random.uniform((b, s, s, 1), seed=2) > 0.9, "float32")
        logger.info("%s: %d parameters, %.2f GFLOP/image forward; compiling", variant, model.count_params(), flops / 1e9)

        _reset_peak_memory()
        train_seconds = _time_steps(lambda: model.train_on_batch(x, y), options.warmup, options.steps)
        train = _rates(train_seconds, b)
        train.update(
            tflops_per_second=3 * flops * train["images_per_second"] / 1e12,
            peak_memory_bytes=_peak_memory(),
            method=TRAIN_METHOD,
            loss=f"weighted pixel cross-entropy (positive weight {BENCH_POSITIVE_WEIGHT:g}) + L2, Adam",
        )
        record: dict[str, Any] = {
            "variant": variant,
            "params": model.count_params(),
            "flops_forward_per_image": flops,
            "flops_per_training_image": 3 * flops,
            "jit_compile": bool(model.jit_compile),
            "precision": options.precision,
            "train": train,
        }
        if options.inference:
            _reset_peak_memory()
            infer_seconds = _time_steps(lambda: model.predict_on_batch(x), options.warmup, options.steps)
            infer = _rates(infer_seconds, b)
            infer.update(
                tflops_per_second=flops * infer["images_per_second"] / 1e12,
                peak_memory_bytes=_peak_memory(),
                method=INFERENCE_METHOD,
            )
            record["inference"] = infer
        return record
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)
        keras.backend.clear_session()


def _time_steps(step: Any, warmup: int, steps: int) -> list[float]:
    """Seconds of each timed call; each call returns host values, so it ends when the device is done."""
    for _ in range(max(1, warmup)):
        step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds


def _rates(seconds: list[float], batch_size: int) -> dict[str, Any]:
    total = float(np.sum(seconds))
    return {
        "images_per_second": batch_size * len(seconds) / total,
        "step_seconds_median": float(np.median(seconds)),
        "step_seconds_min": float(np.min(seconds)),
        "steps": len(seconds),
        "batch_size": batch_size,
    }


def _reset_peak_memory() -> None:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_logical_devices("GPU"):
                tf.config.experimental.reset_memory_stats("GPU:0")
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
    except (RuntimeError, ValueError) as exc:
        logger.debug("cannot reset peak memory statistics: %s", exc)


def _peak_memory() -> int | None:
    """Peak accelerator memory in bytes: since the last reset under TensorFlow and torch, since the
    process started under JAX (which cannot reset it); None on a CPU."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_logical_devices("GPU"):
                return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            stats = device.memory_stats() if device.platform != "cpu" else None
            if stats and "peak_bytes_in_use" in stats:
                return int(stats["peak_bytes_in_use"])
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return int(torch.cuda.max_memory_allocated())
    except (RuntimeError, ValueError) as exc:
        logger.debug("cannot read peak memory: %s", exc)
    return None


# --------------------------------------------------------------------------- input pipeline


def pipeline_augmentations() -> dict[str, Any]:
    """The configurations measured: decoding alone, the training's flips, and every augmentation."""
    from mammoseg.data.pipeline import Augmentation

    return {
        "none": None,
        "flips": Augmentation(flips=True),
        "all": Augmentation(flips=True, rot90=True, scale_jitter=0.025, intensity_jitter=0.1),
    }


def bench_pipeline(options: BenchOptions) -> dict[str, Any]:
    """Images per second delivered by `make_dataset` on the train split, as training reads it
    (shuffled, repeated), at the dataset's own image size: total, per core of this process's CPU
    affinity, and per CPU-second this process used (which other load on the machine affects less)."""
    from mammoseg.data.pipeline import make_dataset, read_dataset_info

    assert options.data is not None
    info = read_dataset_info(options.data)
    cores = len(os.sched_getaffinity(0))
    configs = []
    for name, augment in pipeline_augmentations().items():
        ds = make_dataset(options.data, "train", batch_size=options.batch_size, shuffle=True, repeat=True, augment=augment)
        iterator = iter(ds)
        for _ in range(3):  # fill the prefetch buffers and tune AUTOTUNE a little
            next(iterator)
        images, start, cpu_start = 0, time.perf_counter(), _cpu_seconds()
        while (elapsed := time.perf_counter() - start) < options.pipeline_seconds:
            image, _ = next(iterator)
            images += int(image.shape[0])
        cpu = _cpu_seconds() - cpu_start
        configs.append({
            "augmentation": name,
            "settings": None if augment is None else asdict(augment),
            "images": images,
            "seconds": elapsed,
            "images_per_second": images / elapsed,
            "images_per_second_per_core": images / elapsed / cores,
            "images_per_cpu_second": images / cpu if cpu > 0 else None,
        })  # fmt: skip
        logger.info("pipeline %-5s %.1f images/s (%.1f per core)", name, images / elapsed, images / elapsed / cores)
        del iterator, ds
    return {
        "dataset": str(options.data),
        "split": "train",
        "image_size": info["image_size"],
        "batch_size": options.batch_size,
        "cores": cores,
        "load_average": os.getloadavg(),
        "configurations": configs,
    }


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# --------------------------------------------------------------------------- prepare


def bench_prepare(options: BenchOptions) -> dict[str, Any]:
    """One core's throughput of whole-image preparation (read, find the breast, crop, resize, window,
    encode a record) against a bare pydicom read and decode of the same files."""
    import pydicom

    from mammoseg.data import preprocess
    from mammoseg.data.dicom import read_pixels
    from mammoseg.data.shards import serialize_example

    assert options.dicom_dir is not None
    if not options.dicom_dir.is_dir():
        raise InputError(options.dicom_dir, "no such folder")
    files = sorted(options.dicom_dir.rglob("*.dcm"), key=lambda p: (-p.stat().st_size, str(p)))[: options.prepare_images]
    if not files:
        raise InputError(options.dicom_dir, "no .dcm files under this folder")
    for path in files:  # same page-cache state for both measurements
        path.read_bytes()

    start = time.perf_counter()
    pixels_read = 0
    for path in files:
        pixels_read += pydicom.dcmread(path).pixel_array.size
    bare = time.perf_counter() - start

    start = time.perf_counter()
    zeros = np.zeros((options.image_size, options.image_size), np.uint8)
    for path in files:
        image, _ = preprocess.prepare_full_image(read_pixels(path), options.image_size)
        serialize_example(image, zeros, example_id=path.stem, kind="whole", patient_id="bench",
                          abnormality_type="none", pathology="NONE", positive_fraction=0.0)  # fmt: skip
    prepared = time.perf_counter() - start
    return {
        "dicom_dir": str(options.dicom_dir),
        "files": len(files),
        "mean_megapixels": pixels_read / len(files) / 1e6,
        "image_size": options.image_size,
        "bare_read_images_per_second": len(files) / bare,
        "prepare_images_per_second": len(files) / prepared,
        "prepare_vs_bare_read": bare / prepared,
        "method": "one process; largest .dcm files first; bare = pydicom.dcmread(...).pixel_array; prepare = "
                  "read_pixels + prepare_full_image + serialize_example of the whole image (tiles not included)",
    }  # fmt: skip


# --------------------------------------------------------------------------- output


def format_table(result: dict[str, Any]) -> str:
    """The human-readable summary printed by `mammoseg bench`."""
    env = result["environment"]
    lines = [f"backend {env['keras_backend']}, devices {', '.join(env['devices'])}"]
    if result["models"]:
        lines.append(
            f"{'variant':<18} {'params':>11} {'GFLOP/img':>9} {'train img/s':>11} {'TFLOP/s':>8} "
            f"{'peak GiB':>8} {'infer img/s':>11} {'jit':>5}"
        )
        for m in result["models"]:
            if "skipped" in m:
                lines.append(f"{m['variant']:<18} skipped: {m['skipped']}")
                continue
            peak = m["train"]["peak_memory_bytes"]
            infer = m.get("inference", {}).get("images_per_second")
            lines.append(
                f"{m['variant']:<18} {m['params']:>11,} {m['flops_forward_per_image'] / 1e9:>9.2f} "
                f"{m['train']['images_per_second']:>11.1f} {m['train']['tflops_per_second']:>8.3f} "
                f"{'-' if peak is None else f'{peak / 2**30:.2f}':>8} {'-' if infer is None else f'{infer:.1f}':>11} "
                f"{str(m['jit_compile']):>5}"
            )
        timed = [m for m in result["models"] if "train" in m]
        if timed:
            first = timed[0]
            lines.append(f"  ({first['precision']}, batch {first['train']['batch_size']}, {first['train']['steps']} timed steps)")
    pipe = result["pipeline"]
    if "skipped" in pipe:
        lines.append(f"pipeline: skipped ({pipe['skipped']})")
    else:
        lines.append(f"pipeline: {pipe['dataset']} at {pipe['image_size']}, batch {pipe['batch_size']}, {pipe['cores']} cores")
        for c in pipe["configurations"]:
            per_cpu = c["images_per_cpu_second"]
            lines.append(
                f"  {c['augmentation']:<6} {c['images_per_second']:8.1f} img/s  {c['images_per_second_per_core']:7.1f} per core"
                + ("" if per_cpu is None else f"  {per_cpu:7.1f} per CPU-second")
            )
    prep = result["prepare"]
    if "skipped" in prep:
        lines.append(f"prepare: skipped ({prep['skipped']})")
    else:
        lines.append(
            f"prepare: {prep['files']} DICOMs of {prep['mean_megapixels']:.2f} MP: {prep['prepare_images_per_second']:.2f} img/s, "
            f"bare pydicom read {prep['bare_read_images_per_second']:.2f} img/s ({prep['prepare_vs_bare_read']:.2f}x)"
        )
    return "\n".join(lines)


def write(path: str | Path, result: dict[str, Any]) -> None:
    """The results record as JSON, atomically."""
    from mammoseg.atomic import write_json

    write_json(path, result)
