"""mini-MIAS: Info.txt's traps on small generated films, and the real database where it is at hand."""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from cbis_factory import breast_image
from mammoseg.core.errors import InputError, Skip
from mammoseg.dataset import layouts
from mammoseg.dataset.examples import PrepareOptions
from mammoseg.dataset.layouts.mias import plan

SIZE = 160  # films of the fixture are SIZE x SIZE


def _film(path: Path, seed: int, chest_left: bool) -> None:
    import cv2

    pixels = (breast_image(SIZE, SIZE, np.random.default_rng(seed), chest_left=chest_left) >> 8).astype(np.uint8)
    cv2.imwrite(str(path), pixels)


INFO_ROWS = [
    "mdb001 G CIRC B 60 40 12",  # woman 1: one circle, y counted from the bottom
    "mdb002 F NORM ",
    "mdb003 D CIRC M 50 100 10",  # woman 2: two rows for one film
    "mdb003 D SPIC M 70 110 8",
    "mdb004 D NORM",
    "mdb005 F CALC M *NOTE 3* ",  # woman 3: calcifications spread over the breast: no circle
    "mdb006 F CIRC B",  # a mass without centre and radius, like mdb059
    "mdb007 G MISC B 400 40 10",  # centre outside the image
    "mdb008 G NORM",  # its file is truncated
    "mdb009 G ARCH B 60 60 10",  # its file is missing
    "mdb010 G XXXX B 60 60 10",  # a class Info.txt does not define
    "mdb011 G NORM",
    "mdb012 G ASYM M 50 80 9",
]
"""Every trap of Info.txt, one film each; mdb013.pgm is on disk but not listed."""


