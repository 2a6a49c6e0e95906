"""How much `prepare` costs beyond reading the pixels it must read.

Generates (once) full-size synthetic CBIS-DDSM DICOMs, then times on warm page cache:
  1. the bare read: pydicom `dcmread(...).pixel_array` of every file prepare reads (full images,
     crops, masks);
  2. `prepare` with 1 worker (decode, orient, crop, window, tiles, PNG encode, shard write);
  3. `prepare` with 2 workers.
The target is prepare(1 worker) <= 1.5 x the bare read.

    python benchmarks/bench_prepare.py --cases 10 --work /tmp/bench-prepare
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mammoseg-bench-prepare"))
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each timing")
    args = parser.parse_args()

    import cv2
    import pydicom

    from mammoseg.data.prepare import PrepareOptions, prepare
    from mammoseg.data.synthetic import generate
    from mammoseg.runtime import package_versions

    cv2.setNumThreads(1)  # the same single-threaded OpenCV a worker process uses
    root = args.work / "cbis"
    if not (root / "synth_truth.json").is_file() or json.loads((root / "synth_truth.json").read_text())["options"]["cases"] != args.cases:
        shutil.rmtree(root, ignore_errors=True)
        generate(root, cases=args.cases, seed=0, full_size=True, layout="nbia", workers=2)
    files = sorted(root.rglob("*.dcm"))
    size = sum(p.stat().st_size for p in files)
    for path in files:  # warm the page cache so that both sides read from memory
        path.read_bytes()

    def bare_read() -> float:
        start = time.perf_counter()
        for path in files:
            pydicom.dcmread(path).pixel_array
        return time.perf_counter() - start

    def run_prepare(workers: int) -> float:
        out = args.work / f"out-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        prepare(root, out, PrepareOptions(image_size=args.image_size), workers=workers)
        return time.perf_counter() - start

    read = min(bare_read() for _ in range(args.repeats))
    one = min(run_prepare(1) for _ in range(args.repeats))
    two = min(run_prepare(2) for _ in range(args.repeats))
    print(f"files: {len(files)} DICOMs, {size / 1e6:.0f} MB, {args.cases} full-size mammograms; "
          f"image size {args.image_size}; {os.cpu_count()} CPUs; versions {package_versions()}")
    print(f"bare pydicom read of the same files : {read:7.2f} s  ({read / args.cases * 1000:.0f} ms/image)")
    print(f"prepare, 1 worker                   : {one:7.2f} s  ({one / args.cases * 1000:.0f} ms/image)  "
          f"= {one / read:.2f} x bare read (target <= 1.5)")
    print(f"prepare, 2 workers                  : {two:7.2f} s  speed-up {one / two:.2f} x over 1 worker")


if __name__ == "__main__":
    sys.exit(main())
