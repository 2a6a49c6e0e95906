"""`mammoseg prepare`: a dataset on disk (any layout of `mammoseg.dataset.layouts`) -> TFRecord
shards, one record per mammogram, with manifest.

Work is cut into units (a chunk of full mammograms of one split -> one shard file plus a sidecar
manifest part). A unit is written atomically and marked done last, so an interrupted run loses at
most the units in flight, and re-running skips every finished unit. The final manifest and report
are rebuilt from the parts. Each image draws its evaluation tiles and negative pool from a generator
seeded by the run's seed and the image key, so results do not depend on the number of workers or on
resuming. The manifest has one row per example the pipeline cuts: the whole breast and those tiles.

Normal mammograms from another collection (`normals`, see `mammoseg.dataset.layouts.normals`) become whole
images of kind `normal` with an empty mask, preprocessed like the CBIS-DDSM images, in units of
their own (`<split>-normal-<nnnnn>`) that resume and report skips like the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from mammoseg.core.atomic import write_json, write_text
from mammoseg.core.conventions import KINDS, SPLITS
from mammoseg.core.errors import InputError, MammosegError, Skip
from mammoseg.dataset.dicom import prefetch
from mammoseg.dataset.examples import ImageJob, PrepareOptions, process_image, relative
from mammoseg.dataset.shards import MANIFEST_COLUMNS
from mammoseg.dataset.split import (DEFAULT_FOLDS, FOLD_FOLDER, assign_by_fractions, assign_folds, fold_folder,
                                    fold_splits, split_fractions)

logger = logging.getLogger("mammoseg.dataset")

FORMAT_VERSION = 2
"""2: one record per mammogram, tiles cut by the pipeline from the breast at working resolution."""
REPORT_COLUMNS = ["source", "file", "reason"]
FOLDS_FILE = "folds.json"
"""Written beside the fold datasets by `--folds K`: how many, the layout, and their folders. A run
picks its fold by its dataset folder (`--data OUT/fold-k`); an experiment whose data holds this file
runs every fold (`fold_datasets`)."""


def fold_datasets(data: str | Path) -> list[str] | None:
    """The fold dataset folders listed in `data`/folds.json, in fold order; None where there is no such file."""
    path = Path(data) / FOLDS_FILE
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text())["datasets"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(path, f"not a folds record ({exc!r})") from None
    if not (isinstance(names, list) and names and all(isinstance(n, str) and FOLD_FOLDER.fullmatch(n) for n in names)):
        raise InputError(path, f"datasets must list fold folders (fold-1, fold-2, ...), got {names!r}")
    return names


@dataclass
class Unit:
    name: str  # <split>-<nnnnn>, or <split>-normal-<nnnnn>
    split: str
    jobs: list[ImageJob] = field(default_factory=list)
    root: str | None = None  # folder that skipped files are named relative to; None: the data root


@dataclass(frozen=True)
class PrepareResult:
    """What a `prepare` run produced: example counts per split and kind, images, skipped cases."""

    dataset: Path
    counts: dict[str, dict[str, int]]
    images: int
    skipped: int
    units_run: int
    units_reused: int
    warnings: int = 0  # abnormalities outside the detected breast (prepare_report.csv)


def prepare(
    data_root: str | Path,
    out: str | Path,
    options: PrepareOptions = PrepareOptions(),
    *,
    workers: int = 1,
    overwrite: bool = False,
    strict: bool = False,
    normals: str | Path | None = None,
    folds: int | None = None,
    test_only: bool = False,
) -> PrepareResult:
    """Prepare DATASET `out` from the dataset at `data_root` (in `options.layout`, or the detected
    layout), and the normal mammograms below the folder `normals` if given. A layout without an
    official split is cut into folds by patient: with `folds` K, into K datasets `out/fold-1` ..
    `out/fold-K`, fold k the test set of the k-th (see `FOLDS_FILE`); without, `out` is the
    first of `DEFAULT_FOLDS` folds. With `test_only`, every image is in the test split, whatever the
    layout: a dataset that only external validation reads. Returns the result of the last dataset written."""
    from mammoseg.dataset import layouts

    data_root, out = Path(data_root), Path(out)
    if not data_root.is_dir():
        raise InputError(data_root, "data root is not a folder")
    layout = layouts.choose(data_root, options.layout)
    recorded = {**asdict(options), "format_version": FORMAT_VERSION, "data_root": str(data_root.resolve())}
    skips: list[Skip] = []
    plan = layout.plan(data_root, options, skips)
    normal_jobs = layouts.get("normals").plan(Path(normals), options, skips).jobs if normals is not None else []
    if normals is not None:
        recorded["normals"] = str(Path(normals).resolve())  # only when given: datasets without keep their options
    logger.info("layout: %s; %d images, %d normal images from --normals", layout.name, len(plan.jobs), len(normal_jobs))
    if test_only:
        if folds is not None:
            raise MammosegError("--test-only puts every image in the test split; it cannot be cut into --folds")
        recorded["test_only"] = True  # only when set: datasets without keep their recorded options
        tested = [[replace(j, split="test") for j in group] for group in (plan.jobs, normal_jobs)]
        return _prepare_one(out, data_root, tested[0], tested[1], normals, skips, options, recorded, layout.name,
                            workers, overwrite, strict)
    if not plan.patient_split:
        return _prepare_folds(out, data_root, plan.jobs, normal_jobs, normals, skips, options, recorded, layout.name,
                              folds, workers, overwrite, strict)
    if folds is not None:
        raise MammosegError(f"--folds is for datasets without an official split; the {layout.name} layout has one")
    normal_split = assign_by_fractions([j.patient_id for j in normal_jobs], split_fractions(plan.patient_split), options.seed)
    normal_jobs = [replace(j, split=normal_split[j.patient_id]) for j in normal_jobs]
    return _prepare_one(out, data_root, plan.jobs, normal_jobs, normals, skips, options, recorded, layout.name, workers,
                        overwrite, strict)


def _prepare_folds(
    out: Path, data_root: Path, jobs: list[ImageJob], normal_jobs: list[ImageJob], normals: str | Path | None,
    skips: list[Skip], options: PrepareOptions, recorded: dict[str, Any], layout: str, folds: int | None,
    workers: int, overwrite: bool, strict: bool,
) -> PrepareResult:
    """Patients cut into folds (`folds`, else `DEFAULT_FOLDS`), and one dataset per fold written:
    every fold's in `out/fold-k` with `folds`, only the first, in `out`, without. Every manifest
    row carries its image's test fold (`fold`)."""
    if folds is not None and folds < 2:
        raise MammosegError(f"--folds must be at least 2, got {folds}")
    abnormal: dict[str, bool] = {}
    for job in [*jobs, *normal_jobs]:
        abnormal[job.patient_id] = abnormal.get(job.patient_id, False) or not job.normal
    fold_of = assign_folds(abnormal, folds or DEFAULT_FOLDS, options.seed)
    if folds:
        write_json(out / FOLDS_FILE, {"folds": folds, "layout": layout,
                                     "datasets": [fold_folder(k) for k in range(1, folds + 1)]})
    results = []
    for fold in range(1, (folds or 1) + 1):
        split = fold_splits(fold_of, fold, options.val_fraction, options.seed)
        in_fold = [[replace(j, split=split[j.patient_id], extra=(*j.extra, ("fold", str(fold_of[j.patient_id])))) for j in group]
                   for group in (jobs, normal_jobs)]  # fmt: skip
        results.append(_prepare_one(
            out / fold_folder(fold) if folds else out, data_root, in_fold[0], in_fold[1], normals, list(skips), options,
            {**recorded, "fold": fold, "folds": folds or DEFAULT_FOLDS}, layout, workers, overwrite, strict,
        ))  # fmt: skip
    return results[-1]


