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

from mammoseg.core.conventions import PRECISIONS
from mammoseg.core.errors import InputError, MammosegError

logger = logging.getLogger("mammoseg.bench")

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

MemoryUse = tuple[int, int, str]
"""(bytes in use, peak bytes in use, where from) of the backend's allocator."""


@dataclass(frozen=True)
class BenchOptions:
    """What to measure. `variants` empty: no model timings (pipeline and prepare only). Several
    `image_sizes` time every variant at each and add a scaling summary; prepare uses the first."""

    variants: tuple[str, ...] = ("dilated_resize",)
    image_sizes: tuple[int, ...] = (640,)
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
        if not self.image_sizes or min(self.image_sizes) < 8:
            raise MammosegError("--image-size must be given at least once, each at least 8")

    @property
    def image_size(self) -> int:
        return self.image_sizes[0]


def run(options: BenchOptions) -> dict[str, Any]:
    """Run every requested measurement and return the results record (see `write`)."""
    from mammoseg.core.runtime import environment

    models = [_bench_or_skip(v, size, options) for v in options.variants for size in sorted(set(options.image_sizes))]
    result: dict[str, Any] = {
        "format_version": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "environment": environment(),
        "environment_variables": {k: os.environ[k] for k in SPEED_VARIABLES if k in os.environ},
        "models": models,
        "scaling": scaling(models),
        "pipeline": bench_pipeline(options) if options.data else {"skipped": "no --data given"},
        "prepare": bench_prepare(options) if options.dicom_dir else {"skipped": "no --dicom-dir given"},
    }
    return result


# --------------------------------------------------------------------------- models


def _bench_or_skip(variant: str, image_size: int, options: BenchOptions) -> dict[str, Any]:
    """With several variants or sizes, one that cannot take a size is recorded as skipped."""
    from mammoseg.models import check_image_size

    try:
        check_image_size(variant, image_size)
    except ValueError as exc:
        if len(options.variants) == 1 and len(set(options.image_sizes)) == 1:
            raise MammosegError(str(exc)) from None
        logger.warning("%s at %d: skipped (%s)", variant, image_size, exc)
        return {"variant": variant, "image_size": image_size, "skipped": str(exc)}
    return bench_model(variant, image_size, options)


def bench_model(variant: str, image_size: int, options: BenchOptions) -> dict[str, Any]:
    """Training-step and inference throughput and peak memory of one variant at one size, on random
    device-resident tensors. The model lives in its own frame, gone when the session is cleared, so
    the backend can free it before the next one (TensorFlow keeps part: see benchmarks/RESULTS.md)."""
    import keras

    previous_policy = keras.mixed_precision.dtype_policy()
    keras.backend.clear_session()
    keras.mixed_precision.set_dtype_policy(options.precision)
    _reset_peak_memory()  # TensorFlow's CPU allocator counts from its first statistics call: include the weights
    try:
        return _measure_model(variant, image_size, options)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)
        keras.backend.clear_session()


def _measure_model(variant: str, image_size: int, options: BenchOptions) -> dict[str, Any]:
    import keras

    from mammoseg.models import build_model, count_activations, count_flops
    from mammoseg.training.loss import WeightedPixelCrossEntropy

    try:
        model = build_model(variant, image_size=image_size, width=options.width)
    except ValueError as exc:
        raise MammosegError(str(exc)) from None
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=7e-4),
        loss=WeightedPixelCrossEntropy(BENCH_POSITIVE_WEIGHT),
        jit_compile=options.jit_compile,
    )
    flops = count_flops(model)
    b, s = options.batch_size, image_size
    x = keras.random.uniform((b, s, s, 1), minval=-0.5, maxval=0.5, seed=1)
    y = keras.ops.cast(keras.random.uniform((b, s, s, 1), seed=2) > 0.9, "float32")
    logger.info("%s at %d: %d parameters, %.2f GFLOP/image forward; compiling", variant, s, model.count_params(), flops / 1e9)

    train = _measure(lambda: model.train_on_batch(x, y), options.warmup, options.steps, b)
    train.update(
        tflops_per_second=3 * flops * train["images_per_second"] / 1e12,
        method=TRAIN_METHOD,
        loss=f"weighted pixel cross-entropy (positive weight {BENCH_POSITIVE_WEIGHT:g}) + L2, Adam",
    )
    record: dict[str, Any] = {
        "variant": variant,
        "image_size": s,
        "width": options.width,
        "params": model.count_params(),
        "activation_bytes_per_image": count_activations(model) * _dtype_bytes(model.compute_dtype),
        "flops_forward_per_image": flops,
        "flops_per_training_image": 3 * flops,
        "jit_compile": bool(model.jit_compile),
        "precision": options.precision,
        "train": train,
    }
    if options.inference:
        infer = _measure(lambda: model.predict_on_batch(x), options.warmup, options.steps, b)
        infer.update(tflops_per_second=flops * infer["images_per_second"] / 1e12, method=INFERENCE_METHOD)
        record["inference"] = infer
    return record


