"""Claim (a)'s false-positive measures by background tissue: the strata come from the dataset's manifest, and
an arm x tissue interaction planted in the runs is found where it is and not where it is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mammoseg.dataset.shards import MANIFEST_COLUMNS
from mammoseg.reporting import markdown
from mammoseg.reporting.aggregate import build_arms
from mammoseg.reporting.document import Document
from mammoseg.reporting.strata import CLASS_COLUMN, STRATUM_COLUMN, image_records, strata_section
from mammoseg.runs.rundir import Run

TISSUE = np.repeat(["F", "G", "D"], 30)


def _dataset(folder: Path) -> Path:
    folder.mkdir()
    ids = [f"mdb{i:03d}-normal" for i in range(len(TISSUE))]
    rows = {c: "" for c in MANIFEST_COLUMNS}
    frame = pd.DataFrame([{**rows, "example_id": i, "kind": "normal", "tissue": t} for i, t in zip(ids, TISSUE)])
    frame.to_csv(folder / "manifest.csv", index=False)
    return folder


def _run(arm: str, seed: int, data: Path, dense_excess: float) -> Run:
    """False-positive candidates per normal film: Poisson(1) everywhere, plus `dense_excess` on dense films."""
    rng = np.random.default_rng(100 * seed + len(arm))
    ids = [f"mdb{i:03d}-normal" for i in range(len(TISSUE))]
    fp = rng.poisson(1.0 + dense_excess * (TISSUE == "D"))
    frame = pd.DataFrame({"example_id": ids, "kind": "normal", "tp": 0.0, "fn": 0.0, "fp": 10.0 * fp,
                          "fp_candidates_op": fp.astype(float), "flagged_op": (fp > 0).astype(float)})
    config = {"variant": arm, "seed": seed, "image_size": 64, "dataset": {"path": str(data)}}
    return Run(Path("runs") / f"{arm}-seed{seed}", config, {}, frame)


def test_an_interaction_with_density_is_found_on_dense_films_only(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "mias")
    runs = [_run(arm, seed, data, excess) for seed in range(3)
            for arm, excess in (("fcn_skips", 4.0), ("dilated_resize", 0.0))]
    records = image_records(runs)
    strata = records[STRATUM_COLUMN]
    assert len(strata) == len(TISSUE) and set(strata.values()) == {"F", "G", "D"}
    assert records[CLASS_COLUMN] == {}  # the manifest's abnormality_type is empty on normal films
    arms, base = build_arms(runs, "dilated_resize", ["normal_fp_per_image_op"])
    section = strata_section(arms, base, strata)
    assert section is not None
    table = next(t for s in section.blocks if hasattr(s, "blocks") and "normal mammogram" in s.title
                 for t in s.blocks)
    assert table.header[1:4] == ("F (n=30)", "G (n=30)", "D (n=30)")
    fcn = dict(zip(table.header, next(r for r in table.rows if r[0] == "fcn_skips")))

    def interval(text: str) -> tuple[float, float, float]:
        estimate, low, high = (float(v) for v in text.replace("[", "").replace("]", "").replace(",", "").split())
        return estimate, low, high

    dense = interval(fcn["− dilated_resize: D"])
    assert 3.0 < dense[0] < 5.0 and dense[1] > 0  # the planted excess, clear of zero
    fatty = interval(fcn["− dilated_resize: F"])
    assert fatty[1] < 0 < fatty[2]  # no difference on fatty films
    assert fcn["p (arm × tissue)"] == "< 0.001"
    assert "By background tissue" in markdown.render(Document("t", (section,)))


def test_no_interaction_where_none_is_planted(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "mias")
    runs = [_run(arm, seed, data, 1.0) for seed in range(3) for arm in ("fcn_skips", "dilated_resize")]
    arms, base = build_arms(runs, "dilated_resize", ["normal_fp_per_image_op"])
    section = strata_section(arms, base, image_records(runs)[STRATUM_COLUMN])
    rows = [r for s in section.blocks if hasattr(s, "blocks") for t in s.blocks for r in t.rows if r[0] == "fcn_skips"]
    assert rows and all(float(r[-1]) > 0.01 for r in rows)  # dense films have more for both arms alike


def test_no_section_without_strata(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "mias")
    runs = [_run("dilated_resize", seed, data, 0.0) for seed in range(2)]
    arms, base = build_arms(runs, "dilated_resize", ["normal_fp_per_image_op"])
    assert strata_section(arms, base, {}) is None
    gone = [_run("dilated_resize", 0, tmp_path / "gone", 0.0)]
    assert image_records(gone) == {STRATUM_COLUMN: {}, CLASS_COLUMN: {}}


def test_lesions_found_at_the_operating_point_by_class(tmp_path: Path) -> None:
    """Masses found above the threshold, calcifications below it: 1.0 and 0.0, whole mammograms only."""
    classes = {"a-whole": "mass", "b-whole": "calc", "c-whole": "mass", "a-pos0": "mass"}
    ids = list(classes)
    kinds = ["whole", "whole", "whole", "positive"]

    def run(arm: str, seed: int) -> Run:
        frame = pd.DataFrame({"example_id": ids, "kind": kinds, "tp": 1.0, "fn": 0.0, "fp": 0.0})
        detections = {"image": np.array([0, 1, 2, 3, 3]), "score": np.array([2.0, -1.0, 0.5, -3.0, 0.1]),
                      "lesion": np.array([0, 0, 0, 0, -1]), "n_lesions": np.array([1, 1, 1, 1]),
                      "cut": np.full(4, -np.inf)}
        metrics = {"detection": {"operating_point": {"threshold": 0.0}}}
        return Run(Path("runs") / f"{arm}-seed{seed}", {"variant": arm, "seed": seed}, metrics, frame,
                   detections=detections)

    from mammoseg.reporting.strata import lesions_section

    arms, _ = build_arms([run(a, s) for s in range(2) for a in ("fcn_skips", "dilated_resize")], "dilated_resize",
                         ["froc_cpm"])
    section = lesions_section(arms, classes)
    table = section.blocks[1]
    assert table.header == ("Arm", "calc (lesions=1)", "mass (lesions=2)")
    assert [tuple(c.split()[0] for c in row[1:]) for row in table.rows] == [("0.000", "1.000")] * 2, table.rows
    assert lesions_section(arms, {k: "mass" for k in classes}) is None  # one class: nothing to compare
    merged = run("fcn_skips", 0)  # as merged folds carry them: each image at its own fold's threshold
    merged.detections["op_threshold"] = np.array([0.0, 0.0, 1.0, 0.0])
    arms, _ = build_arms([merged], None, ["froc_cpm"])
    assert [c.split()[0] for c in lesions_section(arms, classes).blocks[1].rows[0][1:]] == ["0.000", "0.500"]
