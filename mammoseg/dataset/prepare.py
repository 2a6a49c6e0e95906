"""`mammoseg prepare`: CBIS-DDSM files -> TFRecord shards, one record per mammogram, with manifest.

Work is cut into units (a chunk of full mammograms of one split -> one shard file plus a sidecar
manifest part). A unit is written atomically and marked done last, so an interrupted run loses at
most the units in flight, and re-running skips every finished unit. The final manifest and report
are rebuilt from the parts. Each image draws its evaluation tiles and negative pool from a generator
seeded by the run's seed and the image key, so results do not depend on the number of workers or on
resuming. The manifest has one row per example the pipeline cuts: the whole breast and those tiles.

Normal mammograms from another collection (`normals`, see `mammoseg.dataset.normals`) become whole
images of kind `normal` with an empty mask, preprocessed like the CBIS-DDSM images, in units of
their own (`<split>-normal-<nnnnn>`) that resume and report skips like the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mammoseg.core.atomic import write_json, write_text
from mammoseg.dataset import cbis
from mammoseg.dataset.dicom import prefetch
from mammoseg.core.conventions import KINDS, SPLITS
from mammoseg.core.errors import Skip
from mammoseg.dataset.examples import Abnormality, ImageJob, PrepareOptions, process_image
from mammoseg.dataset.shards import MANIFEST_COLUMNS
from mammoseg.dataset.split import assign_by_fractions, assign_splits, split_fractions
from mammoseg.core.errors import InputError, MammosegError

logger = logging.getLogger("mammoseg.dataset")

FORMAT_VERSION = 2
"""2: one record per mammogram, tiles cut by the pipeline from the breast at working resolution."""
REPORT_COLUMNS = ["source", "file", "reason"]


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
) -> PrepareResult:
    """Prepare DATASET `out` from the CBIS-DDSM tree at `data_root`, and the normal mammograms
    below the folder `normals` if given (see the module docstring)."""
    data_root, out = Path(data_root), Path(out)
    if not data_root.is_dir():
        raise InputError(data_root, "data root is not a folder")
    recorded = {**asdict(options), "format_version": FORMAT_VERSION, "data_root": str(data_root.resolve())}
    skips: list[Skip] = []
    jobs, patient_split, layout = _plan_cbis_jobs(data_root, options, skips)
    units = _plan_units(jobs, options.images_per_shard)
    if normals is not None:
        normals = Path(normals)
        normal_jobs = _plan_normal_jobs(normals, patient_split, options.seed)
        units += _plan_units(normal_jobs, options.images_per_shard, "normal-", str(normals))
        recorded["normals"] = str(normals.resolve())  # only when given: datasets without keep their options
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
    manifest = pd.DataFrame([row for part in parts for row in part["manifest"]], columns=list(MANIFEST_COLUMNS))
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


def _plan_cbis_jobs(data_root: Path, options: PrepareOptions, skips: list[Skip]) -> tuple[list[ImageJob], dict[str, str], str]:
    """The CBIS-DDSM images to prepare, the patients' splits and the layout of the tree; raises
    InputError before anything is written when there is none: an empty DATASET would only fail
    later, in training."""
    from mammoseg.dataset.layouts import open_layout

    abnormalities = _read_csvs(data_root, skips)
    patient_split = assign_splits(abnormalities, options.val_fraction, options.seed)
    resolver = open_layout(data_root, options.layout, abnormalities)
    images = abnormalities["image_subject"].nunique()
    logger.info("layout: %s; %d abnormalities on %d images", resolver.layout, len(abnormalities), images)
    jobs = _plan_jobs(abnormalities, patient_split, resolver, data_root, skips)
    if not jobs:
        raise InputError(data_root, _nothing_to_prepare(images, skips))
    return jobs, patient_split, resolver.layout


def _plan_normal_jobs(normals: Path, patient_split: dict[str, str], seed: int) -> list[ImageJob]:
    """The normal mammograms below `normals`, their patients dealt out in the proportions of the
    CBIS-DDSM patients' splits."""
    from mammoseg.dataset.normals import find_normal_images

    found = find_normal_images(normals)
    normal_split = assign_by_fractions([n.patient_id for n in found], split_fractions(patient_split), seed)
    logger.info("normals: %d images of %d patients", len(found), len(normal_split))
    return [ImageJob(n.key, n.patient_id, "", normal_split[n.patient_id], str(n.file), ()) for n in found]


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


