"""CPU training speed of mammoseg's networks beside plain PyTorch, alternating on the same cores.

One long-lived worker process per framework configuration builds the network, compiles it and
warms it up once; the driver then asks the workers in turn (rotating the order each round) for a
few seconds of training steps each, so every configuration sees the same background load in every
round, and reports medians over rounds. A matmul worker measures the CPU's float32 peak in the same
rounds. Configurations:

    keras-tf       Keras on TensorFlow, jit_compile False (mammoseg's default on a CPU)
    keras-tf-xla   Keras on TensorFlow, jit_compile True
    keras-jax      Keras on JAX (always XLA)
    torch-eager    plain PyTorch (benchmarks/performance/torch_dilated_resize.py, torch_fcn_skips.py), channels_last
    torch-compile  the same under torch.compile

A training step is Keras' `train_on_batch` / PyTorch's zero_grad-forward-loss-backward-Adam on random
float32 tensors (weighted pixel cross-entropy + L2), synchronised by reading the loss. FLOPs per
training image = 3 x the forward count of `mammoseg.models.count_flops`.

PyTorch and JAX are not mammoseg dependencies: give the interpreters of environments that have them
(each needs numpy; the JAX one keras too, and reaches mammoseg through PYTHONPATH):

    python benchmarks/performance/cpu_training.py --torch-python /work/torchenv/bin/python \\
        --jax-python /work/jaxenv/bin/python --json cpu-training.json
    python benchmarks/performance/cpu_training.py --variant dilated_resize --width 0.25 --rounds 2 --turn-seconds 2 ...

The same file is the worker: `--worker CONFIG` reads `run SECONDS` lines on stdin and answers each
with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the record every benchmark writes
from record import table, write_record  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIGS = ("keras-tf", "keras-tf-xla", "keras-jax", "torch-eager", "torch-compile")
TORCH_CONFIGS = ("torch-eager", "torch-compile")
MARK = "@cpu_training "
LEARNING_RATE = 7e-4  # as `mammoseg bench` and torch_dilated_resize.py


# --------------------------------------------------------------------------- workers


def _answer(record: dict[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(record) + "\n")
    sys.stdout.flush()


def _serve(step: Callable[[], Any], images_per_step: int, meta: dict[str, Any], warmup: int) -> None:
    """Warm up, say ready (with the warm-up time), then time steps for each `run SECONDS` request."""
    start = time.perf_counter()
    for _ in range(max(1, warmup)):
        step()
    _answer({**meta, "warmup_seconds": time.perf_counter() - start})
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            return
        budget = float(words[1])
        seconds: list[float] = []
        cpu0, begin = time.process_time(), time.perf_counter()
        while not seconds or (time.perf_counter() - begin < budget) or len(seconds) < 2:
            t0 = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - t0)
        _answer({"step_seconds": seconds, "images_per_step": images_per_step,
                 "cpu_seconds": time.process_time() - cpu0})


def keras_worker(config: str, variant: str, image_size: int, width: float, batch_size: int, warmup: int) -> None:
    os.environ["KERAS_BACKEND"] = "jax" if config == "keras-jax" else "tensorflow"
    import keras

    from mammoseg.models import build_model, count_flops, get_spec
    from mammoseg.core.runtime import package_versions
    from mammoseg.training.loss import WeightedPixelCrossEntropy

    keras.utils.set_random_seed(0)
    model = build_model(variant, image_size=image_size, width=width)
    jit = {"keras-tf": False, "keras-tf-xla": True, "keras-jax": "auto"}[config]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE),
                  loss=WeightedPixelCrossEntropy(get_spec(variant).positive_weight), jit_compile=jit)
    model.optimizer.build(model.trainable_variables)
    b, s = batch_size, image_size
    x = keras.random.uniform((b, s, s, 1), minval=-0.5, maxval=0.5, seed=1)
    y = keras.ops.cast(keras.random.uniform((b, s, s, 1), seed=2) > 0.9, "float32")
    versions = package_versions()
    meta = {"flops_forward_per_image": count_flops(model), "params": model.count_params(),
            "jit_compile": bool(model.jit_compile), "framework": f"Keras {keras.__version__} on "
            + (f"JAX {versions.get('jax')}" if config == "keras-jax" else f"TensorFlow {versions.get('tensorflow')}")}
    if config != "keras-jax":
        import tensorflow as tf

        meta["threads"] = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                           "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    _serve(lambda: model.train_on_batch(x, y), b, meta, warmup)


def torch_worker(config: str, variant: str, image_size: int, width: float, batch_size: int, warmup: int) -> None:
    sys.path.insert(0, str(HERE))
    import torch
    from torch import nn
    from torch_blocks import conv_flops, kernels, keras_style_param_count, training_loss
    from torch_dilated_resize import DilatedResize

    torch.manual_seed(0)
    if variant == "dilated_resize":
        model: nn.Module = DilatedResize(width)
    elif variant == "fcn_skips":
        from torch_fcn_skips import FcnSkips

        model = FcnSkips(width, image_size)
    else:
        raise SystemExit(f"no PyTorch twin of {variant}")
    meta = {"flops_forward_per_image": conv_flops(model, image_size), "params": keras_style_param_count(model),
            "framework": f"PyTorch {torch.__version__}", "threads": {"intra_op": torch.get_num_threads()}}
    model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if config == "torch-compile" else model
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    model_kernels = kernels(model)
    b, s = batch_size, image_size
    x = (torch.rand(b, 1, s, s) - 0.5).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(b, s, s) > 0.9).float()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = training_loss(step_model(x), y, model_kernels)
        loss.backward()
        optimizer.step()
        return loss.item()

    _serve(step, b, meta, warmup)


def matmul_worker(config: str, n: int) -> None:
    """float32 n x n products: numpy (its BLAS), TensorFlow (Eigen/oneDNN) or PyTorch (MKL)."""
    if config == "matmul-tf":
        import tensorflow as tf

        a, b = tf.random.uniform((n, n)), tf.random.uniform((n, n))
        step = lambda: tf.linalg.matmul(a, b).numpy()  # noqa: E731
        name = f"TensorFlow {tf.__version__}"
    elif config == "matmul-torch":
        import torch

        a, b = torch.rand(n, n), torch.rand(n, n)
        step = lambda: (a @ b)[0, 0].item()  # noqa: E731
        name = f"PyTorch {torch.__version__}"
    else:
        import numpy as np

        rng = np.random.default_rng(0)
        a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
        step = lambda: a @ b  # noqa: E731
        name = f"numpy {np.__version__}"
    _serve(step, 1, {"framework": name, "flops_per_call": 2 * n**3, "n": n}, warmup=1)


# --------------------------------------------------------------------------- driver


class Worker:
    """One configuration in its own process; `run` asks it for `seconds` of steps."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path, ready_timeout: float) -> None:
        self.name = name
        self.log = log.open("a")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True, env=env, cwd=ROOT)
        self.meta = self._read(ready_timeout)

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
            if time.monotonic() > deadline:
                break
        raise RuntimeError(f"{self.name}: no answer (exit code {self.process.poll()}); see {self.log.name}")

    def run(self, seconds: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"run {seconds}\n")
        self.process.stdin.flush()
        return self._read(timeout=seconds * 20 + 600)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
        self.log.close()


