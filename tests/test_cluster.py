"""The grid off the serial path: Slurm job scripts, the Kubernetes manifest against a schema of batch/v1
Job, task failures named in the log and the report, locks left by an earlier attempt, `ablate --devices`."""

from __future__ import annotations

import csv
import json
import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from mammoseg.cli import cli
from mammoseg.core.errors import InputError
from mammoseg.runs.rundir import LOCK_OWNER_ENV, RunDir
from mammoseg.workflows.cluster import read_resources
from mammoseg.workflows.slurm import array_spec
from mammoseg.workflows.tasks import GridOptions, pending_tasks

ROOT = Path(__file__).resolve().parents[1]


def _experiment(tmp_path: Path, data: str, arms: list[str], seeds: int = 2, cluster: str = "") -> Path:
    toml = tmp_path / "exp.toml"
    toml.write_text(textwrap.dedent(f"""
        [experiment]
        name = "grid"
        data = "{data}"
        seeds = {seeds}
        variants = {json.dumps(arms)}
        [train]
        width = 0.125
        epochs = 2
        batch_size = 4
        learning_rate = 3e-3
        deterministic = true
    """) + textwrap.dedent(cluster))
    return toml


CLUSTER = """
    [cluster]
    partition = "gpu"
    gpus = 1
    cpus = 6
    mem = "24G"
    time = "2-00:00:00"
    concurrency = 2
    sbatch = ["--account=lab", "--qos=long"]
    setup = "module load cuda/12 && source ~/venvs/mammoseg/bin/activate"
    signal_seconds = 600
    image = "registry.example.org/mammoseg:1"
    volume_claim = "mammoseg-work"
"""


