"""The metadata of a synthetic CBIS-DDSM tree, drawn before any pixel is rendered.

Everything that the description CSVs, the DICOM headers and the folder names carry (patients,
splits, descriptors, UIDs, quirks) is decided here from one seeded generator, so the tree is the
same for a seed whatever the number of rendering processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UID_ROOT = "1.3.6.1.4.1.9590.100.1.2."
FULL_DESCRIPTION = "full mammogram images"
CROP_DESCRIPTION = "cropped images"
MASK_DESCRIPTION = "ROI mask images"
FOLDER_PREFIX = {("mass", "train"): "Mass-Training", ("mass", "test"): "Mass-Test",
                 ("calc", "train"): "Calc-Training", ("calc", "test"): "Calc-Test"}
CSV_NAMES = {("mass", "train"): "mass_case_description_train_set.csv",
             ("mass", "test"): "mass_case_description_test_set.csv",
             ("calc", "train"): "calc_case_description_train_set.csv",
             ("calc", "test"): "calc_case_description_test_set.csv"}
# Rates of the quirks the real files show; each one also occurs at least once in any tree large
# enough to hold it, so that small test trees exercise every reader path.
QUIRK_RATES = {"swapped_crop_mask": 0.03, "mask_size_mismatch": 0.03, "monochrome1": 0.03,
               "split_roi_series": 0.04}

MASS_SHAPES = {"IRREGULAR": 27, "OVAL": 24, "LOBULATED": 23, "ROUND": 10, "ARCHITECTURAL_DISTORTION": 6,
               "IRREGULAR-ARCHITECTURAL_DISTORTION": 3, "LYMPH_NODE": 2, "FOCAL_ASYMMETRIC_DENSITY": 1.5,
               "ASYMMETRIC_BREAST_TISSUE": 1.5, "LOBULATED-IRREGULAR": 0.5, "OVAL-LOBULATED": 0.5}
MARGINS_BY_SHAPE = {
    "ROUND": {"CIRCUMSCRIBED": 50, "OBSCURED": 28, "MICROLOBULATED": 8, "ILL_DEFINED": 10, "CIRCUMSCRIBED-OBSCURED": 4},
    "OVAL": {"CIRCUMSCRIBED": 50, "OBSCURED": 28, "MICROLOBULATED": 8, "ILL_DEFINED": 10, "CIRCUMSCRIBED-OBSCURED": 4},
    "LYMPH_NODE": {"CIRCUMSCRIBED": 70, "OBSCURED": 20, "N/A": 10},
    "LOBULATED": {"CIRCUMSCRIBED": 30, "OBSCURED": 22, "MICROLOBULATED": 20, "ILL_DEFINED": 24,
                  "OBSCURED-ILL_DEFINED": 4},
    "IRREGULAR": {"SPICULATED": 48, "ILL_DEFINED": 40, "ILL_DEFINED-SPICULATED": 6, "N/A": 6},
    "ARCHITECTURAL_DISTORTION": {"SPICULATED": 50, "ILL_DEFINED": 30, "N/A": 20},
    "FOCAL_ASYMMETRIC_DENSITY": {"N/A": 45, "ILL_DEFINED": 35, "OBSCURED": 20},
    "ASYMMETRIC_BREAST_TISSUE": {"N/A": 45, "ILL_DEFINED": 35, "OBSCURED": 20},
}
CALC_TYPES = {"PLEOMORPHIC": 43, "AMORPHOUS": 9, "PUNCTATE": 7, "LUCENT_CENTER": 6, "VASCULAR": 5,
              "FINE_LINEAR_BRANCHING": 5, "COARSE": 2.3, "ROUND_AND_REGULAR-LUCENT_CENTER": 2,
              "PLEOMORPHIC-FINE_LINEAR_BRANCHING": 1.8, "ROUND_AND_REGULAR-EGGSHELL": 1.5,
              "PUNCTATE-PLEOMORPHIC": 1.4, "DYSTROPHIC": 1.3, "ROUND_AND_REGULAR": 1.1, "N/A": 1.3,
              "AMORPHOUS-PLEOMORPHIC": 0.8, "EGGSHELL": 0.5, "SKIN": 0.4}
CALC_DISTRIBUTIONS = {"CLUSTERED": 48, "N/A": 24, "SEGMENTAL": 11, "REGIONAL": 6, "LINEAR": 6,
                      "DIFFUSELY_SCATTERED": 2.5, "CLUSTERED-LINEAR": 1.6, "LINEAR-SEGMENTAL": 0.4}
MALIGNANT_RISK = {"SPICULATED": 0.85, "ILL_DEFINED": 0.55, "ILL_DEFINED-SPICULATED": 0.8, "MICROLOBULATED": 0.5,
                  "OBSCURED": 0.3, "CIRCUMSCRIBED": 0.15, "PLEOMORPHIC": 0.55, "FINE_LINEAR_BRANCHING": 0.85,
                  "AMORPHOUS": 0.4}
SUBTLETY_WEIGHTS = [4, 9, 20, 28, 39]
STYLES = ("film", "digital")
ASPECT = {"film": (1.5, 1.7), "digital": (1.2, 1.3)}  # rows / cols: a scanned film, an FFDM detector
DIGITAL_BITS = {12: 0.5, 14: 0.3, 16: 0.2}  # BitsStored of digital images, and how often
DIGITAL_MONOCHROME1 = 0.3  # share of digital images stored MONOCHROME1 (one vendor's habit), beside the quirk's


@dataclass
class Abnormality:
    """One CSV row: a lesion of a full image with its crop and ROI mask series."""

    abnormality_id: int
    kind: str  # mass | calc
    descriptor_a: str  # mass shape | calc type
    descriptor_b: str  # mass margins | calc distribution
    assessment: int
    pathology: str
    subtlety: int
    roi_subject: str
    crop_study_uid: str
    crop_series_uid: str
    mask_study_uid: str
    mask_series_uid: str
    crop_sop_uid: str
    mask_sop_uid: str
    split_series: bool = False
    swapped: bool = False
    mask_size_delta: tuple[int, int] | None = None

    @property
    def crop_index(self) -> int:
        """0 or 1: the `00000N.dcm` the CSV names for the crop (mass 0, calc 1; 0 when split)."""
        if self.split_series:
            return 0
        return 0 if self.kind == "mass" else 1

    @property
    def mask_index(self) -> int:
        if self.split_series:
            return 0
        return 1 - self.crop_index


@dataclass
class Case:
    """One full mammogram (one subject folder) and the abnormalities listed on it."""

    index: int
    patient_id: str
    kind: str
    split: str
    side: str  # LEFT | RIGHT
    view: str  # CC | MLO
    density: int
    study_uid: str
    series_uid: str
    sop_uid: str
    rows: int
    cols: int
    render_seed: int
    monochrome1: bool = False
    abnormalities: list[Abnormality] = field(default_factory=list)
    style: str = "film"  # film | digital: which renderer draws it
    bits_stored: int = 16

    @property
    def subject(self) -> str:
        return f"{FOLDER_PREFIX[(self.kind, self.split)]}_{self.patient_id}_{self.side}_{self.view}"


class _Uids:
    """Unique DICOM UIDs in CBIS-DDSM's own root, whose last five digits never repeat (NBIA folders use them)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.seen: set[str] = set()
        self.tails: set[str] = set()

    def __call__(self) -> str:
        while True:
            n = int(self.rng.integers(34, 39))
            digits = "".join(map(str, self.rng.integers(0, 10, n)))
            uid = UID_ROOT + str(int(self.rng.integers(1, 10))) + digits
            if uid not in self.seen and uid[-5:] not in self.tails:
                self.seen.add(uid)
                self.tails.add(uid[-5:])
                return uid


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _descriptors(rng: np.random.Generator, kind: str) -> tuple[str, str, str, int, int]:
    """Descriptors, pathology, assessment, subtlety with the correlations radiologists report."""
    if kind == "mass":
        a = _pick(rng, MASS_SHAPES)
        b = _pick(rng, MARGINS_BY_SHAPE[a.split("-")[0]])
    else:
        a = _pick(rng, CALC_TYPES)
        b = _pick(rng, CALC_DISTRIBUTIONS)
    risk = MALIGNANT_RISK.get(b if kind == "mass" else a.split("-")[0], 0.35)
    u = rng.random()
    if u < risk:
        pathology = "MALIGNANT"
        assessment = int(rng.choice([0, 3, 4, 5], p=[0.08, 0.07, 0.5, 0.35]))
    elif u < risk + (1 - risk) * (0.3 if kind == "calc" else 0.12):
        pathology = "BENIGN_WITHOUT_CALLBACK"
        assessment = int(rng.choice([2, 3], p=[0.8, 0.2]))
    else:
        pathology = "BENIGN"
        assessment = int(rng.choice([0, 1, 2, 3, 4], p=[0.08, 0.01, 0.25, 0.3, 0.36]))
    subtlety = int(rng.choice(5, p=np.array(SUBTLETY_WEIGHTS) / sum(SUBTLETY_WEIGHTS))) + 1
    return a, b, pathology, assessment, subtlety


