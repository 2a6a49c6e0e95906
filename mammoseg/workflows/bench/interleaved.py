"""Interleaved speed comparison: pairs of variants built once in one process and timed in alternating
blocks, so that both arms of a pair meet the same machine load, with a t interval on their speed ratio
(`metrics.speed.ratio_interval`).

Block pair i runs A then B when i is even, B then A when it is odd (ABBA), so a load that drifts
steadily over the benchmark favours neither arm. Every pair's blocks are interleaved with the other
pairs' too, so all pairs span the same stretch of time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mammoseg.core.errors import MammosegError
from mammoseg.metrics.speed import CONFIDENCE, ratio_interval
from mammoseg.workflows.bench.models import compiled_model, model_session, random_batch
from mammoseg.workflows.bench.options import BenchOptions

logger = logging.getLogger("mammoseg.bench")

ORDER = "ABBA"
METHOD = (
    "every model built and compiled once in one process, then warmed up (compilation; optimizer state); "
    "a block is `steps` model.train_on_batch calls on one random device-resident batch shared by all "
    "models, timed as a whole; block pair i runs A then B (i even) or B then A (i odd), and the pairs' "
    "blocks alternate with each other; ratio = speed A / speed B per block pair, t interval and test on "
    "the log ratios over the block pairs"
)


def compare_pairs(options: BenchOptions) -> dict[str, Any]:
    """Per pair of `options.compare`: every block's seconds, each arm's median images per second, the
    speed ratio A/B per block pair, its geometric mean, interval and p-value for ratio = 1."""
    from mammoseg.core.progress import Progress
    from mammoseg.models import check_image_size

    size = options.image_size
    variants = list(dict.fromkeys(v for pair in options.compare for v in pair))
    for variant in variants:
        try:
            check_image_size(variant, size)
        except ValueError as exc:
            raise MammosegError(str(exc)) from None
    load_before = os.getloadavg()
    with model_session(options.precision):
        steps, models = _warm_steps(variants, options)
        seconds: list[tuple[list[float], list[float]]] = [([], []) for _ in options.compare]  # per pair: A's, B's
        with Progress(total=options.blocks * len(options.compare) * 2, desc="interleaved blocks", unit="block") as progress:
            for i in range(options.blocks):
                for (a, b), (a_seconds, b_seconds) in zip(options.compare, seconds):
                    arms = ((a, a_seconds), (b, b_seconds))
                    for variant, times in arms if i % 2 == 0 else arms[::-1]:
                        times.append(_time_block(steps[variant], options.steps))
                        progress.update()
    pairs = [_pair_record(a, b, *times, options) for (a, b), times in zip(options.compare, seconds)]
    return {
        "method": METHOD,
        "order": ORDER,
        "image_size": size,
        "width": options.width,
        "batch_size": options.batch_size,
        "steps_per_block": options.steps,
        "blocks": options.blocks,
        "precision": options.precision,
        "loss": "weighted pixel cross-entropy (each variant's own positive weight) + L2, Adam",
        "confidence": CONFIDENCE,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "models": models,
        "pairs": pairs,
    }


def _warm_steps(variants: list[str], options: BenchOptions) -> tuple[dict[str, Callable[[], Any]], dict[str, dict[str, Any]]]:
    """One training step per variant, each already run `warmup` times; and each variant's parameter
    count and resolved jit_compile."""
    x, y = random_batch(options.image_size, options)
    steps: dict[str, Callable[[], Any]] = {}
    models: dict[str, dict[str, Any]] = {}
    for variant in variants:
        model = compiled_model(variant, options.image_size, options)
        logger.info("%s at %d: %d parameters; compiling", variant, options.image_size, model.count_params())
        steps[variant] = lambda model=model: model.train_on_batch(x, y)
        for _ in range(max(1, options.warmup)):
            steps[variant]()
        models[variant] = {"params": model.count_params(), "jit_compile": bool(model.jit_compile)}
    return steps, models


def _time_block(step: Callable[[], Any], steps: int) -> float:
    """Seconds of `steps` calls; each returns the loss to the host, so the block ends when the device is done."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def _pair_record(a: str, b: str, a_seconds: list[float], b_seconds: list[float], options: BenchOptions) -> dict[str, Any]:
    images = options.batch_size * options.steps
    ratio = ratio_interval(a_seconds, b_seconds)
    return {
        "a": a,
        "b": b,
        "a_block_seconds": a_seconds,
        "b_block_seconds": b_seconds,
        "a_images_per_second_median": float(np.median(images / np.asarray(a_seconds))),
        "b_images_per_second_median": float(np.median(images / np.asarray(b_seconds))),
        "block_speed_ratios": list(ratio.block_ratios),
        "speed_ratio": ratio.ratio,
        "speed_ratio_low": ratio.low,
        "speed_ratio_high": ratio.high,
        "p_value": ratio.p_value,
        "block_pairs": ratio.pairs,
    }
