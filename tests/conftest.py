"""Test-wide settings: CPU only, quiet TensorFlow, a shared-folder locator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's shared reference folder beside the checkout; tests that need it skip without it."""
    if not (SHARED / "cbis-ddsm-csv").is_dir():
        pytest.skip(f"reference folder {SHARED} is absent: the real CBIS-DDSM CSVs cannot be checked")
    return SHARED


@pytest.fixture(scope="session")
def synthetic_cbis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic CBIS-DDSM tree (NBIA layout, 8 mammograms, 256 rows) shared by the session.

    Fills all four description CSVs (patients in train and test, one in both), has NBIA's
    metadata.csv, every planted defect at least once, and synth_truth.json describing them.
    Treat it as read-only.
    """
    from mammoseg.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic_cbis")
    generate(root, cases=8, seed=0, image_size=256, layout="nbia")
    return root