def _prepare_one(
    out: Path, data_root: Path, jobs: list[ImageJob], normal_jobs: list[ImageJob], normals: str | Path | None,
    skips: list[Skip], options: PrepareOptions, recorded: dict[str, Any], layout: str, workers: int, overwrite: bool,
    strict: bool,
) -> PrepareResult:
    """One DATASET `out` from jobs whose splits are set: units planned, claimed, run and gathered."""
    units = _plan_units(jobs, options.images_per_shard)
    if normal_jobs:
        units += _plan_units(normal_jobs, options.images_per_shard, "normal-", str(normals))
    _claim_output(out, recorded, overwrite)
    _remove_stale(out, units)
    units_run = _run_pending(units, options, out, data_root, workers)
    result = _write_dataset(out, data_root, units, skips, recorded, layout, units_run)
    if strict and result.skipped:
        raise MammosegError(f"{result.skipped} case(s) skipped and --strict is set; see {out / 'prepare_report.csv'}")
    return result


def _write_dataset(
    out: Path, data_root: Path, units: list[Unit], skips: list[Skip], recorded: dict[str, Any], layout: str, units_run: int
) -> PrepareResult:
    """The manifest, report and dataset.json from the finished units' sidecars. When no image could
    be prepared, only the report of why is kept: no empty dataset."""
    parts = [_read_part(out, u) for u in units]
    rows = [row for part in parts for row in part["manifest"]]
    columns = list(dict.fromkeys([*MANIFEST_COLUMNS, *(key for row in rows for key in row)]))  # a layout's own columns last
    manifest = pd.DataFrame(rows, columns=columns)
    skipped = [asdict(s) for s in skips] + [row for part in parts for row in part["skipped"]]
    warned = [row for part in parts for row in part.get("warnings", [])]
    report = pd.DataFrame(skipped + warned, columns=REPORT_COLUMNS)
    _write_csv(out / "prepare_report.csv", report)
    prepared_images = int(manifest.loc[manifest["kind"].isin(["whole", "normal"]), "source_image"].nunique())
    if not prepared_images:
        for name in ("shards", "parts"):
            shutil.rmtree(out / name, ignore_errors=True)
        raise InputError(data_root, f"no image could be prepared ({len(skipped)} case(s) skipped); see {out / 'prepare_report.csv'}")
    _write_csv(out / "manifest.csv", manifest)
    counts = {split: {kind: int(((manifest["split"] == split) & (manifest["kind"] == kind)).sum()) for kind in KINDS} for split in SPLITS}
    write_json(out / "dataset.json", {
        "format_version": FORMAT_VERSION,
        "image_size": recorded["image_size"],
        "counts": counts,
        "options": recorded,
        "layout": layout,
        "images": {"prepared": prepared_images, "normal": int((manifest["kind"] == "normal").sum()),
                   "skipped_cases": len(skipped), "warnings": len(warned)},
        "patients": {split: int(manifest.loc[manifest["split"] == split, "patient_id"].nunique()) for split in SPLITS},
    })  # fmt: skip
    return PrepareResult(out, counts, prepared_images, len(skipped), units_run, len(units) - units_run, len(warned))


