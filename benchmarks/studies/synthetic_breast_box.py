"""Breast detection on the synthetic film scans against their truth.

The scans are rendered in memory from `mammoseg synth`'s plan (same seeds, same pixels as the files
it writes) and analysed with `mammoseg.dataset.preprocess.analyse`. Per scan:

  box IoU   the detected crop box (un-mirrored) against the truth's breast box;
  covered   share of the truth's breast (outside the scanner bands) the detection holds;
  extra     share of the detection outside it (the detection runs on through a band over the
            breast to the image edge, as on the real scans' reference masks; the truth stops there).

Goals: median box IoU >= 0.95, every scan >= 0.85, covered >= 98%.

    PYTHONPATH=. python benchmarks/studies/synthetic_breast_box.py --cases 20 --seeds 3 7
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from mammoseg.dataset import preprocess
from mammoseg.dataset.synthetic.plan import make_plan
from mammoseg.dataset.synthetic.render import render_case

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the record every benchmark writes
from record import write_record  # noqa: E402


def box_iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    rows = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    cols = max(0, min(a[3], b[3]) - max(a[2], b[2]))
    inter = rows * cols
    return inter / ((a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - inter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20, help="scans per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 7])
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--worst", type=int, default=5, help="scans listed, lowest IoU first")
    parser.add_argument("--json", type=Path, help="write the figures here (benchmarks/record.py)")
    args = parser.parse_args()

    rows = []
    for seed in args.seeds:
        for case in make_plan(args.cases, seed, args.image_size, False):
            rendered = render_case(case)
            start = time.perf_counter()
            analysis = preprocess.analyse(rendered.pixels, case.side)
            seconds = time.perf_counter() - start
            h, w = rendered.pixels.shape
            box = preprocess.Geometry(h, w, analysis.flip, analysis.box, 1).original_box()
            found = cv2.resize(analysis.breast, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
            covered = (found & rendered.breast).sum() / rendered.breast.sum()
            extra = (found & ~rendered.breast).sum() / max(1, found.sum())
            rows.append((box_iou(box, rendered.breast_box), covered, extra, seconds, seed, case.subject,
                         rendered.breast_box, box, rendered.band_boxes))
    iou, covered, extra, seconds = (np.array([r[i] for r in rows]) for i in range(4))
    print(f"{len(rows)} scans: box IoU median {np.median(iou):.3f} min {iou.min():.3f}, "
          f"{(iou < 0.9).sum()} below 0.9, {(iou < 0.95).sum()} below 0.95; covered median "
          f"{np.median(covered):.2%} min {covered.min():.2%}; extra median {np.median(extra):.2%} "
          f"max {extra.max():.2%}; analyse median {1000 * np.median(seconds):.1f} ms")
    write_record(args.json, {"seeds": args.seeds, "cases": args.cases, "image_size": args.image_size, "scans": [
        {"box_iou": r[0], "covered": r[1], "extra": r[2], "analyse_seconds": r[3], "seed": r[4], "subject": r[5]}
        for r in rows]})
    for r in sorted(rows, key=lambda r: r[0])[: args.worst]:
        print(f"  IoU {r[0]:.3f} covered {r[1]:.2%} seed {r[4]} {r[5]}: truth {r[6]} detected {r[7]} bands {r[8]}")


if __name__ == "__main__":
    main()
