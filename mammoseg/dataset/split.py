"""Patient-level train/val/test assignment.

The official test set stays test. Because mass and calc files were split separately, 31 patients
have images in a train CSV of one type and a test CSV of the other; merging the types naively would
put one woman's breasts on both sides of the split, so such patients go entirely to test. Validation
patients are drawn at random (seeded) from the remaining train patients.

Images from another collection (normal mammograms) have no official split: their patients are
dealt out at random (seeded) in the proportions the CBIS-DDSM patients ended up in. A dataset with
no official split at all (mini-MIAS, an images/masks folder) is cut into folds by patient
(`assign_folds`); each fold in turn is the test set of one prepared dataset (`fold_splits`).
"""

from __future__ import annotations

import re
import numpy as np
import pandas as pd

from mammoseg.core.conventions import SPLITS


def assign_splits(abnormalities: pd.DataFrame, val_fraction: float = 0.1, seed: int = 0) -> dict[str, str]:
    """patient_id -> train | val | test for every patient of the table (columns patient_id, split)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    test = set(abnormalities.loc[abnormalities["split"] == "test", "patient_id"])
    train = sorted(set(abnormalities["patient_id"]) - test)
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * len(train)))
    if val_fraction > 0 and len(train) >= 2:
        n_val = max(1, n_val)  # a tiny dataset still gets a validation patient to monitor
    val = set(rng.permutation(np.array(train, dtype=object))[:n_val].tolist()) if n_val else set()
    splits = {p: "test" for p in test}
    splits.update({p: "val" if p in val else "train" for p in train})
    return splits


def split_fractions(patient_split: dict[str, str]) -> dict[str, float]:
    """Share of patients in each split of an assignment (as `assign_splits` returns)."""
    total = max(1, len(patient_split))
    return {split: sum(1 for s in patient_split.values() if s == split) / total for split in SPLITS}


def assign_by_fractions(patients: list[str], fractions: dict[str, float], seed: int = 0) -> dict[str, str]:
    """patient_id -> split for patients without an official split, dealt out at random (seeded) in
    `fractions` (test first, then val, the rest train; counts rounded to the nearest patient)."""
    unique = sorted(set(patients))
    order = np.random.default_rng([seed, 0x4E4F524D]).permutation(np.array(unique, dtype=object)).tolist()
    n_test = min(len(order), int(round(fractions.get("test", 0.0) * len(order))))
    n_val = min(len(order) - n_test, int(round(fractions.get("val", 0.0) * len(order))))
    return {p: "test" if i < n_test else "val" if i < n_test + n_val else "train" for i, p in enumerate(order)}


DEFAULT_FOLDS = 5
"""Folds of a dataset without an official split when `--folds` is not given: it is then prepared
as fold 1 of these, so about a fifth of the patients are test."""
FOLD_FOLDER = re.compile(r"fold-(\d+)")
"""The folder of the dataset whose test set is fold k (`prepare --folds K`); an experiment's runs on it
are kept in a folder of the same name."""


def fold_folder(fold: int) -> str:
    """The folder name of fold `fold`'s dataset (see FOLD_FOLDER)."""
    return f"fold-{fold}"


def assign_folds(patients: dict[str, bool], folds: int, seed: int = 0) -> dict[str, int]:
    """patient_id -> fold 1..`folds`, for patients without an official split (`patients` maps each
    to whether it has an abnormal image). Abnormal patients, then the others, are shuffled (seeded)
    and dealt in turn, so every fold gets a like share of each and every patient is in exactly one."""
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    rng = np.random.default_rng([seed, 0x464F4C44])
    order: list[str] = []
    for abnormal in (True, False):
        group = sorted(p for p, flag in patients.items() if flag == abnormal)
        order += rng.permutation(np.array(group, dtype=object)).tolist()
    return {p: 1 + i % folds for i, p in enumerate(order)}


def fold_splits(fold_of: dict[str, int], fold: int, val_fraction: float = 0.1, seed: int = 0) -> dict[str, str]:
    """patient_id -> train | val | test when fold `fold` is the test set; validation patients are
    drawn from the other folds as `assign_splits` draws them from the official train set."""
    table = pd.DataFrame({"patient_id": list(fold_of), "split": ["test" if f == fold else "train" for f in fold_of.values()]})
    return assign_splits(table, val_fraction, seed)