# --------------------------------------------------------------------------- planning


def _claim_output(out: Path, recorded: dict[str, Any], overwrite: bool) -> None:
    """Refuse to mix examples prepared with different options; `overwrite` clears our own files only."""
    options_file = out / "parts" / "options.json"
    previous = None
    for candidate in (options_file, out / "dataset.json"):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text())
            except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
                raise InputError(candidate, f"unreadable ({exc}); use --overwrite to start afresh") from exc
            if not isinstance(data, dict):
                raise InputError(candidate, "not a JSON object; use --overwrite to start afresh")
            previous = data.get("options", data)
            break
    if previous is not None and previous != recorded:
        if not overwrite:
            diff = ", ".join(f"{k} {previous.get(k)!r} -> {recorded.get(k)!r}" for k in {**previous, **recorded} if previous.get(k) != recorded.get(k))
            raise InputError(out, f"already prepared with different options ({diff}); use --overwrite or another --out")
    if overwrite and (previous is not None and previous != recorded or out.joinpath("parts").exists()):
        for name in ("manifest.csv", "prepare_report.csv", "dataset.json"):
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
        shutil.rmtree(out / "parts", ignore_errors=True)
        for shard in (out / "shards").glob("*.tfrecord") if (out / "shards").is_dir() else []:
            shard.unlink()
    (out / "shards").mkdir(parents=True, exist_ok=True)
    write_json(options_file, {"options": recorded})


def _remove_stale(out: Path, units: list[Unit]) -> None:
    """Shards and sidecars of units the current plan does not have (the input shrank since an
    earlier run), and temporary files of a killed run: left in place they would be read as data."""
    names = {u.name for u in units}
    for path in (out / "shards").glob("*.tfrecord"):
        if path.name.startswith(".") or path.stem not in names:
            path.unlink()
    for path in (out / "parts").glob("*.json"):
        if path.name.startswith(".") or (path.stem not in names and path.name != "options.json"):
            path.unlink()


