"""mini-MIAS as distributed: `mdbNNN.pgm` films (1024x1024, 8-bit P5, 200 µm) and `Info.txt`, the
truth data, in one folder (or below it). Where the folder holds the archive `all-mias.tar.gz`
beside Info.txt instead of the films, its films are unpacked into a temporary folder for the run
(about 2 s), so the archive as downloaded is prepared as it is.

How `Info.txt` is read (its traps, each handled here):
- one row per abnormality: reference, background tissue (F/G/D), class (CALC, CIRC, SPIC, MISC,
  ARCH, ASYM; NORM for a normal film), severity (B/M), centre x y, radius. The circle encloses the
  abnormality: it becomes a disc mask, and the manifest says `annotation` = `circle`, so measures
  can score detection hits rather than Dice on these images;
- the origin of x y is the bottom-left corner: row = height - 1 - y;
- an image may have several rows: its abnormalities' discs are joined;
- rows without centre and radius (calcifications spread over the breast, `*NOTE 3*`, and mdb059)
  have no pixel truth. Their image is left out, with the reason in prepare_report.csv: an empty
  mask would teach and score an abnormal breast as normal. It is never counted as normal;
- films come in pairs, odd N the right and N+1 the left breast of one woman: the patient is the
  pair (`normals.patient_from_name`), so a split or fold never parts a woman's films.
The manifest also records `tissue`, `abnormality_class` (the image's classes joined by '+') and
`severity` (B, M, or both joined; empty for a normal film), to stratify results by density.
A row naming a missing file, a truncated or unreadable PGM, a centre outside the image, a film not
listed in Info.txt, and a row that cannot be parsed each leave that image out with a one-line reason.
"""

from __future__ import annotations

import atexit
import logging
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mammoseg.core.errors import InputError, Skip
from mammoseg.dataset.layouts import Layout, Plan
from mammoseg.dataset.layouts.normals import patient_from_name

if TYPE_CHECKING:
    from mammoseg.dataset.examples import Abnormality, ImageJob, PrepareOptions

logger = logging.getLogger("mammoseg.dataset")

INFO_FILE = "Info.txt"
ARCHIVE = "all-mias.tar.gz"
TISSUES = ("F", "G", "D")
CLASS_KINDS = {"CALC": "calc", "CIRC": "mass", "SPIC": "mass", "MISC": "mass", "ARCH": "distortion", "ASYM": "asymmetry"}
"""Info.txt's abnormality classes, and the abnormality type each is in the manifest."""
NORMAL_CLASS = "NORM"
SEVERITIES = {"B": "BENIGN", "M": "MALIGNANT"}
_ROW = re.compile(r"^(mdb\d{3})\s")
_FILM = re.compile(r"^mdb\d{3}\.pgm$")


@dataclass(frozen=True)
class Row:
    """One Info.txt row; `circle` (x, y, radius) as written, origin bottom-left, None when omitted."""

    line: int
    reference: str
    tissue: str
    abnormality_class: str
    severity: str
    circle: tuple[float, float, float] | None


