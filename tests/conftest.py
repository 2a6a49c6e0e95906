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
