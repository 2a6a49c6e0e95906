"""Distributions of the kernel checkerboard score on random kernels, and the period scores under a border.

    PYTHONPATH=. python benchmarks/studies/checkerboard_measures.py

"former" is the score this project used before: phase sums over all input and output channels,
std / |mean| over the phases (unbounded, cancels opposite channels). Figures in benchmarks/RESULTS.md.
"""

import numpy as np

from mammoseg.metrics.checkerboard import crop_border, kernel_checkerboard_score, period_scores, resize_conv_kernel


def former(kernel: np.ndarray, s: int = 2) -> float:
    g = np.array([[kernel[a::s, b::s].sum() for b in range(s)] for a in range(s)]).ravel()
    return float(g.std() / abs(g.mean()))


def main() -> None:
    rng = np.random.default_rng(0)
    for label, mean in (("zero-mean N(0,1)", 0.0), ("mean-1 N(1,1)", 1.0)):
        for k in (3, 4):
            kernels = [rng.normal(mean, 1.0, size=(k, k, 16, 16)) for _ in range(300)]
            for name, score in (("new", lambda h: kernel_checkerboard_score(h, 2)), ("former", former)):
                v = np.array([score(h) for h in kernels])
                print(f"{label:17} k={k} {name:6}: median {np.median(v):.3f}  10-90% {np.percentile(v, 10):.3f}"
                      f"-{np.percentile(v, 90):.3f}  max {v.max():.3g}")
    print("resize x2 + conv 3x3 (16 -> 16 channels):",
          kernel_checkerboard_score(resize_conv_kernel(rng.normal(size=(3, 3, 16, 16)), 2), 2))
    yy, xx = np.mgrid[0:640, 0:640]
    pattern = ((yy // 32 + xx // 32) % 2) * 2.0 - 1.0  # pure period-64 checkerboard at 640
    print("period 64 at 640, border 80: blocks from the crop",
          round(period_scores(crop_border(pattern, 80), (64,))[64], 3),
          "| blocks aligned with the image", round(period_scores(pattern, (64,), 80)[64], 3))


if __name__ == "__main__":
    main()
