"""Fuzz mammoseg's readers with corrupted real-format inputs and print the outcome counts per category.

Same cases as tests/test_fuzz.py (tests/input_fuzz.py), at any count and seed; exits 1 when any
case ended in a traceback or a wrong outcome, and prints those.

    python benchmarks/studies/fuzz_inputs.py --cases 1000 --seed 3 --seconds 600
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def main() -> None:
    from input_fuzz import run_fuzz, settings_from_env

    cases, seed, seconds = settings_from_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=cases, help="about this many cases (env MAMMOSEG_FUZZ_CASES)")
    parser.add_argument("--seed", type=int, default=seed, help="env MAMMOSEG_FUZZ_SEED")
    parser.add_argument("--seconds", type=float, default=seconds, help="time budget (env MAMMOSEG_FUZZ_SECONDS)")
    parser.add_argument("--work", type=Path, help="folder for the corrupted files [default: a temporary one]")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mammoseg-fuzz-") as tmp:
        report = run_fuzz(args.work or Path(tmp), args.cases, args.seed, args.seconds)
    print(f"seed {report.seed}, {report.seconds:.1f} s{' (stopped at the time budget)' if report.stopped_early else ''}; "
          f"DICOMs on {'a real CBIS-DDSM scan' if report.real_scan else 'a synthetic'} header")
    print(report.table())
    for failure in report.failures:
        print("\n" + failure)
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
