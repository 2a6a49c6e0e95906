"""`mammoseg prepare`: CBIS-DDSM files -> TFRecord shards of whole breasts and tiles, with manifest.

Work is cut into units (a chunk of full mammograms of one split -> one shard file plus a sidecar
manifest part). A unit is written atomically and marked done last, so an interrupted run loses at
most the units in flight, and re-running skips every finished unit. The final manifest and report
are rebuilt from the parts. Each image draws its random tiles from a generator seeded by the run's
seed and the image key, so results do not depend on the number of workers or on resuming.

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
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammoseg.core.atomic import write_json, write_text
from mammoseg.dataset import cbis, preprocess
from mammoseg.dataset.dicom import prefetch, read_pixels
from mammoseg.core.conventions import KINDS, SPLITS
from mammoseg.dataset.shards import MANIFEST_COLUMNS
from mammoseg.dataset.split import assign_by_fractions, assign_splits, split_fractions
from mammoseg.core.errors import InputError, MammosegError, Skip

logger = logging.getLogger("mammoseg.data")

FORMAT_VERSION = 1
REPORT_COLUMNS = ["source", "file", "reason"]
PATHOLOGY_RANK = {"MALIGNANT": 0, "BENIGN": 1, "BENIGN_WITHOUT_CALLBACK": 2, "NONE": 3}
NEGATIVE_MIN_BREAST = 0.75
"""A negative tile must lie at least this much on breast tissue (background-only tiles teach nothing)."""
NEGATIVE_ATTEMPTS = 200
OUTSIDE_BREAST_WARNING = 0.01
"""An abnormality with more than this fraction of its pixels outside the detected breast is reported
(`prepare_report.csv`, reason starting 'warning:'): the breast detection or the ROI mask is wrong."""


@dataclass(frozen=True)
class PrepareOptions:
    """Everything that changes the prepared examples; recorded in dataset.json and checked on resume."""

    image_size: int = 640
    positive_tiles: int = 2
    negative_tiles: int = 2
    val_fraction: float = 0.1
    seed: int = 0
    layout: str = "auto"
    images_per_shard: int = 16

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise MammosegError(f"--image-size must be at least 16, got {self.image_size}")
        if self.positive_tiles < 0 or self.negative_tiles < 0:
            raise MammosegError("--positive-tiles and --negative-tiles cannot be negative")
        if not 0.0 <= self.val_fraction < 1.0:
            raise MammosegError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.images_per_shard < 1:
            raise MammosegError("images per shard must be at least 1")


@dataclass(frozen=True)
class Abnormality:
    abnormality_id: int
    kind: str  # mass | calc
    pathology: str
    roi_files: tuple[str, ...]


@dataclass(frozen=True)
class ImageJob:
    """A full mammogram and its abnormalities: the picklable input of one worker step."""

    image_key: str
    patient_id: str
    side: str
    split: str
    image_file: str
    abnormalities: tuple[Abnormality, ...]

    @property
    def normal(self) -> bool:
        """A mammogram without abnormalities: a normal image (`--normals`); every CBIS-DDSM image has one or more."""
        return not self.abnormalities


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
    from mammoseg.dataset.layouts import open_layout
    from mammoseg.dataset.normals import find_normal_images
    from mammoseg.core.progress import Progress

    data_root, out = Path(data_root), Path(out)
    if not data_root.is_dir():
        raise InputError(data_root, "data root is not a folder")
    recorded = {**asdict(options), "data_root": str(data_root.resolve())}
    normal_jobs: list[ImageJob] = []

    skips: list[Skip] = []
    abnormalities = _read_csvs(data_root, skips)
    patient_split = assign_splits(abnormalities, options.val_fraction, options.seed)
    resolver = open_layout(data_root, options.layout, abnormalities)
    logger.info("layout: %s; %d abnormalities on %d images", resolver.layout, len(abnormalities), abnormalities["image_subject"].nunique())
    jobs = _plan_jobs(abnormalities, patient_split, resolver, data_root, skips)
    if not jobs:  # before anything is written: an empty DATASET would only fail later, in training
        raise InputError(data_root, _nothing_to_prepare(abnormalities["image_subject"].nunique(), skips))
    if normals is not None:
        normals = Path(normals)
        found = find_normal_images(normals)
        normal_split = assign_by_fractions([n.patient_id for n in found], split_fractions(patient_split), options.seed)
        normal_jobs = [ImageJob(n.key, n.patient_id, "", normal_split[n.patient_id], str(n.file), ()) for n in found]
        logger.info("normals: %d images of %d patients", len(found), len(normal_split))
        recorded["normals"] = str(normals.resolve())  # only when given: datasets without keep their options
    _claim_output(out, recorded, overwrite)
    units = _plan_units(jobs, options.images_per_shard)
    if normal_jobs:
        units += _plan_units(normal_jobs, options.images_per_shard, "normal-", str(normals))
    _remove_stale(out, units)

    pending = [u for u in units if not _unit_done(out, u)]
    if len(pending) < len(units):
        logger.info("resuming: %d of %d units already done", len(units) - len(pending), len(units))
    with Progress(sum(len(u.jobs) for u in pending), "preparing", unit="image") as bar:
        for name, n_images, unit_skips in _run_units(pending, options, out, data_root, workers):
            for skip in unit_skips:
                logger.warning("%s: %s (skipped %s)", skip.file, skip.reason, skip.source)
            bar.update(n_images)

    parts = [_read_part(out, u) for u in units]
    manifest = pd.DataFrame([row for part in parts for row in part["manifest"]], columns=list(MANIFEST_COLUMNS))
    skipped = [asdict(s) for s in skips] + [row for part in parts for row in part["skipped"]]
    warned = [row for part in parts for row in part.get("warnings", [])]
    report = pd.DataFrame(skipped + warned, columns=REPORT_COLUMNS)
    _write_csv(out / "prepare_report.csv", report)
    prepared_images = int(manifest.loc[manifest["kind"].isin(["whole", "normal"]), "source_image"].nunique())
    if not prepared_images:  # every image failed: keep only the report of why, no empty dataset
        for name in ("shards", "parts"):
            shutil.rmtree(out / name, ignore_errors=True)
        raise InputError(data_root, f"no image could be prepared ({len(skipped)} case(s) skipped); see {out / 'prepare_report.csv'}")
    _write_csv(out / "manifest.csv", manifest)
    counts = {split: {kind: int(((manifest["split"] == split) & (manifest["kind"] == kind)).sum()) for kind in KINDS} for split in SPLITS}
    write_json(out / "dataset.json", {
        "format_version": FORMAT_VERSION,
        "image_size": options.image_size,
        "counts": counts,
        "options": recorded,
        "layout": resolver.layout,
        "images": {"prepared": prepared_images, "normal": int((manifest["kind"] == "normal").sum()),
                   "skipped_cases": len(skipped), "warnings": len(warned)},
        "patients": {split: int(manifest.loc[manifest["split"] == split, "patient_id"].nunique()) for split in SPLITS},
    })  # fmt: skip
    result = PrepareResult(out, counts, prepared_images, len(skipped), len(pending), len(units) - len(pending), len(warned))
    if strict and skipped:
        raise MammosegError(f"{len(skipped)} case(s) skipped and --strict is set; see {out / 'prepare_report.csv'}")
    return result


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
    skips.extend(problems)
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
                examples = process_image(job, options, warnings)
            except InputError as exc:
                skips.append(Skip(job.image_key, _relative(exc.path, root), exc.problem))
                continue
            for record, row in examples:
                writer.write(record)
                rows.append({**row, "split": unit.split, "shard": shard_rel, "height": options.image_size, "width": options.image_size})
    # one sidecar, written atomically after the shard: its presence marks the unit done
    part = {"images": [j.image_key for j in unit.jobs], "manifest": rows, "skipped": [asdict(s) for s in skips],
            "warnings": [{**asdict(w), "file": _relative(w.file, data_root)} for w in warnings]}
    write_json(out / "parts" / f"{unit.name}.json", part)
    return unit.name, len(unit.jobs), skips


def _job_files(job: ImageJob) -> list[str]:
    return [job.image_file, *(f for abn in job.abnormalities for f in abn.roi_files)]


def process_image(job: ImageJob, options: PrepareOptions, warnings: list[Skip]) -> list[tuple[bytes, dict[str, Any]]]:
    """All examples of one mammogram as (serialized record, manifest fields). Raises InputError when
    the image or any of its masks cannot be used: the image is then skipped whole. A normal image
    gives one example, the whole breast (kind `normal`, empty mask). Abnormalities that lie partly
    outside the detected breast are appended to `warnings`."""
    from mammoseg.dataset.shards import serialize_example

    pixels = read_pixels(job.image_file)
    size = options.image_size
    examples: list[tuple[bytes, dict[str, Any]]] = []

    def add(kind: str, suffix: str, image: np.ndarray, mask: np.ndarray, involved: list[Abnormality]) -> None:
        example_id = f"{job.image_key}-{suffix}"
        types = "+".join(sorted({a.kind for a in involved})) or "none"
        pathology = min((a.pathology for a in involved), key=PATHOLOGY_RANK.__getitem__, default="NONE")
        fraction = float(np.count_nonzero(mask)) / mask.size
        record = serialize_example(
            image, mask, example_id=example_id, kind=kind, patient_id=job.patient_id,
            abnormality_type=types, pathology=pathology, positive_fraction=fraction,
        )  # fmt: skip
        examples.append((record, {
            "example_id": example_id, "patient_id": job.patient_id, "source_image": job.image_key, "kind": kind,
            "abnormality_type": types, "pathology": pathology, "positive_fraction": round(fraction, 6),
        }))  # fmt: skip

    if job.normal:
        image, _ = preprocess.prepare_full_image(pixels, size, side=job.side)
        add("normal", "whole", image, np.zeros((size, size), np.uint8), [])
        return examples
    union = np.zeros(pixels.shape, np.uint8)  # pages are only allocated where abnormalities are pasted
    boxes = []
    analysis = preprocess.analyse(pixels, job.side)
    for abn in job.abnormalities:
        box, part = _abnormality_mask(abn, pixels.shape)
        _paste_max(union, box, part)
        boxes.append(box)
        outside = preprocess.outside_breast(analysis, box, part)
        if outside > OUTSIDE_BREAST_WARNING:
            warning = Skip(job.image_key, abn.roi_files[0], f"warning: {outside:.1%} of abnormality {abn.abnormality_id}'s pixels lie outside the detected breast (breast detection or ROI mask wrong); image kept")
            logger.warning("%s: %s", warning.source, warning.reason)
            warnings.append(warning)
    # every abnormal pixel lies in here: the mask resizes read nothing else of the full-size union
    within = _enclosing(boxes)
    rng = np.random.default_rng([options.seed, zlib.crc32(job.image_key.encode())])

    image, geometry = preprocess.prepare_full_image(pixels, size, analysis=analysis)
    add("whole", "whole", image, geometry.apply(union, binary=True, within=within), list(job.abnormalities))

    h, w = pixels.shape
    for k in range(options.positive_tiles):
        target = k % len(job.abnormalities)
        tile = preprocess.tile_side(pixels.shape, rng)
        y0, y1, x0, x1 = boxes[target]
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        slack_y, slack_x = max(0.0, (tile - (y1 - y0)) / 2), max(0.0, (tile - (x1 - x0)) / 2)
        cy += rng.uniform(-0.8, 0.8) * slack_y
        cx += rng.uniform(-0.8, 0.8) * slack_x
        top = int(np.clip(round(cy - tile / 2), 0, h - tile))
        left = int(np.clip(round(cx - tile / 2), 0, w - tile))
        tile_image, tile_mask = preprocess.extract_tile(pixels, union, analysis, (top, left), tile, size, within=within)
        if not tile_mask.any():  # an abnormality too small to cover half an output pixel
            continue
        involved = [a for a, b in zip(job.abnormalities, boxes) if _overlaps(b, (top, top + tile, left, left + tile))]
        add("positive", f"pos{k}", tile_image, tile_mask, involved)

    for k, (top, left, tile) in enumerate(_negative_tiles(pixels.shape, boxes, analysis, rng, options.negative_tiles)):
        tile_image, tile_mask = preprocess.extract_tile(pixels, None, analysis, (top, left), tile, size)
        add("negative", f"neg{k}", tile_image, np.zeros((size, size), np.uint8), [])
    return examples


def _abnormality_mask(abn: Abnormality, image_shape: tuple[int, int]) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The ROI mask among an abnormality's files, told from the crop by its pixels, fitted to the
    image: as its bounding box (y0, y1, x0, x1) and the uint8 0/255 mask inside it. Only the box is
    ever copied out of a full-size mask, which is otherwise read once (a memory map, no copy)."""
    import cv2

    found = []
    sizes = []
    for path in abn.roi_files:
        roi = read_pixels(path)
        sizes.append(f"{roi.shape[0]}x{roi.shape[1]} {roi.dtype}")
        if preprocess.classify_roi(roi, image_shape) == "mask":
            found.append((path, roi))
    if not found:
        raise InputError(abn.roi_files[0], f"no ROI mask among the {len(abn.roi_files)} file(s) of abnormality {abn.abnormality_id} ({', '.join(sizes)}; image {image_shape[0]}x{image_shape[1]})")
    parts = []
    for path, roi in found:
        if roi.shape != image_shape:
            try:
                roi = preprocess.fit_mask(roi, image_shape)
            except ValueError as exc:
                raise InputError(path, f"{exc} (abnormality {abn.abnormality_id})") from exc
        box = preprocess.foreground_box(roi, threshold=127)
        if box is not None:
            y0, y1, x0, x1 = box
            parts.append((box, cv2.threshold(roi[y0:y1, x0:x1], 127, 255, cv2.THRESH_BINARY)[1]))
    if not parts:
        raise InputError(found[0][0], f"ROI mask of abnormality {abn.abnormality_id} is empty")
    box = _enclosing([b for b, _ in parts])
    mask = np.zeros((box[1] - box[0], box[3] - box[2]), np.uint8)
    for (y0, y1, x0, x1), part in parts:
        _paste_max(mask, (y0 - box[0], y1 - box[0], x0 - box[2], x1 - box[2]), part)
    return box, mask


