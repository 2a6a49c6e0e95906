"""Work handed to a fresh process: its result and its errors come back unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from mammoseg.data.pipeline import read_dataset_info
from mammoseg.errors import InputError
from mammoseg.runtime import run_in_fresh_process


def test_result_and_input_errors_cross_the_process_boundary(tiny_dataset: Path, tmp_path: Path) -> None:
    assert run_in_fresh_process(read_dataset_info, tiny_dataset) == read_dataset_info(tiny_dataset)
    with pytest.raises(InputError) as raised:
        run_in_fresh_process(read_dataset_info, tmp_path / "missing")
    assert raised.value.path.startswith(str(tmp_path / "missing")) and raised.value.problem
