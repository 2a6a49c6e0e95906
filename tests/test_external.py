"""External validation: `evaluate RUN --data OTHER` on another prepared dataset than the run's own,
its own folder under RUN/eval/, labelled external, and `compare --data-name` on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mammoseg.cli import cli
from mammoseg.core.errors import InputError
from mammoseg.runs.external import eval_name, external_name


@pytest.fixture(scope="module")
def digital_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared dataset of 64x64 examples from eight digital-style synthetic mammograms."""
    from mammoseg.dataset.prepare import PrepareOptions, prepare
    from mammoseg.dataset.synthetic import generate

    root = tmp_path_factory.mktemp("digital_cbis")
    generate(root, cases=8, seed=2, image_size=192, style="digital")
    out = tmp_path_factory.mktemp("data") / "digital-64"
    prepare(root, out, PrepareOptions(image_size=64, positive_tiles=1, negative_tiles=1, val_fraction=0.2,
                                      images_per_shard=4))
    return out


def test_evaluate_on_another_dataset_and_compare(tiny_run: Path, digital_dataset: Path, tmp_path: Path) -> None:
    """A run trained on one synthetic dataset, evaluated on a digital-style one, compared there."""
    run = tmp_path / "runs" / "dilated_resize-seed0"
    shutil.copytree(tiny_run, run)
    own = (run / "eval" / "test" / "metrics.json").read_bytes()
    result = CliRunner().invoke(cli, ["evaluate", str(run), "--data", str(digital_dataset)])
    assert result.exit_code == 0, result.output
    assert "test split of the external dataset 'digital-64'" in result.output and "test@digital-64" in result.output
    folder = run / "eval" / "test@digital-64"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["external"] is True and metrics["dataset_name"] == "digital-64"
    assert metrics["dataset"] == str(digital_dataset.resolve())
    tested = json.loads((digital_dataset / "dataset.json").read_text())["counts"]["test"]
    assert metrics["n_images"] == sum(tested.values())
    assert {p.name for p in folder.iterdir()} == {"metrics.json", "per_image.csv", "examples.npz", "spectrum.npz",
                                                  "detections.npz"}
    assert (run / "eval" / "test" / "metrics.json").read_bytes() == own  # the own evaluation stays

    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["compare", str(run), "--data-name", "digital-64", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert "test of the external dataset 'digital-64' (external validation)" in report
    assert f"images per arm: dilated_resize {metrics['n_images']}" in report

    result = CliRunner().invoke(cli, ["compare", str(run), "--data-name", "mias", "--out", str(out)])
    message = str(result.exception)
    assert isinstance(result.exception, InputError), result.output
    assert "not evaluated on the 'test' split of the external dataset 'mias'" in message and "--data-name mias" in message
    # another dataset (here the run's own) under a name already taken: refused, the earlier evaluation kept
    trained_on = json.loads((run / "config.json").read_text())["dataset"]["path"]
    result = CliRunner().invoke(cli, ["evaluate", str(run), "--data", trained_on, "--data-name", "digital-64"])
    assert isinstance(result.exception, InputError) and "another dataset of that name" in str(result.exception)
    assert json.loads((folder / "metrics.json").read_text()) == metrics


def test_which_dataset_is_external(tmp_path: Path) -> None:
    """The recorded folder is the run's own; so is a moved copy with the recorded counts once the
    recorded folder is gone; any other folder, or any given name, is external."""
    recorded, other = tmp_path / "data" / "film", tmp_path / "moved" / "film-copy"
    for folder in (recorded, other):
        folder.mkdir(parents=True)
        (folder / "dataset.json").write_text(json.dumps({"image_size": 64, "counts": {"test": {"whole": 3}}}))
    config = {"dataset": {"path": str(recorded), "image_size": 64, "counts": {"test": {"whole": 3}}}}
    assert external_name(config, recorded) is None
    assert external_name(config, recorded, "mias") == "mias"
    assert external_name(config, other) == "film-copy"  # the recorded folder still exists: another dataset
    shutil.rmtree(recorded)
    assert external_name(config, other) is None  # the run's dataset, moved
    (other / "dataset.json").write_text(json.dumps({"image_size": 64, "counts": {"test": {"whole": 5}}}))
    assert external_name(config, other) == "film-copy"
    assert eval_name("test") == "test" and eval_name("val", "film-copy") == "val@film-copy"
    with pytest.raises(InputError, match="only letters"):
        eval_name("test", "../escape")
