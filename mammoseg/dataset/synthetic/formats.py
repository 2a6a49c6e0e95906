"""CBIS-DDSM's file formats: DICOM headers, the description CSVs' exact bytes, NBIA and Kaggle side files.

These follow the real collection byte for byte where readers could depend on it (CSV headers, CRLF,
the one quoted path per row ending in a bare newline, `N/A`), because the synthetic tree stands in
for the real one on every code path.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.uid import SecondaryCaptureImageStorage

from mammoseg.core.atomic import write_bytes
from mammoseg.dataset.dicom import write_dicom
from mammoseg.dataset.synthetic.plan import Abnormality, Case

MASS_HEADER = ("patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,"
               "mass shape,mass margins,assessment,pathology,subtlety,image file path,cropped image file path,"
               "ROI mask file path")
CALC_HEADER = ("patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,"
               "calc type,calc distribution,assessment,pathology,subtlety,image file path,cropped image file path,"
               "ROI mask file path")
NBIA_COLUMNS = ["Series UID", "Collection", "3rd Party Analysis", "Data Description URI", "Subject ID", "Study UID",
                "Study Description", "Study Date", "Series Description", "Manufacturer", "Modality",
                "SOP Class Name", "SOP Class UID", "Number of Images", "File Size", "File Location",
                "Download Timestamp"]
DICOM_INFO_COLUMNS = ["file_path", "image_path", "AccessionNumber", "BitsAllocated", "BitsStored", "BodyPartExamined",
                      "Columns", "ContentDate", "ContentTime", "ConversionType", "HighBit", "InstanceNumber",
                      "Laterality", "Modality", "PatientBirthDate", "PatientID", "PatientName", "PatientOrientation",
                      "PatientSex", "PhotometricInterpretation", "PixelRepresentation", "ReferringPhysicianName",
                      "Rows", "SOPClassUID", "SOPInstanceUID", "SamplesPerPixel", "SeriesDescription",
                      "SeriesInstanceUID", "SeriesNumber", "SpecificCharacterSet", "StudyDate", "StudyID",
                      "StudyInstanceUID", "StudyTime"]
STUDY_DATES = ["07-20-2016", "08-07-2016", "08-29-2017", "09-06-2017"]
COLLECTION_DOI = "https://doi.org/10.7937/K9/TCIA.2016.7O02S9CY"
DOWNLOAD_TIMESTAMP = "2026-01-05T10:00:00.000"


def study_date(study_uid: str) -> str:
    """MM-DD-YYYY as NBIA folders write it; fixed per study so the bytes repeat for a seed."""
    return STUDY_DATES[int(study_uid[-1]) % len(STUDY_DATES)]


@dataclass
class ImageFile:
    """One stored image: where the CSV and the layouts put it, and what it holds."""

    content: str  # full | crop | mask
    subject: str
    study_uid: str
    series_uid: str
    sop_uid: str
    index: int  # 0/1: the CSV's 00000N.dcm, NBIA's 1-(N+1).dcm, Kaggle's (N+1)-nnn.jpg
    series_folder: str  # the series description NBIA names the folder after
    pixels: np.ndarray | None
    photometric: str = "MONOCHROME2"
    side: str = "LEFT"
    rows: int = 0
    cols: int = 0
    bits: int = 16
    bits_stored: int = 0  # of the `bits` allocated; 0: all of them

    def __post_init__(self) -> None:
        if self.pixels is not None:
            self.rows, self.cols = (int(n) for n in self.pixels.shape)
            self.bits = 8 if self.pixels.dtype == np.uint8 else 16

    @property
    def description(self) -> str:
        return {"full": "full mammogram images", "crop": "cropped images", "mask": "ROI mask images"}[self.content]

    def path(self, layout: str) -> str:
        """Path relative to the tree's root in `layout`."""
        if layout == "csv-paths":
            return f"CBIS-DDSM/{self.subject}/{self.study_uid}/{self.series_uid}/{self.index:06d}.dcm"
        if layout == "nbia":
            return f"CBIS-DDSM/{self.subject}/{self.series_dir}/1-{self.index + 1}.dcm"
        return f"jpeg/{self.series_uid}/{self.kaggle_name}.jpg"

    @property
    def series_dir(self) -> str:
        """NBIA's `<date>-DDSM-NA-<study tail>/<n>.000000-<description>-<series tail>`."""
        return (f"{study_date(self.study_uid)}-DDSM-NA-{self.study_uid[-5:]}/"
                f"1.000000-{self.series_folder}-{self.series_uid[-5:]}")

    @property
    def kaggle_name(self) -> str:
        return f"{self.index + 1}-{int(self.sop_uid[-3:]) % 300:03d}"


