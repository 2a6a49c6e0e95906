"""Input-pipeline throughput: images per second `make_dataset` delivers from real shards, per CPU core."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from typing import Any

from mammoseg.workflows.bench.options import BenchOptions

logger = logging.getLogger("mammoseg.bench")


def pipeline_augmentations() -> dict[str, Any]:
    """The configurations measured: decoding and tile cutting alone, then with the training's flips."""
    from mammoseg.dataset.pipeline import Augmentation

    return {"none": None, "flips": Augmentation(flips=True)}


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
        ds = make_dataset(options.data, "train", batch_size=options.batch_size, shuffle=True, repeat=True, augment=augment, random_tiles=True)
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
