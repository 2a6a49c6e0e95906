"""Tiny CBIS-DDSM trees built in the tests themselves: every layout, small images, controllable defects.

The cases and their pixels are the tests' own; where the files go and the side files NBIA and
Kaggle add (metadata.csv, dicom_info.csv) come from `mammoseg.dataset.synthetic.formats`, which
`synth` writes its trees with, so both follow the one description of each layout."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mammoseg.core.errors import Skip
from mammoseg.dataset.cbis import OFFICIAL_NAMES, read_description_csv
from mammoseg.dataset.synthetic import formats
from mammoseg.dataset.synthetic.plan import CROP_DESCRIPTION, FULL_DESCRIPTION, MASK_DESCRIPTION


def read_table(csvs: dict[tuple[str, str], Path], problems: list[Skip] | None = None) -> pd.DataFrame:
    """Every row of the description CSVs as one table, as `prepare` reads them: one file at a time."""
    return pd.concat([read_description_csv(path, problems) for path in csvs.values()], ignore_index=True)


def write_dicom(path: Path, pixels: np.ndarray, series_uid: str = "1.2.3", *, monochrome1: bool = False, patient: str = "X") -> Path:
    """A CBIS-DDSM-like file through the project's one DICOM writer, with fake personal fields
    that must never reach a shard, a log or a report."""
    from mammoseg.dataset import dicom

    return dicom.write_dicom(path, pixels, {
        "SeriesInstanceUID": series_uid, "PatientID": patient, "PatientName": "Doe^Secret",
        "InstitutionName": "Hidden Hospital", "PhotometricInterpretation": "MONOCHROME1" if monochrome1 else "MONOCHROME2",
    })  # fmt: skip


def breast_image(h: int, w: int, rng: np.random.Generator, *, chest_left: bool = True) -> np.ndarray:
    """A 16-bit half-ellipse of tissue against the chest wall, plus a bright film label in a corner."""
    yy, xx = np.mgrid[0:h, 0:w]
    cx = 0 if chest_left else w - 1
    inside = ((xx - cx) / (0.8 * w)) ** 2 + ((yy - h / 2) / (0.45 * h)) ** 2 < 1
    img = rng.normal(600, 40, (h, w))
    tissue = 20000 + 8000 * np.sin(xx / 7.0) * np.cos(yy / 9.0) + rng.normal(0, 500, (h, w))
    img[inside] = tissue[inside]
    lx = w - w // 6 if chest_left else 2
    img[3 : 3 + h // 20, lx : lx + w // 8] = 60000
    return np.clip(img, 0, 65535).astype(np.uint16)


@dataclass
class Case:
    kind: str  # mass | calc
    split: str  # train | test
    patient: str
    side: str
    view: str
    abnormality: int = 1
    pathology: str = "MALIGNANT"
    image_shape: tuple[int, int] = (240, 160)
    box: tuple[int, int, int, int] = (100, 130, 30, 60)  # y0, y1, x0, x1 in the stored image
    mask_shape: tuple[int, int] | None = None  # defaults to image_shape
    swap: bool = False  # store the mask as 000000 and the crop as 000001 against the CSV's convention
    same_series: bool = True

    @property
    def subject(self) -> str:
        split = "Training" if self.split == "train" else "Test"
        return f"{self.kind.capitalize()}-{split}_{self.patient}_{self.side}_{self.view}"


@dataclass
class Tree:
    root: Path
    layout: str
    csvs: dict[tuple[str, str], Path]
    image_files: dict[str, Path] = field(default_factory=dict)  # image subject -> file
    roi_files: dict[tuple[str, int], list[Path]] = field(default_factory=dict)


def _uid(rng: np.random.Generator) -> str:
    return "1.3.6.1.4.1.9590.100.1.2." + str(rng.integers(1, 10)) + "".join(str(d) for d in rng.integers(0, 10, 37))


def default_cases() -> list[Case]:
    return [
        Case("mass", "train", "P_00001", "LEFT", "CC"),
        Case("mass", "train", "P_00001", "LEFT", "MLO", box=(60, 95, 20, 50)),
        Case("mass", "train", "P_00004", "RIGHT", "CC", box=(120, 150, 20, 45)),
        Case("calc", "train", "P_00005", "RIGHT", "MLO", pathology="BENIGN", box=(80, 100, 30, 50)),
        Case("calc", "train", "P_00005", "RIGHT", "MLO", abnormality=2, pathology="BENIGN", box=(150, 170, 40, 60)),
        Case("calc", "train", "P_00007", "LEFT", "CC", pathology="BENIGN_WITHOUT_CALLBACK"),
        Case("mass", "train", "P_00009", "LEFT", "CC"),
        Case("mass", "train", "P_00011", "RIGHT", "MLO", swap=True),
        Case("calc", "train", "P_00013", "LEFT", "MLO", same_series=False),
        Case("mass", "test", "P_00016", "LEFT", "CC"),
        Case("calc", "test", "P_00017", "RIGHT", "CC"),
        Case("calc", "test", "P_00001", "RIGHT", "CC"),  # a patient in both splits
    ]


def build_tree(root: Path, layout: str = "csv-paths", cases: list[Case] | None = None, seed: int = 0, metadata_csv: bool = True) -> Tree:
    """Write a tree in `layout` (nbia | csv-paths | kaggle-jpeg) and its four description CSVs."""
    rng = np.random.default_rng(seed)
    cases = default_cases() if cases is None else cases
    root.mkdir(parents=True, exist_ok=True)
    rows: dict[tuple[str, str], list[list[str]]] = {key: [] for key in OFFICIAL_NAMES}
    tree = Tree(root=root, layout=layout, csvs={})
    images: dict[str, tuple[str, str, np.ndarray]] = {}
    meta_rows: list[tuple[formats.ImageFile, int]] = []
    dicom_info: list[tuple[formats.ImageFile, bool]] = []
    for case in cases:
        chest_left = case.side == "LEFT"
        if case.subject not in images:
            study, series = _uid(rng), _uid(rng)
            images[case.subject] = (study, series, breast_image(*case.image_shape, rng, chest_left=chest_left))
            _store(tree, case.subject, study, series, FULL_DESCRIPTION, [images[case.subject][2]], meta_rows, dicom_info)
            tree.image_files[case.subject] = tree._last[0]  # type: ignore[attr-defined]
        study, series, image = images[case.subject]
        y0, y1, x0, x1 = case.box
        if not chest_left:
            x0, x1 = case.image_shape[1] - x1, case.image_shape[1] - x0
        mask = np.zeros(case.mask_shape or case.image_shape, np.uint8)
        mask[y0:y1, x0:x1] = 255
        crop = image[max(0, y0 - 5) : y1 + 5, max(0, x0 - 5) : x1 + 5].copy()
        roi_subject = f"{case.subject}_{case.abnormality}"
        roi_study, crop_series = _uid(rng), _uid(rng)
        if case.same_series:
            files = [mask, crop] if case.swap else [crop, mask]
            if case.kind == "calc":
                files = files[::-1]
            _store(tree, roi_subject, roi_study, crop_series, MASK_DESCRIPTION, files, meta_rows, dicom_info)
            roi_series = crop_series
            paths = tree._last  # type: ignore[attr-defined]
            crop_name, mask_name = ("000000.dcm", "000001.dcm") if case.kind == "mass" else ("000001.dcm", "000000.dcm")
        else:
            roi_series = _uid(rng)
            _store(tree, roi_subject, roi_study, crop_series, CROP_DESCRIPTION, [crop], meta_rows, dicom_info)
            paths = list(tree._last)  # type: ignore[attr-defined]
            _store(tree, roi_subject, roi_study, roi_series, MASK_DESCRIPTION, [mask], meta_rows, dicom_info)
            paths += tree._last  # type: ignore[attr-defined]
            crop_name = mask_name = "000000.dcm"
        tree.roi_files[(case.subject, case.abnormality)] = paths
        kind_fields = ["IRREGULAR", "SPICULATED"] if case.kind == "mass" else ["PLEOMORPHIC", "N/A"]
        rows[(case.kind, case.split)].append([
            case.patient, "3", case.side, case.view, str(case.abnormality),
            "mass" if case.kind == "mass" else "calcification", *kind_fields, "4", case.pathology, "3",
            f"{case.subject}/{study}/{series}/000000.dcm",
            f"{roi_subject}/{roi_study}/{crop_series}/{crop_name}" + ("\n" if case.kind == "calc" else ""),
            f"{roi_subject}/{roi_study}/{roi_series}/{mask_name}" + ("\n" if case.kind == "mass" else ""),
        ])  # fmt: skip
    csv_dir = root / "csv" if layout == "kaggle-jpeg" else root
    for key, name in OFFICIAL_NAMES.items():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow((formats.MASS_HEADER if key[0] == "mass" else formats.CALC_HEADER).split(","))
        writer.writerows(rows[key])
        csv_dir.mkdir(parents=True, exist_ok=True)
        (csv_dir / name).write_bytes(buf.getvalue().encode())
        tree.csvs[key] = csv_dir / name
    if layout == "nbia" and metadata_csv:
        (root / "metadata.csv").write_bytes(formats.nbia_metadata(meta_rows))
    if layout == "kaggle-jpeg":
        (root / "csv" / "dicom_info.csv").write_bytes(formats.dicom_info(dicom_info))
    return tree


def _store(tree: Tree, subject: str, study: str, series: str, description: str, arrays: list[np.ndarray], meta_rows: list, dicom_info: list) -> None:
    """Write one series' files where `tree.layout` puts them (`formats.ImageFile.path`); the side
    files' rows are gathered in `meta_rows` (NBIA) and `dicom_info` (Kaggle)."""
    paths: list[Path] = []
    for i, arr in enumerate(arrays):
        content = "full" if description == FULL_DESCRIPTION else "mask" if arr.dtype == np.uint8 else "crop"
        f = formats.ImageFile(content, subject, study, series, f"{series}{i + 1:03d}", i, description, arr)
        if tree.layout == "csv-paths":  # below the root itself: the CSV paths resolve there as well
            paths.append(tree.root / subject / study / series / f"{i:06d}.dcm")
        else:
            paths.append(tree.root / f.path(tree.layout))
        if tree.layout == "kaggle-jpeg":
            formats.write_jpeg(paths[-1], f)
            dicom_info.append((f, False))
        else:
            write_dicom(paths[-1], arr, series, patient=subject)
            meta_rows.append((f, paths[-1].stat().st_size))
    tree._last = paths  # type: ignore[attr-defined]