def case_images(case: Case, full: np.ndarray, masks: list[np.ndarray], crops: list[np.ndarray]) -> list[ImageFile]:
    """The files of one full image and its ROI series, with the case's quirks applied to contents."""
    stored = ((1 << case.bits_stored) - 1 - full) if case.monochrome1 else full
    files = [ImageFile("full", case.subject, case.study_uid, case.series_uid, case.sop_uid, 0,
                       "full mammogram images", stored, "MONOCHROME1" if case.monochrome1 else "MONOCHROME2",
                       case.side, bits_stored=case.bits_stored)]
    for a, mask, crop in zip(case.abnormalities, masks, crops):
        files.extend(roi_images(a, mask, crop, case.side))
    return files


def roi_images(a: Abnormality, mask: np.ndarray, crop: np.ndarray, side: str) -> list[ImageFile]:
    """Crop and mask files at the places the CSV row names (swapped in content when the ROI is `swapped`)."""
    if a.mask_size_delta:
        dr, dc = a.mask_size_delta
        mask = _resize_nearest(mask, mask.shape[0] + dr, mask.shape[1] + dc)
    folder_crop = "cropped images" if a.split_series else "ROI mask images"
    contents = [("crop", crop, a.crop_sop_uid), ("mask", mask, a.mask_sop_uid)]
    if a.swapped:
        contents.reverse()
    places = [(a.crop_study_uid, a.crop_series_uid, a.crop_index, folder_crop),
              (a.mask_study_uid, a.mask_series_uid, a.mask_index, "ROI mask images")]
    return [ImageFile(kind, a.roi_subject, study, series, sop, index, folder, pixels, side=side)
            for (kind, pixels, sop), (study, series, index, folder) in zip(contents, places)]