def _read_csvs(data_root: Path, skips: list[Skip]) -> pd.DataFrame:
    found = cbis.find_description_csvs(data_root)
    if not found:
        raise InputError(data_root, f"none of the CBIS-DDSM description CSVs found below this folder ({', '.join(cbis.OFFICIAL_NAMES.values())})")
    missing = [name for key, name in cbis.OFFICIAL_NAMES.items() if key not in found]
    if missing:
        logger.warning("%s: description CSVs not found: %s", data_root, ", ".join(missing))
    frames, problems = [], []
    for path in found.values():
        try:
            frames.append(cbis.read_description_csv(path, problems))
        except InputError as exc:
            logger.warning("%s; file skipped", exc)
            skips.append(Skip(path.name, str(path), exc.problem))
    skips.extend(Skip(p.source, p.file, p.reason) for p in problems)
    if not frames:
        raise InputError(data_root, "no usable CBIS-DDSM description CSV")
    return pd.concat(frames, ignore_index=True)


def _plan_jobs(abnormalities: pd.DataFrame, patient_split: dict[str, str], resolver: Any, data_root: Path, skips: list[Skip]) -> list[ImageJob]:
    """Resolve every image's files; images with a missing or unreachable file are skipped whole (a
    missing mask would turn an abnormality into 'normal' pixels). Rows are grouped as plain dicts:
    pandas' per-group overhead would cost milliseconds per image."""
    images: dict[str, list[dict[str, Any]]] = {}
    for record in abnormalities.to_dict("records"):
        images.setdefault(record["image_subject"], []).append(record)
    jobs = []
    for key, rows in sorted(images.items()):
        first = rows[0]
        try:
            image_file = resolver.image_file(first["image_path"], first["image_series_uid"])
            abns = []
            for row in sorted(rows, key=lambda r: r["abnormality_id"]):
                files = list(dict.fromkeys(
                    resolver.files(row["crop_path"], row["crop_series_uid"]) + resolver.files(row["roi_path"], row["roi_series_uid"])
                ))  # fmt: skip
                files = [f for f in files if f != image_file]
                if not files:
                    raise InputError(row["roi_path"], f"ROI files of abnormality {row['abnormality_id']} not found ({resolver.layout} layout)")
                abns.append(Abnormality(int(row["abnormality_id"]), row["abnormality_type"], row["pathology"], tuple(str(f) for f in files)))
        except InputError as exc:
            skips.append(Skip(str(key), _relative(exc.path, data_root), exc.problem))
            logger.warning("%s: %s (skipped %s)", _relative(exc.path, data_root), exc.problem, key)
            continue
        jobs.append(ImageJob(str(key), first["patient_id"], first["side"], patient_split[first["patient_id"]], str(image_file), tuple(abns)))
    return jobs


def _nothing_to_prepare(images: int, skips: list[Skip]) -> str:
    """Why no image can be prepared, in one line: how many images were found, and one problem of
    a found image (their ROI files, say) rather than of the missing ones."""
    missing = [s for s in skips if s.reason.startswith("file not found")]
    example = next((s for s in skips if not s.reason.startswith("file not found")), skips[0] if skips else None)
    first = f"; e.g. {example.file}: {example.reason}" if example else ""
    return f"nothing to prepare: {images - len(missing)} of the {images} image(s) in the CSVs found, none with all its files{first}"


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
                skips.append(Skip(job.image_key, _relative(exc.path, root), exc.problem))
                continue
            writer.write(record)
            for row in examples:
                rows.append({**row, "split": unit.split, "shard": shard_rel, "height": options.image_size, "width": options.image_size})
    # one sidecar, written atomically after the shard: its presence marks the unit done
    part = {"images": [j.image_key for j in unit.jobs], "manifest": rows, "skipped": [asdict(s) for s in skips],
            "warnings": [{**asdict(w), "file": _relative(w.file, data_root)} for w in warnings]}
    write_json(out / "parts" / f"{unit.name}.json", part)
    return unit.name, len(unit.jobs), skips


def _job_files(job: ImageJob) -> list[str]:
    return [job.image_file, *(f for abn in job.abnormalities for f in abn.roi_files)]


# --------------------------------------------------------------------------- outputs


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def _relative(path: str | Path, root: Path) -> str:
    """Report paths relative to the data root: shorter, and no user's home folder in shared reports."""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