@pytest.fixture()
def mias_folder(tmp_path: Path) -> Path:
    root = tmp_path / "all-mias"
    root.mkdir()
    header = "MIAS MiniMammographic Database\n\n1st column: MIAS database reference number.\nmdb is the prefix\n\n"
    (root / "Info.txt").write_text(header + "\n".join(INFO_ROWS) + "\n\n=====\n")
    for number in [*range(1, 9), 10, 11, 12, 13]:
        _film(root / f"mdb{number:03d}.pgm", number, chest_left=number % 2 == 0)
    data = (root / "mdb008.pgm").read_bytes()
    (root / "mdb008.pgm").write_bytes(data[: len(data) // 2])
    return root


def test_every_row_is_kept_or_left_out_with_its_reason(mias_folder: Path) -> None:
    assert layouts.detect(mias_folder).name == "mias"
    skips: list[Skip] = []
    found = plan(mias_folder, PrepareOptions(), skips)
    jobs = {j.image_key: j for j in found.jobs}
    assert sorted(jobs) == ["mdb001", "mdb002", "mdb003", "mdb004", "mdb011", "mdb012"]
    reasons = {s.source: s.reason for s in skips}
    assert "no centre and radius" in reasons["mdb005"] and "never counted as normal" in reasons["mdb005"]
    assert "no centre and radius" in reasons["mdb006"]
    assert "outside its 160x160 image" in reasons["mdb007"]
    assert "truncated PGM" in reasons["mdb008"]
    assert "names mdb009.pgm, which is not beside Info.txt" in reasons["mdb009"]
    assert "not understood" in reasons["mdb010"] and "XXXX" in reasons["mdb010"]
    assert "not listed in Info.txt" in reasons["mdb013"]
    assert all("\n" not in r for r in reasons.values())
    listed = {row.split()[0] for row in INFO_ROWS}
    assert set(jobs) | {s.source for s in skips} == listed | {"mdb013"}
    # origin bottom-left: (x, y) -> (row SIZE-1-y, column x); two rows -> two discs
    assert jobs["mdb001"].abnormalities[0].circle == (SIZE - 1 - 40, 60, 12)
    assert [a.circle for a in jobs["mdb003"].abnormalities] == [(SIZE - 1 - 100, 50, 10), (SIZE - 1 - 110, 70, 8)]
    assert jobs["mdb002"].normal and jobs["mdb004"].normal
    # films 2k-1 and 2k are one woman
    assert jobs["mdb001"].patient_id == jobs["mdb002"].patient_id != jobs["mdb003"].patient_id
    assert jobs["mdb011"].patient_id == jobs["mdb012"].patient_id
    assert dict(jobs["mdb003"].extra) == {"annotation": "circle", "tissue": "D", "abnormality_class": "CIRC+SPIC", "severity": "M"}
    assert [(a.kind, a.pathology) for a in jobs["mdb012"].abnormalities] == [("asymmetry", "MALIGNANT")]


def test_prepare_folds_by_woman(mias_folder: Path, tmp_path: Path) -> None:
    from mammoseg.dataset.prepare import FOLDS_FILE, prepare

    out = tmp_path / "prepared"
    options = PrepareOptions(image_size=64, val_fraction=0.0)
    prepare(mias_folder, out, options, folds=2)
    assert json.loads((out / FOLDS_FILE).read_text())["datasets"] == ["fold-1", "fold-2"]
    tested: dict[str, int] = {}
    for fold in (1, 2):
        info = json.loads((out / f"fold-{fold}" / "dataset.json").read_text())
        assert info["layout"] == "mias" and info["options"]["fold"] == fold
        rows = list(csv.DictReader(open(out / f"fold-{fold}" / "manifest.csv")))
        images = {r["source_image"]: r for r in rows if r["kind"] in ("whole", "normal")}
        assert {r["split"] for r in images.values() if r["fold"] == str(fold)} == {"test"}
        assert {r["split"] for r in images.values() if r["fold"] != str(fold)} == {"train"}
        for image, row in images.items():
            if row["split"] == "test":
                tested[image] = tested.get(image, 0) + 1
        by_woman = {}
        for row in images.values():
            by_woman.setdefault(row["patient_id"], set()).add(row["split"])
        assert all(len(splits) == 1 for splits in by_woman.values())
        assert images["mdb003"]["kind"] == "whole" and images["mdb003"]["annotation"] == "circle"
        assert images["mdb003"]["tissue"] == "D" and images["mdb003"]["severity"] == "M"
        assert images["mdb002"]["kind"] == "normal" and images["mdb002"]["severity"] == ""
        report = list(csv.DictReader(open(out / f"fold-{fold}" / "prepare_report.csv")))
        assert {"mdb005", "mdb006", "mdb007", "mdb008", "mdb009", "mdb010", "mdb013"} <= {r["source"] for r in report}
    assert tested == {k: 1 for k in ("mdb001", "mdb002", "mdb003", "mdb004", "mdb011", "mdb012")}


def test_the_archive_as_downloaded_is_read_as_its_films(mias_folder: Path, tmp_path: Path) -> None:
    """Info.txt beside all-mias.tar.gz (the films in a folder of the archive): the same jobs and
    reasons as from the unpacked folder; a damaged archive is one reason naming it."""
    unpacked: list[Skip] = []
    expected = plan(mias_folder, PrepareOptions(), unpacked)
    packed = tmp_path / "download"
    packed.mkdir()
    (packed / "Info.txt").write_bytes((mias_folder / "Info.txt").read_bytes())
    with tarfile.open(packed / "all-mias.tar.gz", "w:gz") as tar:
        for film in sorted(mias_folder.glob("*.pgm")):
            tar.add(film, arcname=f"all-mias/{film.name}")
    assert layouts.detect(packed).name == "mias"
    skips: list[Skip] = []
    found = plan(packed, PrepareOptions(), skips)
    assert [(j.image_key, j.abnormalities) for j in found.jobs] == [(j.image_key, j.abnormalities) for j in expected.jobs]
    assert sorted((s.source, s.file, s.reason) for s in skips) == sorted((s.source, s.file, s.reason) for s in unpacked)
    assert all(Path(j.image_file).is_file() for j in found.jobs)
    (packed / "all-mias.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(InputError, match="cannot unpack") as error:
        plan(packed, PrepareOptions(), [])
    assert error.value.path == str(packed / "all-mias.tar.gz")


@pytest.mark.shared
def test_the_real_mini_mias(tmp_path: Path, shared_root: Path) -> None:
    """322 films of 161 women; each of Info.txt's rows is in a job or in the report."""
    archive = shared_root / "mias" / "all-mias.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is absent: the real mini-MIAS cannot be read")
    skips: list[Skip] = []
    found = plan(archive.parent, PrepareOptions(), skips)  # read from the archive as downloaded
    info = (archive.parent / "Info.txt").read_text().splitlines()
    rows = [line for line in info if line.startswith("mdb")]
    assert len(rows) == 330
    films = sorted(Path(j.image_file).stem for j in found.jobs) + sorted(s.source for s in skips)
    films = sorted(films)
    assert len(films) == 322 and films == [f"mdb{n:03d}" for n in range(1, 323)]
    assert sorted(s.source for s in skips) == ["mdb059", "mdb216", "mdb233", "mdb245"]
    accounted = sum(max(1, len(j.abnormalities)) for j in found.jobs) + len(skips)
    assert accounted == len(rows)
    assert sum(j.normal for j in found.jobs) == 207
    from mammoseg.dataset.layouts.normals import patient_from_name

    assert len({patient_from_name(f"{f}.pgm") for f in films}) == 161
    assert len({j.patient_id for j in found.jobs}) == 161


def test_a_film_damaged_later_is_reported_and_the_rest_kept(mias_folder: Path, tmp_path: Path) -> None:
    from mammoseg.dataset.prepare import prepare

    out = tmp_path / "prepared"
    options = PrepareOptions(image_size=64, val_fraction=0.0)
    first = prepare(mias_folder, out, options)
    film = mias_folder / "mdb011.pgm"
    film.write_bytes(film.read_bytes()[:100])
    second = prepare(mias_folder, out, options)
    assert (first.images, second.images) == (6, 5)
    report = {r["source"]: r["reason"] for r in csv.DictReader(open(out / "prepare_report.csv"))}
    assert report["mdb011"].startswith("truncated PGM")
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert {r["source_image"] for r in rows} == {"mdb001", "mdb002", "mdb003", "mdb004", "mdb012"}
    assert json.loads((out / "dataset.json").read_text())["options"]["folds"] == 5
