"""Distributions of the kernel checkerboard score on random kernels, and the period scores under a border.

    PYTHONPATH=. python benchmarks/studies/checkerboard_measures.py --json benchmarks/results/checkerboard-kernel-scores.json

"former" is the score this project used before: phase sums over all input and output channels,
std / |mean| over the phases (unbounded, cancels opposite channels). Figures in benchmarks/RESULTS.md.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from mammoseg.metrics.checkerboard import crop_border, kernel_checkerboard_score, period_scores, resize_conv_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the record every benchmark writes
from record import table, write_record  # noqa: E402

KERNELS = 300


def former(kernel: np.ndarray, s: int = 2) -> float:
    g = np.array([[kernel[a::s, b::s].sum() for b in range(s)] for a in range(s)]).ravel()
    return float(g.std() / abs(g.mean()))


def _summary(values: np.ndarray, digits: int) -> str:
    f = f".{digits}f" if digits else "#.3g"
    return (f"{np.median(values):{f}} ({np.percentile(values, 10):{f}}–{np.percentile(values, 90):{f}}), "
            f"{values.max():.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures and the RESULTS table here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows, figures = [], {}
    for label, mean in (("zero-mean N(0,1)", 0.0), ("mean-1 N(1,1)", 1.0)):
        for k in (3, 4):
            kernels = [rng.normal(mean, 1.0, size=(k, k, 16, 16)) for _ in range(KERNELS)]
            new = np.array([kernel_checkerboard_score(h, 2) for h in kernels])
            old = np.array([former(h) for h in kernels])
            rows.append([label, k, _summary(new, 3), _summary(old, 0)])
            figures[f"{label} k={k}"] = {name: {"median": float(np.median(v)), "p10": float(np.percentile(v, 10)),
                                                 "p90": float(np.percentile(v, 90)), "max": float(v.max())}
                                          for name, v in (("new", new), ("former", old))}
            print(" | ".join(map(str, rows[-1])))
    figures["resize_conv_3x3"] = kernel_checkerboard_score(resize_conv_kernel(rng.normal(size=(3, 3, 16, 16)), 2), 2)
    print("resize x2 + conv 3x3 (16 -> 16 channels):", figures["resize_conv_3x3"])
    yy, xx = np.mgrid[0:640, 0:640]
    pattern = ((yy // 32 + xx // 32) % 2) * 2.0 - 1.0  # pure period-64 checkerboard at 640
    figures["period64_border80"] = {"blocks_from_crop": period_scores(crop_border(pattern, 80), (64,))[64],
                                    "blocks_aligned_with_image": period_scores(pattern, (64,), 80)[64]}
    print("period 64 at 640, border 80:", figures["period64_border80"])
    columns = ["kernels", "k", "new: median (10–90%), max", "former: median (10–90%), max"]
    write_record(args.json, figures, {"checkerboard-kernel-scores": table(columns, rows)})


if __name__ == "__main__":
    main()