def _resize_nearest(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    yi = np.minimum((np.arange(rows) * mask.shape[0] / rows).astype(int), mask.shape[0] - 1)
    xi = np.minimum((np.arange(cols) * mask.shape[1] / cols).astype(int), mask.shape[1] - 1)
    return np.ascontiguousarray(mask[yi][:, xi])


def header_fields(f: ImageFile) -> dict[str, object]:
    """The DICOM attributes written for a file (also the Kaggle `dicom_info.csv` values)."""
    bits, stored = f.bits, f.bits_stored or f.bits
    mm, dd, yyyy = study_date(f.study_uid).split("-")
    return {
        "SpecificCharacterSet": "ISO_IR 100",
        "SOPClassUID": SecondaryCaptureImageStorage,
        "SOPInstanceUID": f.sop_uid,
        "StudyDate": f"{yyyy}{mm}{dd}",
        "ContentDate": f"{yyyy}{mm}{dd}",
        "StudyTime": "",
        "ContentTime": "",
        "AccessionNumber": "",
        "Modality": "MG",
        "ConversionType": "WSD",
        "ReferringPhysicianName": "",
        "SeriesDescription": f.description,
        "PatientName": f.subject,
        "PatientID": f.subject,
        "PatientBirthDate": "",
        "PatientSex": "",
        "BodyPartExamined": "BREAST",
        "StudyInstanceUID": f.study_uid,
        "SeriesInstanceUID": f.series_uid,
        "StudyID": "DDSM",
        "SeriesNumber": 1,
        "InstanceNumber": f.index + 1,
        "PatientOrientation": "",
        "Laterality": f.side[0],
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": f.photometric,
        "Rows": f.rows,
        "Columns": f.cols,
        "BitsAllocated": bits,
        "BitsStored": stored,
        "HighBit": stored - 1,
        "PixelRepresentation": 0,
    }


def write_dicom_file(path: Path, f: ImageFile) -> int:
    """Write a stored image as CBIS-DDSM's Secondary Capture DICOM; returns its size in bytes."""
    assert f.pixels is not None
    return write_dicom(path, f.pixels, header_fields(f)).stat().st_size


def write_jpeg(path: Path, f: ImageFile) -> int:
    """8-bit JPEG as in the Kaggle copy (stored values, so MONOCHROME1 stays inverted; masks lose binarity)."""
    import cv2

    assert f.pixels is not None
    img = f.pixels if f.bits == 8 else (f.pixels >> ((f.bits_stored or 16) - 8)).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    write_bytes(path, buf.tobytes())
    return len(buf)


def description_csv(kind: str, cases: list[Case]) -> bytes:
    """One of the four description CSVs, in the real files' exact bytes."""
    lines = [MASS_HEADER if kind == "mass" else CALC_HEADER]
    rows = sorted(((c, a) for c in cases for a in c.abnormalities),
                  key=lambda ca: (ca[0].patient_id, ca[0].side, ca[0].view, ca[1].abnormality_id))
    for c, a in rows:
        image = f"{c.subject}/{c.study_uid}/{c.series_uid}/000000.dcm"
        crop = f"{a.roi_subject}/{a.crop_study_uid}/{a.crop_series_uid}/{a.crop_index:06d}.dcm"
        mask = f"{a.roi_subject}/{a.mask_study_uid}/{a.mask_series_uid}/{a.mask_index:06d}.dcm"
        # The real files end one path per row with a newline, inside quotes: the mask path in the
        # mass files, the crop path in the calc files.
        if kind == "mass":
            mask = f'"{mask}\n"'
        else:
            crop = f'"{crop}\n"'
        abnormality_type = "mass" if kind == "mass" else "calcification"
        lines.append(",".join([c.patient_id, str(c.density), c.side, c.view, str(a.abnormality_id), abnormality_type,
                               a.descriptor_a, a.descriptor_b, str(a.assessment), a.pathology, str(a.subtlety),
                               image, crop, mask]))
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _csv_bytes(columns: list[str], rows: list[dict[str, object]], lineterminator: str) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator=lineterminator, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def nbia_metadata(files: list[tuple[ImageFile, int]]) -> bytes:
    """NBIA Data Retriever's `metadata.csv`: one row per series, `File Location` relative to the root."""
    series: dict[str, dict[str, object]] = {}
    for f, size in files:
        row = series.setdefault(f.series_uid, {
            "Series UID": f.series_uid, "Collection": "CBIS-DDSM", "3rd Party Analysis": "NO",
            "Data Description URI": COLLECTION_DOI, "Subject ID": f.subject, "Study UID": f.study_uid,
            "Study Description": "", "Study Date": study_date(f.study_uid), "Series Description": f.series_folder,
            "Manufacturer": "", "Modality": "MG", "SOP Class Name": "Secondary Capture Image Storage",
            "SOP Class UID": SecondaryCaptureImageStorage, "Number of Images": 0, "File Size": 0,
            "File Location": f"./CBIS-DDSM/{f.subject}/{f.series_dir}", "Download Timestamp": DOWNLOAD_TIMESTAMP})
        row["Number of Images"] = int(row["Number of Images"]) + 1  # type: ignore[call-overload]
        row["File Size"] = int(row["File Size"]) + size  # type: ignore[call-overload]
    rows = sorted(series.values(), key=lambda r: (str(r["Subject ID"]), str(r["File Location"])))
    for row in rows:
        row["File Size"] = f"{int(row['File Size']) / 1e6:.2f} MB"  # type: ignore[call-overload]
    return _csv_bytes(NBIA_COLUMNS, rows, "\r\n")


def dicom_info(files: list[tuple[ImageFile, bool]]) -> bytes:
    """The Kaggle copy's `csv/dicom_info.csv`: one row per image, some with an empty SeriesDescription."""
    rows = []
    for f, blank in files:
        row = header_fields(f)
        row["file_path"] = f"CBIS-DDSM/dicom/{f.series_uid}/{f.kaggle_name}.dcm"
        row["image_path"] = f"CBIS-DDSM/jpeg/{f.series_uid}/{f.kaggle_name}.jpg"
        if blank:
            row["SeriesDescription"] = ""
        rows.append(row)
    return _csv_bytes(DICOM_INFO_COLUMNS, rows, "\n")