def parse_info(path: Path, skips: list[Skip]) -> list[Row]:
    """Every row of Info.txt that names a film (`mdbNNN ...`); a row that cannot be parsed is
    appended to `skips` with its reason and left out."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from exc
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not _ROW.match(line):
            continue
        try:
            rows.append(_parse_row(number, line.split()))
        except ValueError as exc:
            skips.append(Skip(line.split()[0], f"{path.name}:{number}", f"Info.txt row not understood ({exc}); image left out"))
    return rows


def _parse_row(number: int, tokens: list[str]) -> Row:
    reference, rest = tokens[0], tokens[1:]
    if len(rest) < 2 or rest[0] not in TISSUES:
        raise ValueError(f"background tissue must be one of {'/'.join(TISSUES)}")
    tissue, abnormality_class, rest = rest[0], rest[1], rest[2:]
    if abnormality_class == NORMAL_CLASS:
        if rest:
            raise ValueError("a NORM row has nothing after its class")
        return Row(number, reference, tissue, abnormality_class, "", None)
    if abnormality_class not in CLASS_KINDS:
        raise ValueError(f"class {abnormality_class!r} is not one of {', '.join([*CLASS_KINDS, NORMAL_CLASS])}")
    if not rest or rest[0] not in SEVERITIES:
        raise ValueError(f"severity must be one of {'/'.join(SEVERITIES)}")
    severity, rest = rest[0], rest[1:]
    if not rest or rest[0].startswith("*"):  # `*NOTE 3*`: spread over the breast, no centre given
        return Row(number, reference, tissue, abnormality_class, severity, None)
    if len(rest) != 3:
        raise ValueError("expected centre x, y and radius")
    x, y, radius = (float(v) for v in rest)
    if radius <= 0:
        raise ValueError(f"radius {rest[2]} is not positive")
    return Row(number, reference, tissue, abnormality_class, severity, (x, y, radius))


def info_file(root: Path) -> Path | None:
    """Info.txt in the folder or one below (as the archive unpacks into a folder of its own); not
    searched deeper, so that detection stays cheap on a large tree of another layout."""
    candidates = [root / INFO_FILE, *sorted(root.glob(f"*/{INFO_FILE}"))]
    return next((p for p in candidates if p.is_file()), None)


def detect(root: Path) -> bool:
    """Info.txt beside mdbNNN.pgm films or the archive."""
    info = info_file(root)
    if info is None:
        return False
    return next(info.parent.glob("mdb[0-9][0-9][0-9].pgm"), None) is not None or (info.parent / ARCHIVE).is_file()


def plan(root: Path, options: PrepareOptions, skips: list[Skip]) -> Plan:
    """One job per film listed in Info.txt whose every row has its circle; split left to `prepare`."""
    info = info_file(root)
    if info is None:
        raise InputError(root, f"no {INFO_FILE} in this folder or one below (is it mini-MIAS?)")
    films = {p.stem: p for p in sorted(info.parent.glob("mdb*.pgm")) if _FILM.match(p.name)}
    shown = root  # the folder that reported film names are relative to
    if not films and (info.parent / ARCHIVE).is_file():
        films = _unpack(info.parent / ARCHIVE)
        shown = next(iter(films.values())).parent
    problems: list[Skip] = []
    rows = parse_info(info, problems)
    skips.extend(problems)
    damaged = {p.source for p in problems}  # a film with a row not understood is left out whole
    by_film: dict[str, list[Row]] = {}
    for row in rows:
        if row.reference not in damaged:
            by_film.setdefault(row.reference, []).append(row)
    jobs = []
    for reference, film_rows in sorted(by_film.items()):
        try:
            jobs.append(_job(reference, film_rows, films.get(reference), info))
        except InputError as exc:
            skips.append(Skip(reference, _name(exc.path, shown), exc.problem))
            logger.warning("%s: %s (skipped %s)", _name(exc.path, shown), exc.problem, reference)
    for reference in sorted(set(films) - set(by_film) - damaged):
        skips.append(Skip(reference, _name(films[reference], shown), f"not listed in {INFO_FILE}: its truth is unknown; image left out"))
    if not jobs:
        raise InputError(root, f"nothing to prepare: none of the {len(by_film)} film(s) in {INFO_FILE} could be used")
    logger.info("mini-MIAS: %d films listed, %d to prepare", len(by_film), len(jobs))
    return Plan(jobs)


def _unpack(archive: Path) -> dict[str, Path]:
    """The archive's films (members named mdbNNN.pgm, wherever they lie in it) unpacked into a
    temporary folder removed when the process ends; other members are not read."""
    folder = Path(tempfile.mkdtemp(prefix="mammoseg-mias-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    films = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = Path(member.name).name
                if member.isfile() and _FILM.match(name):
                    source = tar.extractfile(member)
                    assert source is not None  # a regular file
                    with source, open(folder / name, "wb") as target:
                        shutil.copyfileobj(source, target)
                    films[Path(name).stem] = folder / name
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise InputError(archive, f"cannot unpack ({exc})") from exc
    if not films:
        raise InputError(archive, "holds no mdbNNN.pgm film")
    logger.info("%s: %d films unpacked into %s", archive.name, len(films), folder)
    return dict(sorted(films.items()))


def _job(reference: str, rows: list[Row], film: Path | None, info: Path) -> ImageJob:
    """A film's job; InputError (the image left out) for a missing or damaged file, a row without
    a circle, or a centre outside the image."""
    from mammoseg.dataset.examples import ImageJob

    where = f"{info.name}:{rows[0].line}"
    if film is None:
        raise InputError(where, f"names {reference}.pgm, which is not beside {info.name}")
    height, width = pgm_size(film)
    abnormal = [r for r in rows if r.abnormality_class != NORMAL_CLASS]
    if abnormal and len(abnormal) != len(rows):
        raise InputError(where, f"{reference} is listed both as NORM and as abnormal")
    without = [r for r in abnormal if r.circle is None]
    if without:
        raise InputError(f"{info.name}:{without[0].line}", f"{reference} is abnormal ({without[0].abnormality_class}) but Info.txt gives no centre and radius: no pixel truth; left out, never counted as normal")
    abnormalities = tuple(_abnormality(k, r, height, width, info) for k, r in enumerate(abnormal, 1))
    number = int(reference[3:])
    extra = (
        ("annotation", "circle"), ("tissue", rows[0].tissue),
        ("abnormality_class", "+".join(dict.fromkeys(r.abnormality_class for r in rows))),
        ("severity", "+".join(dict.fromkeys(r.severity for r in abnormal))),
    )  # fmt: skip
    patient = patient_from_name(film.name)
    assert patient is not None  # the file name matched _FILM
    return ImageJob(reference, patient, "RIGHT" if number % 2 else "LEFT", "", str(film), abnormalities, extra)


def _abnormality(k: int, row: Row, height: int, width: int, info: Path) -> Abnormality:
    from mammoseg.dataset.examples import Abnormality

    assert row.circle is not None
    x, y, radius = row.circle
    if not (0 <= x < width and 0 <= y < height):
        raise InputError(f"{info.name}:{row.line}", f"centre ({x:g}, {y:g}) of {row.reference} lies outside its {width}x{height} image")
    return Abnormality(k, CLASS_KINDS[row.abnormality_class], SEVERITIES[row.severity],
                       circle=(height - 1 - y, x, radius))  # Info.txt's origin is the bottom-left corner


def pgm_size(path: Path) -> tuple[int, int]:
    """(height, width) from a binary PGM's header; InputError when it is not one or is cut short."""
    try:
        with open(path, "rb") as file:
            head = file.read(512)
            size = file.seek(0, 2)
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from exc
    fields: list[bytes] = []
    position = 0
    for match in re.finditer(rb"#[^\n]*\n|(\S+)", head):
        if match.group(1) is not None:
            fields.append(match.group(1))
            position = match.end()
        if len(fields) == 4:
            break
    if len(fields) < 4 or fields[0] != b"P5" or not all(f.isdigit() for f in fields[1:]):
        raise InputError(path, "not a binary PGM (P5) file")
    width, height, top = (int(f) for f in fields[1:])
    need = width * height * (1 if top < 256 else 2)
    have = size - (position + 1)
    if have < need:
        raise InputError(path, f"truncated PGM ({max(0, have)} of {need} pixel bytes)")
    return height, width


def _name(path: str | Path, root: Path) -> str:
    from mammoseg.dataset.examples import relative

    return relative(path, root) if Path(path).is_absolute() else str(path)


LAYOUT = Layout("mias", "mini-MIAS (mdbNNN.pgm films and Info.txt)", detect, plan, order=10)