def image_shape(rng: np.random.Generator, image_size: int, full_size: bool, style: str = "film") -> tuple[int, int]:
    """(rows, cols): portrait, aspect about 1.6:1 like a scanned film or 1.25:1 like a digital
    detector (`ASPECT`); CBIS-like ~4800 rows with `full_size`."""
    rows = int(round(4800 * rng.uniform(0.9, 1.1))) if full_size else image_size
    cols = int(round(rows / rng.uniform(*ASPECT[style])))
    return rows, cols


def make_plan(n_cases: int, seed: int, image_size: int, full_size: bool, style: str = "film") -> list[Case]:
    """Patients, images and abnormalities for `n_cases` full mammograms; deterministic per seed.
    A `style` other than film draws the same patients and lesions from the same seed."""
    if n_cases < 1:
        raise ValueError("at least one case is needed")
    rng = np.random.default_rng([seed, 0x5EED])
    uid = _Uids(np.random.default_rng([seed, 0x0D1C]))
    # (patient, kind per side, split per side, sides, views) groups; a patient usually has both
    # views of one breast, sometimes both breasts, sometimes one view.
    groups: list[tuple[str, dict[str, tuple[str, str]], list[tuple[str, str]]]] = []
    total, pnum, p_index = 0, 0, 0
    while total < n_cases:
        pnum += int(rng.integers(1, 4))
        pid = f"P_{pnum:05d}"
        kind = "mass" if rng.random() < 0.5 else "calc"
        split = "test" if rng.random() < 0.2 else "train"
        u = rng.random()
        first = "LEFT" if rng.random() < 0.5 else "RIGHT"
        other = "RIGHT" if first == "LEFT" else "LEFT"
        if u < 0.15:
            images = [(first, "CC" if rng.random() < 0.45 else "MLO")]
        elif u < 0.88:
            images = [(first, "CC"), (first, "MLO")]
        else:
            images = [(first, "CC"), (first, "MLO"), (other, "CC"), (other, "MLO")]
        kinds = {first: (kind, split), other: (kind, split)}
        # The real dataset has patients in a mass train set and a calc test set (31 of them):
        # the first four-image patient, and a few others, get that mix.
        if n_cases >= 4 and p_index == 0:
            images = [("LEFT", "CC"), ("LEFT", "MLO"), ("RIGHT", "CC"), ("RIGHT", "MLO")]
            kinds = {"LEFT": ("mass", "train"), "RIGHT": ("calc", "test")}
        elif len(images) == 4 and rng.random() < 0.3:
            kinds[other] = ("calc" if kind == "mass" else "mass", "test" if split == "train" else "train")
        elif p_index in (1, 2):  # small trees still fill all four CSVs
            pair = ("mass", "test") if p_index == 1 else ("calc", "train")
            kinds = {first: pair, other: pair}
        images = images[: n_cases - total]
        groups.append((pid, kinds, images))
        total += len(images)
        p_index += 1

    cases: list[Case] = []
    for pid, kinds, images in groups:
        density = int(rng.choice([1, 2, 3, 4], p=[0.17, 0.4, 0.3, 0.13]))
        lesions: dict[str, list[tuple[str, str, str, int, int]]] = {}
        for side, view in images:
            kind, split = kinds[side]
            if side not in lesions:  # the same lesions show in both views of a breast
                k = int(rng.choice([1, 2, 3], p=[0.85, 0.1, 0.05]))
                if not cases and n_cases >= 2:
                    k = 2
                lesions[side] = [_descriptors(rng, kind) for _ in range(k)]
            rows, cols = image_shape(rng, image_size, full_size, style)
            case = Case(index=len(cases), patient_id=pid, kind=kind, split=split, side=side, view=view,
                        density=density, study_uid=uid(), series_uid=uid(), sop_uid=uid(), rows=rows,
                        cols=cols, render_seed=int(rng.integers(2**31)), style=style)
            for i, (a, b, pathology, assessment, subtlety) in enumerate(lesions[side], start=1):
                study, series = uid(), uid()
                case.abnormalities.append(Abnormality(
                    abnormality_id=i, kind=kind, descriptor_a=a, descriptor_b=b, assessment=assessment,
                    pathology=pathology, subtlety=subtlety, roi_subject=f"{case.subject}_{i}",
                    crop_study_uid=study, crop_series_uid=series, mask_study_uid=study, mask_series_uid=series,
                    crop_sop_uid=uid(), mask_sop_uid=uid()))
            cases.append(case)
    _assign_quirks(cases, np.random.default_rng([seed, 0x0B0B]), uid)
    if style == "digital":
        _digital_headers(cases, np.random.default_rng([seed, 0xD161]))
    return cases


