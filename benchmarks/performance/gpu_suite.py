"""The GPU figures of the performance yardsticks (docs/design.md §7) in one command, side by side.

On a machine with one GPU and an environment holding mammoseg, a Keras backend (JAX by default)
and PyTorch:

    python benchmarks/performance/gpu_suite.py --out gpu-results
    python benchmarks/performance/gpu_suite.py --out gpu-results --parts scaling --variants dilated_resize,fcn_skips

Parts (each measurement in a process of its own: JAX cannot reset its memory peak, and a fresh
process also keeps one measurement's allocations out of the next):
  main     every variant at 640, batch 64, mixed_bfloat16 under `mammoseg bench`, and the plain
           PyTorch `dilated_resize` (benchmarks/performance/torch_dilated_resize.py, compiled) at the same settings;
  batch16  `dilated_resize` and its PyTorch twin at batch 16;
  scaling  every variant at 320 (FCNs: 384), 640 and 1280, batch 16, one process per variant.
Writes every JSON and `summary.md` (images/s, TFLOP/s, peak memory, the Keras / PyTorch ratio, the
scaling table) into --out, and prints the summary. A measurement that fails (out of memory, say) is
listed with its error and the rest go on. A toy run on a CPU checks the plumbing:

    python benchmarks/performance/gpu_suite.py --out /tmp/suite --image-size 64 --width 0.125 --steps 2 --warmup 1 \
        --scaling-sizes 64 128 --batch-size 2 --small-batch 2 --scaling-batch 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mammoseg.models.registry import article_variant_names  # noqa: E402

VARIANTS = tuple(reversed(article_variant_names()))  # the article's five, its final model first
TORCH_SCRIPT = Path(__file__).with_name("torch_dilated_resize.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", default="main,batch16,scaling")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="of main and scaling, to split a long run")
    parser.add_argument("--backend", default="jax", help="KERAS_BACKEND of the mammoseg measurements")
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--small-batch", type=int, default=16)
    parser.add_argument("--scaling-sizes", type=int, nargs="+", default=[320, 640, 1280])
    parser.add_argument("--scaling-batch", type=int, default=16)
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--torch-python", default=sys.executable, help="Python with PyTorch (default: this one)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    variants = args.variants.split(",")

    failures: dict[str, str] = {}
    if "main" in parts:
        for variant in variants:
            _keras(args, f"{variant}-b{args.batch_size}", variant, [args.image_size], args.batch_size, failures)
        _torch(args, args.batch_size, failures)
    if "batch16" in parts:
        _keras(args, f"dilated_resize-b{args.small_batch}", "dilated_resize", [args.image_size], args.small_batch, failures)
        _torch(args, args.small_batch, failures)
    if "scaling" in parts:
        for variant in variants:
            sizes = [_fcn_size(s) if variant.startswith("fcn") else s for s in args.scaling_sizes]
            _keras(args, f"scaling-{variant}", variant, sizes, args.scaling_batch, failures)
    summary = summarize(args.out, failures)
    (args.out / "summary.md").write_text(summary)
    print(summary)


def _fcn_size(size: int) -> int:
    """The FCN variants need a multiple of 128: the nearest one at or above `size`."""
    return -(-size // 128) * 128


def _keras(args: argparse.Namespace, name: str, variant: str, sizes: list[int], batch: int,
           failures: dict[str, str]) -> None:
    command = [sys.executable, "-m", "mammoseg", "bench", "--variant", variant, "--batch-size", str(batch),
               "--precision", args.precision, "--width", str(args.width), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--out", str(args.out / f"keras-{name}.json")]
    for size in sizes:
        command += ["--image-size", str(size)]
    _run(name, command, {"KERAS_BACKEND": args.backend}, failures)


def _torch(args: argparse.Namespace, batch: int, failures: dict[str, str]) -> None:
    command = [args.torch_python, str(TORCH_SCRIPT), "--batch-size", str(batch), "--image-size", str(args.image_size),
               "--width", str(args.width), "--steps", str(args.steps), "--warmup", str(args.warmup), "--compile",
               "--precision", "bf16" if "bfloat16" in args.precision else "fp32",
               "--json", str(args.out / f"torch-b{batch}.json")]
    _run(f"torch-b{batch}", command, {}, failures)


def _run(name: str, command: list[str], env: dict[str, str], failures: dict[str, str]) -> None:
    print(f"== {name}: {' '.join(command)}", flush=True)
    done = subprocess.run(command, env=os.environ | env, capture_output=True, text=True)
    print(done.stdout[-2000:], flush=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        failures[name] = lines[-1] if lines else f"exit code {done.returncode}"
        print(f"   failed: {failures[name]}", flush=True)


def summarize(out: Path, failures: dict[str, str]) -> str:
    """Markdown tables from the JSON files in `out`."""
    rows = ["| measurement | variant | size | batch | train img/s | TFLOP/s | peak GiB | MiB/img | jit |",
            "|---|---|---|---|---|---|---|---|---|"]
    keras_speed: dict[tuple[int, int], float] = {}
    scaling: list[dict[str, Any]] = []
    environment = None
    for path in sorted(out.glob("keras-*.json")):  # "keras-dilated..." before "keras-scaling...": own measurements first
        record = json.loads(path.read_text())
        environment = environment or record["environment"]
        scaling += record.get("scaling", [])
        for model in record["models"]:
            if "train" not in model:
                continue
            train = model["train"]
            peak, per_image = train["peak_memory_bytes"], train["peak_memory_per_image_bytes"]
            rows.append(f"| {path.stem} | {model['variant']} | {model['image_size']} | {train['batch_size']} | "
                        f"{train['images_per_second']:.1f} | {train['tflops_per_second']:.1f} | "
                        f"{'-' if peak is None else f'{peak / 2**30:.1f}'} | "
                        f"{'-' if per_image is None else f'{per_image / 2**20:.0f}'} | {model['jit_compile']} |")
            if model["variant"] == "dilated_resize":
                keras_speed.setdefault((model["image_size"], train["batch_size"]), train["images_per_second"])
    lines = []
    if environment:
        lines.append(f"Keras backend {environment['keras_backend']} on {', '.join(environment['devices'])}; "
                     f"versions {json.dumps(environment['versions'])}\n")
    lines += rows
    torch_rows = []
    for path in sorted(out.glob("torch-b*.json")):
        record = json.loads(path.read_text())["figures"]  # benchmarks/record.py
        ours = keras_speed.get((record.get("image_size"), record.get("batch_size")))
        ratio = "-" if ours is None else f"{ours / record['images_per_second']:.2f}"
        torch_rows.append(f"| {record.get('batch_size')} | {record['images_per_second']:.1f} | "
                          f"{'-' if ours is None else f'{ours:.1f}'} | {ratio} |")
    if torch_rows:
        lines += ["", "dilated_resize, Keras against plain PyTorch on the same device (target: Keras / PyTorch >= 1):", "",
                  "| batch | PyTorch img/s | Keras img/s | Keras / PyTorch |", "|---|---|---|---|", *torch_rows]
    if scaling:
        lines += ["", "Scaling (relative to each variant's smallest size):", "",
                  "| variant | size | s/img | cost x | pixels x | cost ÷ pixels | MiB/img | memory x |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in scaling:
            memory, ratio = row["peak_memory_per_image_bytes"], row["memory_ratio"]
            lines.append(f"| {row['variant']} | {row['image_size']} | {row['train_seconds_per_image']:.5f} | "
                         f"{row['cost_ratio']:.2f} | {row['pixel_ratio']:.1f} | {row['cost_vs_pixels']:.2f} | "
                         f"{'-' if memory is None else f'{memory / 2**20:.0f}'} | {'-' if ratio is None else f'{ratio:.2f}'} |")
    if failures:
        lines += ["", "Failed:", *[f"- {name}: {error}" for name, error in failures.items()]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
