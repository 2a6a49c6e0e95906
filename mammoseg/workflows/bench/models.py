"""Model timings: training-step and inference throughput, FLOPs, activation and peak memory of a
variant at a size, on random tensors created on the accelerator (the network's own speed, not the
input pipeline's), and how the cost grows with the size."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mammoseg.core.errors import MammosegError
from mammoseg.workflows.bench.options import BenchOptions
from mammoseg.workflows.bench.timing import measure, reset_peak_memory

logger = logging.getLogger("mammoseg.bench")

TRAIN_METHOD = (
    "model.train_on_batch on random tensors created on the device (no host-to-device copy), one "
    "optimizer step per call, synchronised by fetching the loss; warm-up steps (compilation) excluded"
)
INFERENCE_METHOD = "model.predict_on_batch on a device-resident batch; includes copying the logits to host memory"


def bench_or_skip(variant: str, image_size: int, options: BenchOptions) -> dict[str, Any]:
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
    reset_peak_memory()  # TensorFlow's CPU allocator counts from its first statistics call: include the weights
    try:
        return _measure_model(variant, image_size, options)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)
        keras.backend.clear_session()


def _measure_model(variant: str, image_size: int, options: BenchOptions) -> dict[str, Any]:
    import keras

    from mammoseg.models import build_model, count_activations, count_flops, get_spec
    from mammoseg.training.loss import WeightedPixelCrossEntropy

    try:
        model = build_model(variant, image_size=image_size, width=options.width)
    except ValueError as exc:
        raise MammosegError(str(exc)) from None
    weight = get_spec(variant).positive_weight  # the variant's own; the weight does not change a step's cost
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=7e-4),
        loss=WeightedPixelCrossEntropy(weight),
        jit_compile=options.jit_compile,
    )
    flops = count_flops(model)
    b, s = options.batch_size, image_size
    x = keras.random.uniform((b, s, s, 1), minval=-0.5, maxval=0.5, seed=1)
    y = keras.ops.cast(keras.random.uniform((b, s, s, 1), seed=2) > 0.9, "float32")
    logger.info("%s at %d: %d parameters, %.2f GFLOP/image forward; compiling", variant, s, model.count_params(), flops / 1e9)

    train = measure(lambda: model.train_on_batch(x, y), options.warmup, options.steps, b)
    train.update(
        tflops_per_second=3 * flops * train["images_per_second"] / 1e12,
        method=TRAIN_METHOD,
        loss=f"weighted pixel cross-entropy (positive weight {weight:g}) + L2, Adam",
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
        infer = measure(lambda: model.predict_on_batch(x), options.warmup, options.steps, b)
        infer.update(tflops_per_second=flops * infer["images_per_second"] / 1e12, method=INFERENCE_METHOD)
        record["inference"] = infer
    return record


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