def test_slurm_scripts_ask_for_every_resource_and_only_the_runs_not_done(tmp_path: Path, tiny_run: Path) -> None:
    toml = _experiment(tmp_path, "data", ["dilated_resize", "fcn_skips"], cluster=CLUSTER)
    runs = tmp_path / "runs"
    (runs / "grid").mkdir(parents=True)
    shutil.copytree(tiny_run, runs / "grid" / "dilated_resize-seed0")  # the same options: done already
    grid = GridOptions(toml, runs_dir=runs)
    assert pending_tasks(grid.plan()) == [1, 2, 3]
    result = CliRunner().invoke(cli, ["submit", "--config", str(toml), "--runs-dir", str(runs), "--dry-run",
                                      "--time", "12:00:00"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    array, report = result.output.split(f"# {(runs / 'grid' / 'slurm' / 'report.sbatch').resolve()}\n")
    for line in ("#SBATCH --array=1-3%2", "#SBATCH --partition=gpu", "#SBATCH --gres=gpu:1",
                 "#SBATCH --cpus-per-task=6", "#SBATCH --mem=24G", "#SBATCH --time=12:00:00", "#SBATCH --requeue", "#SBATCH --signal=B:USR1@600",
                 "#SBATCH --open-mode=append", "#SBATCH --account=lab", "#SBATCH --qos=long",
                 "module load cuda/12 && source ~/venvs/mammoseg/bin/activate",
                 f"mammoseg ablate-task --config {toml.resolve()} --runs-dir {runs.resolve()} &",
                 'scontrol requeue "$SLURM_JOB_ID"'):
        assert line in [text.strip() for text in array.splitlines()], line
    assert "#SBATCH --gres" not in report and "#SBATCH --cpus-per-task=1" in report
    assert f"mammoseg ablate-report --config {toml.resolve()} --runs-dir {runs.resolve()}" in report
    assert "sbatch --parsable --dependency=afterany:<array job id>" in report
    assert not (runs / "grid" / "slurm").exists()  # a dry run writes nothing
    assert array_spec([0, 1, 2, 5, 7, 8], None) == "0-2,5,7-8" and array_spec([4], 3) == "4%3"
    for key, value, message in (("gpus", "-1", "at least 0"), ("time", '"soon"', "Slurm time"),
                                ("mem", '"lots"', "size"), ("sbatch", '"--x"', "must be a list"),
                                ("nodes", "2", "unknown key")):
        bad = tmp_path / "bad.toml"
        bad.write_text(f"[cluster]\n{key} = {value}\n")
        with pytest.raises(InputError, match=message):
            read_resources(bad)


_STR, _INT = str, int
LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
CONTAINER_SCHEMA: dict[str, Any] = {
    "required": {"name": _STR, "image": _STR},
    "optional": {"command": [_STR], "args": [_STR], "workingDir": _STR,
                 "env": [{"required": {"name": _STR}, "optional": {"value": _STR}}],
                 "resources": {"optional": {"requests": {"values": _STR}, "limits": {"values": _STR}}},
                 "volumeMounts": [{"required": {"name": _STR, "mountPath": _STR}}]},
}
POD_SCHEMA: dict[str, Any] = {
    "required": {"containers": [CONTAINER_SCHEMA], "restartPolicy": _STR},
    "optional": {"terminationGracePeriodSeconds": _INT,
                 "volumes": [{"required": {"name": _STR},
                              "optional": {"persistentVolumeClaim": {"required": {"claimName": _STR}}}}]},
}
RULE_SCHEMA: dict[str, Any] = {
    "required": {"action": _STR},
    "optional": {"onExitCodes": {"required": {"operator": _STR, "values": [_INT]}, "optional": {"containerName": _STR}},
                 "onPodConditions": [{"required": {"type": _STR}}]},
}
JOB_SCHEMA: dict[str, Any] = {
    "required": {"apiVersion": _STR, "kind": _STR, "metadata": {"required": {"name": _STR},
                                                                "optional": {"labels": {"values": _STR}}},
                 "spec": {"required": {"template": {
                              "required": {"spec": POD_SCHEMA},
                              "optional": {"metadata": {"optional": {"labels": {"values": _STR}}}}}},
                          "optional": {"completionMode": _STR, "completions": _INT, "parallelism": _INT,
                                       "backoffLimit": _INT, "backoffLimitPerIndex": _INT,
                                       "podFailurePolicy": {"required": {"rules": [RULE_SCHEMA]}}}}},
}
"""The part of the batch/v1 Job API the manifests use: every field they may hold, with its type; any
other field is an error (as `kubectl apply --validate=strict` makes it)."""


def _check(value: Any, schema: Any, where: str) -> None:
    if isinstance(schema, list):
        assert isinstance(value, list) and value, f"{where}: a non-empty list expected"
        for i, item in enumerate(value):
            _check(item, schema[0], f"{where}[{i}]")
    elif isinstance(schema, dict):
        assert isinstance(value, dict), f"{where}: an object expected"
        if "values" in schema:
            for key, item in value.items():
                _check(item, schema["values"], f"{where}.{key}")
            return
        required, optional = schema.get("required", {}), schema.get("optional", {})
        assert not set(required) - set(value), f"{where}: missing {set(required) - set(value)}"
        unknown = set(value) - set(required) - set(optional)
        assert not unknown, f"{where}: unknown {unknown}"
        for key, item in value.items():
            _check(item, {**required, **optional}[key], f"{where}.{key}")
    else:
        assert isinstance(value, schema) and not isinstance(value, bool), \
            f"{where}: {schema.__name__} expected, got {value!r}"


def test_kubernetes_indexed_job_manifest_matches_the_job_schema(tmp_path: Path) -> None:
    toml = _experiment(tmp_path, "data", ["dilated_resize", "fcn_skips"], seeds=3, cluster=CLUSTER)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["submit", "--config", str(toml), "--runs-dir", str(runs), "--to", "kubernetes"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    job = json.loads((runs / "grid" / "kubernetes" / "job.json").read_text())
    report = json.loads((runs / "grid" / "kubernetes" / "report-job.json").read_text())
    for manifest in (job, report):
        _check(manifest, JOB_SCHEMA, "job")
        assert manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "Job"
        assert LABEL.fullmatch(manifest["metadata"]["name"]) and len(manifest["metadata"]["name"]) <= 63
        assert manifest["spec"]["template"]["spec"]["restartPolicy"] == "Never"  # a pod failure policy needs it
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 6, 2)
    rules = spec["podFailurePolicy"]["rules"]
    assert {r["action"] for r in rules} <= {"FailJob", "FailIndex", "Ignore", "Count"}
    assert rules[0]["onExitCodes"] == {"containerName": "task", "operator": "In", "values": [75]}
    container = spec["template"]["spec"]["containers"][0]
    assert container["command"] == ["mammoseg", "ablate-task", "--config", str(toml), "--runs-dir", str(runs)]
    assert container["resources"] == {"requests": {"cpu": "6", "memory": "24Gi"},
                                      "limits": {"memory": "24Gi", "nvidia.com/gpu": "1"}}
    assert spec["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "mammoseg-work"
    assert report["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["mammoseg", "ablate-report"]
    with pytest.raises(AssertionError, match="unknown"):
        _check({**job, "spec": {**spec, "completionsMode": "Indexed"}}, JOB_SCHEMA, "job")
    no_image = tmp_path / "no_image.toml"
    no_image.write_text(toml.read_text().replace('image = "registry.example.org/mammoseg:1"', ""))
    refused = CliRunner().invoke(cli, ["submit", "--config", str(no_image), "--to", "kubernetes", "--dry-run"])
    assert isinstance(refused.exception, InputError) and "container image" in str(refused.exception)


def test_a_lock_left_by_an_earlier_attempt_of_the_same_task_is_stale(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    (run.path / ".lock").write_text("4242 node17 slurm:88\n")
    assert run.holder() == "4242 on node17"  # another host: it may still be alive
    monkeypatch.setenv(LOCK_OWNER_ENV, "slurm:88")
    assert run.holder() is None
    with run.lock():
        assert (run.path / ".lock").read_text().split()[2:] == ["slurm:88"]
    monkeypatch.setenv(LOCK_OWNER_ENV, "slurm:89")
    (run.path / ".lock").write_text("4242 node17 slurm:88\n")
    assert run.holder() == "4242 on node17"


def test_a_failed_task_names_its_run_and_error_in_its_log_and_the_report(tmp_path: Path, tiny_run: Path) -> None:
    data = json.loads((tiny_run / "config.json").read_text())["dataset"]["path"]
    toml = _experiment(tmp_path, data, ["fcn_skips"], seeds=1)  # fcn_skips needs a multiple of 128 px: 64 fails
    args = ["--config", str(toml), "--runs-dir", str(tmp_path / "runs")]
    result = CliRunner().invoke(cli, ["ablate-task", *args, "--index", "0"])
    assert result.exit_code == 1
    record = json.loads((tmp_path / "runs" / "grid" / ".tasks" / "fcn_skips-seed0.json").read_text())
    assert record["status"] == "failed" and "128" in record["error"]
    assert f"task 0: fcn_skips-seed0 failed: {record['error']}" in result.output
    result = CliRunner().invoke(cli, ["ablate-task", *args, "--index", "1"])
    assert isinstance(result.exception, InputError) and "outside the plan's 1 runs" in str(result.exception)
    report = CliRunner().invoke(cli, ["ablate-report", *args])
    assert report.exit_code == 1 and "fcn_skips-seed0 (failed)" in report.output
    assert f"run fcn_skips-seed0 (task 0) failed: {record['error']}" in report.output
    rows = list(csv.DictReader(open(tmp_path / "reports" / "grid" / "tasks.csv")))
    assert [(r["run"], r["status"], r["error"]) for r in rows] == [("fcn_skips-seed0", "failed", record["error"])]


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(path, compile=False).get_weights()


def test_ablate_on_devices_runs_one_run_per_device_at_a_time(tmp_path: Path, tiny_run: Path) -> None:
    """Three runs on two fake devices (CPU processes with CUDA_VISIBLE_DEVICES set): never more than two at
    once, each on a device of its own, every run as the serial path trains it."""
    data = json.loads((tiny_run / "config.json").read_text())["dataset"]["path"]
    toml = _experiment(tmp_path, data, ["dilated_resize"], seeds=3)
    result = CliRunner().invoke(cli, ["ablate", "--config", str(toml), "--runs-dir", str(tmp_path / "runs"),
                                      "--devices", "0,1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "3 of 3 runs trained and evaluated" in result.output
    tasks = tmp_path / "runs" / "grid" / ".tasks"
    records = [json.loads((tasks / f"dilated_resize-seed{seed}.json").read_text()) for seed in range(3)]
    assert all(r["status"] == "finished" and r["device"] in ("0", "1") for r in records)
    spans = sorted((r["started"], r["ended"], r["device"]) for r in records)
    for start, _, _ in spans:
        at_once = [s for s in spans if s[0] <= start < s[1]]
        assert len(at_once) <= 2 and len({s[2] for s in at_once}) == len(at_once)  # one run per device
    assert spans[1][0] < spans[0][1]  # the first two ran side by side
    assert all((tasks / f"dilated_resize-seed{seed}.log").is_file() for seed in range(3))
    assert (tmp_path / "reports" / "grid" / "summary.csv").is_file()
    reference = _weights(tiny_run / "last.keras")
    parallel = _weights(tmp_path / "runs" / "grid" / "dilated_resize-seed0" / "last.keras")
    assert len(reference) == len(parallel) and all(np.array_equal(a, b) for a, b in zip(reference, parallel))