def _measure(step: Any, warmup: int, steps: int, batch_size: int) -> dict[str, Any]:
    """Time `steps` calls after `warmup` untimed ones (compilation; optimizer state created), and the
    memory they use. Each call returns host values, so it ends when the device is done."""
    for _ in range(max(1, warmup)):
        step()
    _reset_peak_memory()
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


def _reset_peak_memory() -> None:
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


def _dtype_bytes(dtype: str) -> int:
    return int(np.dtype("float16" if dtype == "bfloat16" else dtype).itemsize)


def scaling(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant timed at several sizes: training cost per image and peak memory per image at each
    size, relative to the smallest, against the pixel ratio (cost that grows with pixels keeps
    `cost_vs_pixels` near 1; above 1 it grows faster)."""
    rows: list[dict[str, Any]] = []
    timed = [m for m in models if "train" in m]
    for variant in dict.fromkeys(m["variant"] for m in timed):
        runs = sorted((m for m in timed if m["variant"] == variant), key=lambda m: m["image_size"])
        if len(runs) < 2:
            continue
        base = runs[0]
        base_cost = 1 / base["train"]["images_per_second"]
        base_memory = base["train"]["peak_memory_per_image_bytes"]
        for m in runs:
            cost = 1 / m["train"]["images_per_second"]
            pixels = (m["image_size"] / base["image_size"]) ** 2
            memory = m["train"]["peak_memory_per_image_bytes"]
            memory_ratio = None if memory is None or not base_memory else memory / base_memory
            rows.append({
                "variant": variant,
                "image_size": m["image_size"],
                "pixel_ratio": pixels,
                "train_seconds_per_image": cost,
                "cost_ratio": cost / base_cost,
                "cost_vs_pixels": cost / base_cost / pixels,
                "flops_ratio": m["flops_forward_per_image"] / base["flops_forward_per_image"],
                "peak_memory_per_image_bytes": memory,
                "memory_ratio": memory_ratio,
                "activation_ratio": m["activation_bytes_per_image"] / base["activation_bytes_per_image"],
            })  # fmt: skip
    return rows


# --------------------------------------------------------------------------- input pipeline


def pipeline_augmentations() -> dict[str, Any]:
    """The configurations measured: decoding alone, the training's flips, and every augmentation."""
    from mammoseg.dataset.pipeline import Augmentation

    return {
        "none": None,
        "flips": Augmentation(flips=True),
        "all": Augmentation(flips=True, rot90=True, scale_jitter=0.025, intensity_jitter=0.1),
    }


def bench_pipeline(options: BenchOptions) -> dict[str, Any]:
    """Images per second delivered by `make_dataset` on the train split, as training reads it
    (shuffled, repeated), at the dataset's own image size: total, per core of this process's CPU
    affinity, and per CPU-second this process used (which other load on the machine affects less)."""
    from mammoseg.dataset.pipeline import make_dataset, read_dataset_info

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

    from mammoseg.dataset import preprocess
    from mammoseg.dataset.dicom import read_pixels
    from mammoseg.dataset.shards import serialize_example

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
            f"{'variant':<18} {'size':>5} {'params':>11} {'GFLOP/img':>9} {'train img/s':>11} {'TFLOP/s':>8} "
            f"{'MiB/img':>8} {'infer img/s':>11} {'jit':>5}"
        )
        for m in result["models"]:
            if "skipped" in m:
                lines.append(f"{m['variant']:<18} {m['image_size']:>5} skipped: {m['skipped']}")
                continue
            per_image = m["train"]["peak_memory_per_image_bytes"]
            infer = m.get("inference", {}).get("images_per_second")
            lines.append(
                f"{m['variant']:<18} {m['image_size']:>5} {m['params']:>11,} {m['flops_forward_per_image'] / 1e9:>9.2f} "
                f"{m['train']['images_per_second']:>11.1f} {m['train']['tflops_per_second']:>8.3f} "
                f"{'-' if per_image is None else f'{per_image / 2**20:.0f}':>8} "
                f"{'-' if infer is None else f'{infer:.1f}':>11} {str(m['jit_compile']):>5}"
            )
        timed = [m for m in result["models"] if "train" in m]
        if timed:
            first = timed[0]
            lines.append(
                f"  ({first['precision']}, batch {first['train']['batch_size']}, {first['train']['steps']} timed steps; "
                f"MiB/img: training peak above resident memory, per image; {first['train']['memory_source'] or 'not measurable here'})"
            )
    if result.get("scaling"):
        lines.append("scaling (relative to each variant's smallest size; cost/pixels near 1 = grows with pixels):")
        lines.append(f"  {'variant':<18} {'size':>5} {'s/img':>8} {'cost x':>7} {'pixels x':>8} {'cost/pixels':>11} {'memory x':>8}")
        for row in result["scaling"]:
            memory = row["memory_ratio"]
            lines.append(
                f"  {row['variant']:<18} {row['image_size']:>5} {row['train_seconds_per_image']:>8.4f} {row['cost_ratio']:>7.2f} "
                f"{row['pixel_ratio']:>8.1f} {row['cost_vs_pixels']:>11.2f} {'-' if memory is None else f'{memory:.2f}':>8}"
            )
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
    from mammoseg.core.atomic import write_json

    write_json(path, result)