def _enclosing(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """The smallest box (y0, y1, x0, x1) holding all of `boxes`."""
    return min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes), max(b[3] for b in boxes)


def _paste_max(target: np.ndarray, box: tuple[int, int, int, int], part: np.ndarray) -> None:
    """Union `part` into `target` at `box` (y0, y1, x0, x1), in place."""
    region = target[box[0] : box[1], box[2] : box[3]]
    np.maximum(region, part, out=region)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def _negative_tiles(
    shape: tuple[int, int], boxes: list[tuple[int, int, int, int]], analysis: preprocess.Analysis, rng: np.random.Generator, count: int
) -> list[tuple[int, int, int]]:
    """Up to `count` tiles (top, left, side) on breast tissue with no abnormal pixel in them or in a
    margin of 1/8 tile around them (abnormal pixels lie only inside `boxes`, the abnormalities'
    bounding boxes); fewer when the breast leaves no such room."""
    h, w = shape
    y0, y1, x0, x1 = analysis.box
    if analysis.flip:
        x0, x1 = w - x1, w - x0
    chosen: list[tuple[int, int, int]] = []
    for _ in range(NEGATIVE_ATTEMPTS if count else 0):
        if len(chosen) == count:
            break
        tile = preprocess.tile_side(shape, rng)
        if y1 - y0 < tile or x1 - x0 < tile:
            continue
        top, left = int(rng.integers(y0, y1 - tile + 1)), int(rng.integers(x0, x1 - tile + 1))
        if preprocess.breast_fraction(analysis, (top, left), tile) < NEGATIVE_MIN_BREAST:
            continue
        m = tile // 8
        around = (top - m, top + tile + m, left - m, left + tile + m)
        if any(_overlaps(around, box) for box in boxes):
            continue
        if any(_overlaps((top, top + tile, left, left + tile), (t, t + side, l, l + side)) for t, l, side in chosen):
            continue
        chosen.append((top, left, tile))
    return chosen


# --------------------------------------------------------------------------- outputs


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def _relative(path: str | Path, root: Path) -> str:
    """Report paths relative to the data root: shorter, and no user's home folder in shared reports."""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