def parse_extra(spec: str) -> tuple[str, dict[str, str]]:
    """"keras-tf/inter1:TF_NUM_INTEROP_THREADS=1" -> ("keras-tf/inter1", {"TF_NUM_INTEROP_THREADS": "1"})."""
    name, _, assignments = spec.partition(":")
    if name.split("/")[0] not in CONFIGS or "/" not in name:
        raise SystemExit(f"--extra {spec}: expected BASE/LABEL:VAR=VALUE with BASE one of {', '.join(CONFIGS)}")
    return name, dict(a.split("=", 1) for a in assignments.split(",") if a)


def worker_command(args: argparse.Namespace, name: str, variant: str = "", width: float = 0.0) -> tuple[list[str], dict]:
    config = name.split("/")[0]
    python = {"keras-jax": args.jax_python, "matmul-torch": args.torch_python}.get(
        config, args.torch_python if config in TORCH_CONFIGS else sys.executable)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.update(dict(parse_extra(e) for e in args.extra).get(name, {}))
    command = [python, str(Path(__file__).resolve()), "--worker", config, "--matmul-size", str(args.matmul_size),
               "--image-size", str(args.image_size),
               "--batch-size", str(args.batch_size), "--warmup", str(args.warmup)]
    if variant:
        command += ["--variant", variant, "--width", str(width)]
    return command, env


