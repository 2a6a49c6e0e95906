"""How much `prepare` costs beyond reading the pixels it must read.

Generates (once) full-size synthetic CBIS-DDSM DICOMs, then times, with the files in the page
cache (warm) and evicted from it (cold, as with a collection too large for memory):
  1. the bare read: pydicom `dcmread(...).pixel_array` of every file prepare reads (full images,
     crops, masks);
  2. `prepare` with 1 worker, whole images only, then with 2 positive + 2 negative tiles per image
     (decode, orient, crop, window, resize, PNG encode, shard and manifest writes, CSV reading);
  3. the same with 2 workers.
The target is prepare(1 worker) <= 1.5 x the bare read. Wall and CPU seconds are both shown: on a
machine shared with other work the CPU ratio is the steadier one.

    python benchmarks/bench_prepare.py --cases 10 --work /tmp/bench-prepare
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
    parser.add_argument("--cache", choices=["warm", "cold", "both"], default="both", help="page cache state of the files")
    parser.add_argument("--images-per-shard", type=int, default=2, help="small units balance the workers of a short run")
    args = parser.parse_args()

    import cv2
    import pydicom

    from mammoseg.dataset.prepare import PrepareOptions, prepare
    from mammoseg.dataset.synthetic import generate
    from mammoseg.core.runtime import package_versions

    cv2.setNumThreads(1)  # the same single-threaded OpenCV a worker process uses
    root = args.work / "cbis"
    if not (root / "synth_truth.json").is_file() or json.loads((root / "synth_truth.json").read_text())["options"]["cases"] != args.cases:
        shutil.rmtree(root, ignore_errors=True)
        generate(root, cases=args.cases, seed=0, full_size=True, layout="nbia", workers=2)
    files = sorted(root.rglob("*.dcm"))
    size = sum(p.stat().st_size for p in files)
    for path in files:  # warm runs read from memory; cold runs evict first
        path.read_bytes()

    def timed(fn) -> tuple[float, float]:
        """(wall, CPU) seconds of fn(), CPU including finished worker processes; CPU time is the
        fairer figure on a machine shared with other work."""
        before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before))
        return wall, cpu

    def bare_read() -> None:
        for path in files:
            pydicom.dcmread(path).pixel_array

    def run_prepare(workers: int, tiles: bool) -> None:
        out = args.work / f"out-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        n = 2 if tiles else 0
        options = PrepareOptions(image_size=args.image_size, positive_tiles=n, negative_tiles=n, images_per_shard=args.images_per_shard)
        prepare(root, out, options, workers=workers)

    def evict() -> None:
        """Drop the files from the page cache, as when a 163 GB collection cannot stay in memory."""
        for path in files:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

    def best(fn, cold: bool) -> tuple[float, float]:
        runs = []
        for _ in range(args.repeats):
            if cold:
                evict()
            runs.append(timed(fn))
        return min(r[0] for r in runs), min(r[1] for r in runs)

    print(f"files: {len(files)} DICOMs, {size / 1e6:.0f} MB, {args.cases} full-size mammograms; image size "
          f"{args.image_size}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; versions {package_versions()}")
    for cache in ("warm", "cold") if args.cache == "both" else (args.cache,):
        cold = cache == "cold"
        read = best(bare_read, cold)
        whole = best(lambda: run_prepare(1, tiles=False), cold)
        one = best(lambda: run_prepare(1, tiles=True), cold)
        two = best(lambda: run_prepare(2, tiles=True), cold)
        options = PrepareOptions(image_size=args.image_size, images_per_shard=args.images_per_shard)
        fixed = best(lambda: prepare(root, args.work / "out-1", options), cold)  # all units done: CSVs, plan, manifest
        print(f"page cache {cache}:                          wall s   CPU s  wall ms/image  x bare read (wall, CPU)")
        for name, (wall, cpu) in [("bare pydicom read of the same files", read), ("prepare, whole images only, 1 worker", whole),
                                  ("prepare, + 2 pos + 2 neg tiles, 1 worker", one)]:
            print(f"  {name:40s} {wall:7.2f} {cpu:7.2f} {wall / args.cases * 1000:10.0f} {wall / read[0]:10.2f} {cpu / read[1]:6.2f}")
        print(f"  {'prepare, + tiles, 2 workers':40s} {two[0]:7.2f} {two[1]:7.2f}   speed-up {one[0] / two[0]:.2f} x (wall) over 1 worker; "
              f"load average now {os.getloadavg()[0]:.1f}")
        print(f"  {'fixed part (re-run with every unit done)':40s} {fixed[0]:7.2f} {fixed[1]:7.2f}   per image without it, x bare read (CPU): "
              f"whole {(whole[1] - fixed[1]) / read[1]:.2f}, with tiles {(one[1] - fixed[1]) / read[1]:.2f}")
    print("target: prepare <= 1.5 x bare read")


if __name__ == "__main__":
    sys.exit(main())