def _plan_units(jobs: list[ImageJob], per_unit: int, prefix: str = "", root: str | None = None) -> list[Unit]:
    units: list[Unit] = []
    for split in SPLITS:
        mine = [j for j in jobs if j.split == split]
        for i in range(0, len(mine), per_unit):
            units.append(Unit(f"{split}-{prefix}{i // per_unit:05d}", split, mine[i : i + per_unit], root))
    return units


def _unit_done(out: Path, unit: Unit) -> bool:
    try:
        return _read_part(out, unit).get("images") == [j.image_key for j in unit.jobs]
    except (OSError, json.JSONDecodeError):
        return False


def _read_part(out: Path, unit: Unit) -> dict[str, Any]:
    """A finished unit's sidecar: its image keys, manifest rows and skipped cases."""
    return json.loads((out / "parts" / f"{unit.name}.json").read_text())


# --------------------------------------------------------------------------- running


def _run_pending(units: list[Unit], options: PrepareOptions, out: Path, data_root: Path, workers: int) -> int:
    """Run the units not done by an earlier run, showing progress; returns how many ran."""
    from mammoseg.core.progress import Progress

    pending = [u for u in units if not _unit_done(out, u)]
    if len(pending) < len(units):
        logger.info("resuming: %d of %d units already done", len(units) - len(pending), len(units))
    with Progress(sum(len(u.jobs) for u in pending), "preparing", unit="image") as bar:
        for _, n_images, unit_skips in _run_units(pending, options, out, data_root, workers):
            for skip in unit_skips:
                logger.warning("%s: %s (skipped %s)", skip.file, skip.reason, skip.source)
            bar.update(n_images)
    return len(pending)


def _run_units(units: list[Unit], options: PrepareOptions, out: Path, data_root: Path, workers: int):
    if workers <= 1 or len(units) <= 1:
        for unit, following in zip(units, [*units[1:], None]):
            yield run_unit(unit, options, out, data_root, following=following.jobs[0] if following else None)
        return
    import multiprocessing

    # fork starts workers in milliseconds, but not safely once TensorFlow's threads run in this
    # process (tests, notebooks): then pay for spawn's fresh interpreters instead
    context = multiprocessing.get_context("spawn" if "tensorflow" in sys.modules else "fork")
    with context.Pool(min(workers, len(units)), initializer=_init_worker) as pool:
        yield from pool.imap_unordered(_run_unit_star, [(u, options, out, data_root) for u in units])


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _run_unit_star(args: tuple[Unit, PrepareOptions, Path, Path]) -> tuple[str, int, list[Skip]]:
    return run_unit(*args)


def run_unit(
    unit: Unit, options: PrepareOptions, out: Path, data_root: Path, following: ImageJob | None = None
) -> tuple[str, int, list[Skip]]:
    """Process one unit: its shard, then its sidecar (manifest rows and skipped cases). `following`
    is the image processed next in this process, if known (the next unit's first)."""
    from mammoseg.dataset.shards import ShardWriter

    shard_rel = f"shards/{unit.name}.tfrecord"
    root = Path(unit.root) if unit.root else data_root
    rows: list[dict[str, Any]] = []
    skips: list[Skip] = []
    warnings: list[Skip] = []
    # while an image is processed, the disk reads the next (for files not in the page cache)
    queue = [*unit.jobs, *([following] if following is not None else [])]
    prefetch(_job_files(queue[0]))
    with ShardWriter(out / shard_rel) as writer:
        for i, job in enumerate(unit.jobs):
            if i + 1 < len(queue):
                prefetch(_job_files(queue[i + 1]))
            try:
                record, examples = process_image(job, options, warnings)
            except InputError as exc:
                skips.append(Skip(job.image_key, relative(exc.path, root), exc.problem))
                continue
            writer.write(record)
            for row in examples:
                rows.append({**row, "split": unit.split, "shard": shard_rel, "height": options.image_size, "width": options.image_size})
    # one sidecar, written atomically after the shard: its presence marks the unit done
    part = {"images": [j.image_key for j in unit.jobs], "manifest": rows, "skipped": [asdict(s) for s in skips],
            "warnings": [{**asdict(w), "file": relative(w.file, data_root)} for w in warnings]}
    write_json(out / "parts" / f"{unit.name}.json", part)
    return unit.name, len(unit.jobs), skips


def _job_files(job: ImageJob) -> list[str]:
    return [job.image_file, *(f for abn in job.abnormalities for f in abn.roi_files)]


# --------------------------------------------------------------------------- outputs


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_text(path, frame.to_csv(index=False, lineterminator="\n"))