def turn_rate(turn: dict[str, Any]) -> float:
    """Images (matmuls for the peak workers) per second of one turn."""
    return turn["images_per_step"] * len(turn["step_seconds"]) / sum(turn["step_seconds"])


def summarise(turns: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [turn_rate(t) for t in turns]
    steps = [s for t in turns for s in t["step_seconds"]]
    cpu = [t["cpu_seconds"] / sum(t["step_seconds"]) for t in turns]
    return {"rate_median": statistics.median(rates), "rate_min": min(rates), "rate_max": max(rates),
            "rates": rates, "step_seconds_median": statistics.median(steps), "steps": len(steps),
            "cpu_per_wall_median": statistics.median(cpu)}


def measure_group(args: argparse.Namespace, variant: str, width: float, configs: list[str],
                  peak: list[Worker], log_dir: Path) -> dict[str, Any]:
    workers: list[Worker] = []
    failed: dict[str, str] = {}
    extras = dict(parse_extra(e) for e in args.extra)
    try:
        for config in configs:
            print(f"  {variant} width {width}: starting {config}", flush=True)
            command, env = worker_command(args, config, variant, width)
            try:
                log = log_dir / f"{variant}-w{width}-{config.replace('/', '-')}.log"
                workers.append(Worker(config, command, env, log, args.ready_timeout))
                print(f"    ready after {workers[-1].meta['warmup_seconds']:.1f} s of warm-up", flush=True)
            except RuntimeError as exc:
                failed[config] = str(exc)
                print(f"    FAILED: {exc}", flush=True)
        turns: dict[str, list[dict[str, Any]]] = {w.name: [] for w in workers + peak}
        loads = []
        everyone = peak + workers
        for r in range(args.rounds):
            order = everyone[r % len(everyone):] + everyone[: r % len(everyone)]
            for worker in order:
                time.sleep(args.pause)
                loads.append(os.getloadavg()[0])
                seconds = args.turn_seconds if worker in workers else args.peak_seconds
                turns[worker.name].append(worker.run(seconds))
            done = ", ".join(f"{w.name} {turn_rate(turns[w.name][-1]):.2f}" for w in workers)
            print(f"    round {r + 1}/{args.rounds}: {done} images/s; load {loads[-1]:.2f}", flush=True)
    finally:
        for worker in workers:
            worker.close()
    return {
        "variant": variant, "width": width, "failed": failed, "load_average_1min": loads,
        "configs": {w.name: {"meta": w.meta, "environment": extras.get(w.name, {}), "turns": turns[w.name],
                             **summarise(turns[w.name])} for w in workers},
        "peak": {w.name: summarise(turns[w.name]) for w in peak},
    }


COLUMNS = ["network", "width", "configuration", "images/s median (min-max)", "vs PyTorch best", "GFLOP/s",
           "% of peak", "warm-up s"]


def report(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The matmul peak lines and the table rows: images/s (median over rounds, range), ratio to the best
    PyTorch, GFLOP/s, % of peak (COLUMNS)."""
    n = result["matmul_size"]
    peak_rates = [r for g in result["groups"] for p in g["peak"].values() for r in p["rates"]]
    peak = max(peak_rates) * 2 * n**3 / 1e9 if peak_rates else None
    lines = [f"float32 matmul {n}x{n} peak (best turn): {peak:.0f} GFLOP/s" if peak else "no matmul peak measured"]
    for name in dict.fromkeys(p for g in result["groups"] for p in g["peak"]):
        rates = [r for g in result["groups"] for r in g["peak"].get(name, {}).get("rates", [])]
        lines.append(f"- {name}: median {statistics.median(rates) * 2 * n**3 / 1e9:.0f} GFLOP/s over {len(rates)} turns")
    rows = []
    for g in result["groups"]:
        torch_best = max((c["rate_median"] for name, c in g["configs"].items() if name.split("/")[0] in TORCH_CONFIGS),
                         default=None)
        keras_flops = next((c["meta"]["flops_forward_per_image"] for name, c in g["configs"].items()
                            if name.startswith("keras")), None)
        for name, c in g["configs"].items():
            gflops = 3 * (keras_flops or c["meta"]["flops_forward_per_image"]) * c["rate_median"] / 1e9
            rows.append([g["variant"], f"{g['width']}", name,
                         f"{c['rate_median']:.2f} ({c['rate_min']:.2f}-{c['rate_max']:.2f})",
                         f"{c['rate_median'] / torch_best:.2f}" if torch_best else "-", f"{gflops:.1f}",
                         f"{100 * gflops / peak:.0f}" if peak else "-", f"{c['meta']['warmup_seconds']:.0f}"])
        rows += [[g["variant"], f"{g['width']}", name, f"failed: {why}", "", "", "", ""] for name, why in g["failed"].items()]
        load = g["load_average_1min"]
        if load:
            rows.append(["", "", f"load average (1 min) during the rounds: {min(load):.2f}-{max(load):.2f}",
                         "", "", "", "", ""])
    return lines, rows


def _write(path: Path | None, table_id: str, result: dict[str, Any]) -> None:
    peak_lines, rows = report(result)
    write_record(path, {**result, "peak_lines": peak_lines}, {table_id: table(COLUMNS, rows)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", choices=["dilated_resize", "fcn_skips"],
                        help="network (repeatable; default both)")
    parser.add_argument("--width", action="append", type=float,
                        help="width multiplier (repeatable; default 0.25 and 1.0)")
    parser.add_argument("--config", action="append", choices=CONFIGS, help="configuration (repeatable; default all)")
    parser.add_argument("--extra", action="append", default=[], metavar="BASE/LABEL:VAR=VALUE[,VAR=VALUE]",
                        help="also run configuration BASE with these environment variables, named BASE/LABEL "
                             "(e.g. keras-tf/inter1:TF_NUM_INTEROP_THREADS=1)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4, help="alternation rounds per network and width")
    parser.add_argument("--turn-seconds", type=float, default=6.0, help="training time per configuration and round")
    parser.add_argument("--peak-seconds", type=float, default=3.0, help="matmul time per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after building (compilation)")
    parser.add_argument("--matmul-size", type=int, default=4096, help="matrix size of the peak measurement")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between turns (idle threads settle)")
    parser.add_argument("--ready-timeout", type=float, default=1200.0, help="seconds a worker may take to warm up")
    parser.add_argument("--torch-python", help="interpreter with torch (default: skip the PyTorch configurations)")
    parser.add_argument("--jax-python", help="interpreter with jax and keras (default: skip keras-jax)")
    parser.add_argument("--json", type=Path, help="write every figure and the table here (benchmarks/record.py)")
    parser.add_argument("--table-id", default="cpu-training", help="the RESULTS.md block the table fills")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        args.worker = args.worker.split("/")[0]
        if args.worker.startswith("matmul"):
            matmul_worker(args.worker, args.matmul_size)
        elif args.worker in TORCH_CONFIGS:
            torch_worker(args.worker, args.variant[0], args.image_size, args.width[0], args.batch_size, args.warmup)
        else:
            keras_worker(args.worker, args.variant[0], args.image_size, args.width[0], args.batch_size, args.warmup)
        return

    configs = [c for c in tuple(args.config or CONFIGS) + tuple(parse_extra(e)[0] for e in args.extra)
               if not (c.split("/")[0] in TORCH_CONFIGS and not args.torch_python)
               and not (c.split("/")[0] == "keras-jax" and not args.jax_python)]
    log_dir = (args.json.parent if args.json else Path.cwd()) / "cpu-training-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    peak_configs = ["matmul-numpy", "matmul-tf"] + (["matmul-torch"] if args.torch_python else [])
    peak = []
    for config in peak_configs:
        command, env = worker_command(args, config)
        peak.append(Worker(config, command, env, log_dir / f"{config}.log", args.ready_timeout))
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": len(os.sched_getaffinity(0)),
                              "image_size": args.image_size, "matmul_size": args.matmul_size,
                              "batch_size": args.batch_size, "groups": []}
    try:
        for variant in args.variant or ["dilated_resize", "fcn_skips"]:
            for width in args.width or [0.25, 1.0]:
                result["groups"].append(measure_group(args, variant, width, configs, peak, log_dir))
                _write(args.json, args.table_id, result)
    finally:
        for worker in peak:
            worker.close()
    result["peak_meta"] = {w.name: w.meta for w in peak}
    _write(args.json, args.table_id, result)
    peak_lines, rows = report(result)
    print("\n".join(peak_lines + [" | ".join(COLUMNS)] + [" | ".join(row) for row in rows]))


if __name__ == "__main__":
    main()
