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
