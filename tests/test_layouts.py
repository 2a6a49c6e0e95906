"""Every on-disk layout resolves each CSV row to the right files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cbis_factory import build_tree, read_table
from mammoseg.dataset import cbis, layouts
from mammoseg.dataset.layouts import open_layout
from mammoseg.core.errors import InputError


def _check_resolves(tree, layout: str) -> None:
    table = read_table(cbis.find_description_csvs(tree.root))
    assert layouts.detect(tree.root).name == layout
    resolver = open_layout(tree.root, "auto", table)
    assert resolver.layout == layout
    for _, row in table.iterrows():
        assert resolver.image_file(row["image_path"], row["image_series_uid"]) == tree.image_files[row["image_subject"]]
        files = resolver.files(row["crop_path"], row["crop_series_uid"]) + resolver.files(row["roi_path"], row["roi_series_uid"])
        assert set(files) == set(tree.roi_files[(row["image_subject"], row["abnormality_id"])])


@pytest.mark.parametrize("layout", ["csv-paths", "nbia", "kaggle-jpeg"])
def test_layout_resolves_every_row(tmp_path: Path, layout: str) -> None:
    _check_resolves(build_tree(tmp_path / layout, layout), layout)


def test_nbia_without_metadata_indexes_headers(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "nbia", "nbia", metadata_csv=False)
    assert not (tree.root / "metadata.csv").exists()
    _check_resolves(tree, "nbia")


def test_kaggle_without_dicom_info_uses_folders(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "kaggle", "kaggle-jpeg")
    (tree.root / "csv" / "dicom_info.csv").unlink()
    _check_resolves(tree, "kaggle-jpeg")


def test_missing_file_and_escaping_symlink(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "old", "csv-paths")
    table = read_table(cbis.find_description_csvs(tree.root))
    resolver = open_layout(tree.root, "csv-paths", table)
    row = table.iloc[0]
    image = tree.image_files[row["image_subject"]]
    outside = tmp_path / "outside.dcm"
    image.rename(outside)
    with pytest.raises(InputError, match="file not found"):
        resolver.image_file(row["image_path"], row["image_series_uid"])
    os.symlink(outside, image)
    with pytest.raises(InputError, match="outside the data root"):
        resolver.image_file(row["image_path"], row["image_series_uid"])


def test_no_images_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no known dataset layout found"):
        layouts.detect(tmp_path)


def test_cli_and_synth_choices_come_from_the_registry() -> None:
    from mammoseg.cli.data import prepare_command, synth_command

    choices = {p.name: p.type.choices for p in prepare_command.params if p.name == "layout"}
    assert list(choices["layout"]) == ["auto", *layouts.names()]
    assert {"mias", "images-masks", "nbia", "csv-paths", "kaggle-jpeg", "normals"} <= set(layouts.names())
    synth = next(p.type.choices for p in synth_command.params if p.name == "layout")
    assert set(synth) == {"nbia", "csv-paths", "kaggle-jpeg"}
    with pytest.raises(Exception, match="unknown layout 'nope'; choose one of auto, "):
        layouts.get("nope")


def _flat_detect(root: Path) -> bool:
    return (root / "lesions.txt").is_file()


def _flat_plan(root: Path, options, skips) -> layouts.Plan:
    """A layout written in a test: PNG films and a lesions.txt of `name row col radius` lines."""
    from mammoseg.dataset.examples import Abnormality, ImageJob

    circles = {}
    for line in (root / "lesions.txt").read_text().splitlines():
        name, *numbers = line.split()
        circles[name] = tuple(float(v) for v in numbers)
    return layouts.Plan([
        ImageJob(p.stem, p.stem, "", "", str(p), (Abnormality(1, "mass", "BENIGN", circle=circles[p.stem]),) if p.stem in circles else ())
        for p in sorted(root.glob("*.png"))
    ])  # fmt: skip


def test_a_layout_is_one_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A layout defined here, with no other file changed, is detected and prepared."""
    import cv2
    import numpy as np

    from cbis_factory import breast_image
    from mammoseg.dataset.examples import PrepareOptions
    from mammoseg.dataset.prepare import prepare

    flat = layouts.Layout("flat", "PNG films and lesions.txt", _flat_detect, _flat_plan, order=5)
    monkeypatch.setitem(layouts.registry(), "flat", flat)
    root = tmp_path / "flat"
    root.mkdir()
    for k in range(4):
        cv2.imwrite(str(root / f"film{k}.png"), breast_image(120, 90, np.random.default_rng(k)))
    (root / "lesions.txt").write_text("film0 60 30 8\nfilm2 50 25 6\n")
    assert layouts.detect(root) is flat
    result = prepare(root, tmp_path / "out", PrepareOptions(image_size=64, val_fraction=0.0), folds=2)
    assert result.images == 4
    manifest = (tmp_path / "out" / "fold-1" / "manifest.csv").read_text()
    assert "film0-whole" in manifest and "film1-whole" in manifest and ",normal," in manifest
