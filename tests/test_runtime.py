"""Work handed to a fresh process: its result and its errors come back unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mammoseg.dataset.pipeline import read_dataset_info
from mammoseg.core.errors import InputError, MammosegError
from mammoseg.core.runtime import run_in_fresh_process


def test_result_and_input_errors_cross_the_process_boundary(tiny_dataset: Path, tmp_path: Path) -> None:
    assert run_in_fresh_process(read_dataset_info, tiny_dataset) == read_dataset_info(tiny_dataset)
    with pytest.raises(InputError) as raised:
        run_in_fresh_process(read_dataset_info, tmp_path / "missing")
    assert raised.value.path.startswith(str(tmp_path / "missing")) and raised.value.problem


def test_a_process_that_dies_is_named_with_its_exit_code() -> None:
    with pytest.raises(MammosegError, match=r"^run X: its process ended without a result \(exit code 3;"):
        run_in_fresh_process(os._exit, 3, what="run X")
