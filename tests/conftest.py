"""Test-wide settings: CPU only, quiet TensorFlow, a shared-folder locator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use ../shared (`-m shared`): CI runs them again without it, where they must skip."""
    for item in items:
        if {"shared_dir", "shared_root"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.shared)


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """Where the shared reference folder lies beside the checkout, present or not: a test that needs one of
    its subfolders skips, saying which, where it is absent."""
    return SHARED


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
    from mammoseg.dataset.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic_cbis")
    generate(root, cases=8, seed=0, image_size=256, layout="nbia")
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared DATASET of 64x64 examples (whole breast, 2 positive and 2 negative tiles per
    mammogram) from 16 synthetic mammograms: train 8 images, val 2, test 6. Treat it as read-only."""
    from mammoseg.dataset.prepare import PrepareOptions, prepare
    from mammoseg.dataset.synthetic import generate

    root = tmp_path_factory.mktemp("tiny_cbis")
    generate(root, cases=16, seed=1, image_size=192, layout="nbia")
    out = tmp_path_factory.mktemp("tiny_dataset")
    prepare(root, out, PrepareOptions(image_size=64, positive_tiles=2, negative_tiles=2, val_fraction=0.2, images_per_shard=4))
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished and evaluated run folder (`dilated_resize`, 64x64, width 0.125, 2 epochs, deterministic)
    trained on an easy synthetic set where bright discs are abnormal: every training output plus
    eval/test/. Its config.json names the dataset it used. Treat it as read-only."""
    from mammoseg.evaluation.evaluate import evaluate_run
    from mammoseg.training.config import build_config
    from mammoseg.training.train import train
    from train_data import write_easy_dataset

    data = write_easy_dataset(tmp_path_factory.mktemp("easy_dataset"))
    config = build_config({"variant": "dilated_resize", "data": str(data), "width": 0.125, "epochs": 2,
                           "batch_size": 4, "learning_rate": 3e-3, "deterministic": True, "run_name": "tiny"})
    run = train(config, tmp_path_factory.mktemp("runs"))
    evaluate_run(run.path, "test")
    return run.path
