"""The human-readable summary of a bench results record."""

from __future__ import annotations

from typing import Any


def format_table(result: dict[str, Any]) -> str:
    """The human-readable summary printed by `mammoseg bench`."""
    env = result["environment"]
    lines = [f"backend {env['keras_backend']}, devices {', '.join(env['devices'])}"]
    if result["models"]:
        lines += _model_lines(result["models"])
    if result.get("scaling"):
        lines += _scaling_lines(result["scaling"])
    if "pairs" in result.get("comparisons", {}):
        lines += _comparison_lines(result["comparisons"])
    lines += _pipeline_lines(result["pipeline"])
    lines.append(_prepare_line(result["prepare"]))
    return "\n".join(lines)


def _model_lines(models: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"{'variant':<18} {'size':>5} {'params':>11} {'GFLOP/img':>9} {'train img/s':>11} {'TFLOP/s':>8} "
        f"{'MiB/img':>8} {'infer img/s':>11} {'jit':>5}"
    ]
    for m in models:
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
    timed = [m for m in models if "train" in m]
    if timed:
        first = timed[0]
        lines.append(
            f"  ({first['precision']}, batch {first['train']['batch_size']}, {first['train']['steps']} timed steps; "
            f"MiB/img: training peak above resident memory, per image; {first['train']['memory_source'] or 'not measurable here'})"
        )
    return lines


def _scaling_lines(scaling: list[dict[str, Any]]) -> list[str]:
    lines = [
        "scaling (relative to each variant's smallest size; cost/pixels near 1 = grows with pixels):",
        f"  {'variant':<18} {'size':>5} {'s/img':>8} {'cost x':>7} {'pixels x':>8} {'cost/pixels':>11} {'memory x':>8}",
    ]
    for row in scaling:
        memory = row["memory_ratio"]
        lines.append(
            f"  {row['variant']:<18} {row['image_size']:>5} {row['train_seconds_per_image']:>8.4f} {row['cost_ratio']:>7.2f} "
            f"{row['pixel_ratio']:>8.1f} {row['cost_vs_pixels']:>11.2f} {'-' if memory is None else f'{memory:.2f}':>8}"
        )
    return lines


def _comparison_lines(comparisons: dict[str, Any]) -> list[str]:
    c = comparisons
    lines = [
        f"interleaved ({c['order']}): {c['blocks']} blocks of {c['steps_per_block']} steps per arm, batch {c['batch_size']}, "
        f"size {c['image_size']}, width {c['width']:g}; load average {c['load_average_before'][0]:.1f} -> "
        f"{c['load_average_after'][0]:.1f}",
        f"  {'A':<18} {'B':<18} {'A img/s':>8} {'B img/s':>8} {'speed A/B':>9} {'interval':>13} {'p':>8}",
    ]
    for p in c["pairs"]:
        interval = f"{p['speed_ratio_low']:.3f}-{p['speed_ratio_high']:.3f}"
        lines.append(
            f"  {p['a']:<18} {p['b']:<18} {p['a_images_per_second_median']:>8.2f} {p['b_images_per_second_median']:>8.2f} "
            f"{p['speed_ratio']:>9.3f} {interval:>13} {p['p_value']:>8.2g}"
        )
    lines.append(f"  (img/s: median over blocks; speed A/B: geometric mean of the block pairs' ratios, > 1: A faster; "
                 f"{c['confidence']:.0%} t interval)")
    return lines


def _pipeline_lines(pipe: dict[str, Any]) -> list[str]:
    if "skipped" in pipe:
        return [f"pipeline: skipped ({pipe['skipped']})"]
    lines = [f"pipeline: {pipe['dataset']} at {pipe['image_size']}, batch {pipe['batch_size']}, {pipe['cores']} cores"]
    for c in pipe["configurations"]:
        per_cpu = c["images_per_cpu_second"]
        lines.append(
            f"  {c['augmentation']:<6} {c['images_per_second']:8.1f} img/s  {c['images_per_second_per_core']:7.1f} per core"
            + ("" if per_cpu is None else f"  {per_cpu:7.1f} per CPU-second")
        )
    return lines


def _prepare_line(prep: dict[str, Any]) -> str:
    if "skipped" in prep:
        return f"prepare: skipped ({prep['skipped']})"
    return (
        f"prepare: {prep['files']} DICOMs of {prep['mean_megapixels']:.2f} MP: {prep['prepare_images_per_second']:.2f} img/s, "
        f"bare pydicom read {prep['bare_read_images_per_second']:.2f} img/s ({prep['prepare_vs_bare_read']:.2f}x)"
    )