def _digital_headers(cases: list[Case], rng: np.random.Generator) -> None:
    """Bits stored and MONOCHROME1 as digital systems write them (`DIGITAL_BITS`, `DIGITAL_MONOCHROME1`)."""
    for case in cases:
        case.bits_stored = int(rng.choice(list(DIGITAL_BITS), p=list(DIGITAL_BITS.values())))
        case.monochrome1 = case.monochrome1 or bool(rng.random() < DIGITAL_MONOCHROME1)


def _assign_quirks(cases: list[Case], rng: np.random.Generator, uid: _Uids) -> None:
    """Give a few cases/abnormalities the real dataset's defects, each at least once, never two on one ROI."""
    rois = [a for c in cases for a in c.abnormalities]
    free = list(rng.permutation(len(rois)))

    def take(rate: float) -> list[Abnormality]:
        n = max(1, int(round(rate * len(rois))))
        chosen = [rois[i] for i in free[:n]]
        del free[:n]
        return chosen

    for a in take(QUIRK_RATES["split_roi_series"]):
        a.split_series = True
        a.mask_study_uid, a.mask_series_uid = uid(), uid()
    for a in take(QUIRK_RATES["swapped_crop_mask"]):
        a.swapped = True
    for a in take(QUIRK_RATES["mask_size_mismatch"]):
        d = rng.integers(1, 5, 2) * rng.choice([-1, 1], 2)
        a.mask_size_delta = (int(d[0]), int(d[1]))
    n_mono = max(1, int(round(QUIRK_RATES["monochrome1"] * len(cases))))
    for i in rng.permutation(len(cases))[:n_mono]:
        cases[int(i)].monochrome1 = True


def quirks_of(cases: list[Case]) -> dict[str, list[str]]:
    """Subject names per quirk, for the sidecar file that tests and readers check against."""
    rois = [a for c in cases for a in c.abnormalities]
    return {
        "swapped_crop_mask": [a.roi_subject for a in rois if a.swapped],
        "mask_size_mismatch": [a.roi_subject for a in rois if a.mask_size_delta],
        "split_roi_series": [a.roi_subject for a in rois if a.split_series],
        "monochrome1": [c.subject for c in cases if c.monochrome1],
    }
