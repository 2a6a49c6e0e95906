"""Training: run-folder outputs, resume after a kill, encoder transfer, config precedence, clear errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mammoseg.cli import cli
from mammoseg.core.errors import InputError
from mammoseg.training import train as T
from mammoseg.training.config import build_config
from mammoseg.runs.rundir import RunDir, RunLocked

ROOT = Path(__file__).resolve().parents[1]


def _config_of(run: Path, **changes) -> dict:
    saved = json.loads((run / "config.json").read_text())
    values = {k: saved[k] for k in ("variant", "width", "epochs", "batch_size", "learning_rate", "deterministic")}
    values["data"] = saved["dataset"]["path"]
    values.update(changes)
    return values


def _weights(path: Path) -> dict[str, list[np.ndarray]]:
    import keras

    model = keras.saving.load_model(path, compile=False)
    return {layer.name: layer.get_weights() for layer in model.layers if layer.get_weights()}


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_tiny_run_writes_every_output(tiny_run: Path) -> None:
    run = RunDir(tiny_run)
    for name in ("config.json", "state.json", "history.csv", "timing.json", "checkerboard_init.json",
                 "last.keras", "best.keras"):
        assert (tiny_run / name).is_file(), name
    assert any((tiny_run / "tb").rglob("events.out.tfevents.*"))
    config = run.config()
    for key in ("variant", "image_size", "width", "seed", "epochs", "batch_size", "learning_rate", "positive_weight",
                "precision", "jit_compile", "dataset", "environment", "params", "flops", "distribution",
                "preview_ids", "steps_per_epoch"):
        assert key in config, key
    assert config["positive_weight"] == 18.0 and config["image_size"] == 64 and config["precision"] == "float32"
    assert config["loss_normalization"] == "pixels"
    assert isinstance(config["jit_compile"], bool) and config["params"] > 0 and config["flops"] > 0
    assert config["environment"]["keras_backend"] == "tensorflow"
    state = run.state()
    assert state["status"] == "finished" and state["epochs_done"] == 2 and state["best_epoch"] in (1, 2)
    history = run.read_history()
    assert [r["epoch"] for r in history] == [1, 2]
    for key in ("loss", "val_loss", "lr", "seconds", "val_pixel_precision", "val_pixel_recall", "val_pixel_f1",
                "val_negative_fp_rate"):
        assert key in history[0], key
    assert history[1]["loss"] < history[0]["loss"]  # an easy set: the loss falls
    timing = run.timing()
    assert len(timing["seconds_per_epoch"]) == 2 and timing["train_images_per_second"] > 0
    init = run.checkerboard_init()
    assert set(init["kernel"]) == {"upsample_4", "upsample_5"} and {"phase_mean", "aliasing_fraction"} <= set(init["map"])
    for epoch in (0, 1, 2):
        for example_id in config["preview_ids"]:
            for suffix in ("soft", "hard"):
                assert (tiny_run / "previews" / f"epoch_{epoch:03d}" / f"{example_id}_{suffix}.png").is_file()
    assert len(config["preview_ids"]) == 4
    assert not (tiny_run / ".lock").exists()


def test_resume_after_a_kill_equals_an_uninterrupted_run(tiny_run: Path, tmp_path: Path) -> None:
    config = build_config(_config_of(tiny_run, run_name="killed"))
    with pytest.raises(T.RunInterrupted):
        T.train(config, tmp_path, stop_after_epoch=1)
    run = RunDir(tmp_path / "killed")
    assert run.state()["status"] == "running" and run.state()["epochs_done"] == 1
    with pytest.raises(InputError, match="--resume"):
        T.train(build_config(_config_of(tiny_run, run_name="killed")), tmp_path)
    refused = CliRunner().invoke(cli, ["train", "--resume", str(run.path), "--batch-size", "2"])
    assert isinstance(refused.exception, InputError) and "keeps its config" in str(refused.exception)
    # resumed from a new shell, as after a real kill: nothing of the first process is left
    result = subprocess.run([sys.executable, "-m", "mammoseg", "--quiet", "train", "--resume", str(run.path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert run.state()["status"] == "finished"
    reference, resumed = _weights(tiny_run / "last.keras"), _weights(run.last)
    assert reference.keys() == resumed.keys()
    assert all(_same(reference[name], resumed[name]) for name in reference)
    columns = ("loss", "val_loss", "val_pixel_f1", "val_negative_fp_rate", "lr")
    assert [[r[c] for c in columns] for r in run.read_history()] == \
        [[r[c] for c in columns] for r in RunDir(tiny_run).read_history()]


def test_a_stop_signal_saves_and_the_resumed_run_equals_an_uninterrupted_one(tiny_run: Path, tmp_path: Path) -> None:
    """SIGUSR1 (Slurm's warning before a time limit) once epoch 1 is saved: training stops at the next batch
    with RunStopped, keeps epoch 1, and the resumed run ends with the uninterrupted run's weights."""
    import signal
    import threading
    import time

    run = RunDir(tmp_path / "signalled")

    def signal_after_epoch_one() -> None:
        deadline = time.monotonic() + 600
        while run.state().get("epochs_done", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGUSR1)

    sender = threading.Thread(target=signal_after_epoch_one, daemon=True)
    sender.start()
    with pytest.raises(T.RunStopped, match="stopped by SIGUSR1"):
        T.train(build_config(_config_of(tiny_run, run_name="signalled")), tmp_path)
    sender.join()
    assert run.state()["status"] == "running" and run.state()["epochs_done"] == 1
    assert [r["epoch"] for r in run.read_history()] == [1] and not (run.path / ".lock").exists()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the default is back once training ends
    T.resume(run.path)
    assert run.state()["status"] == "finished"
    reference, resumed = _weights(tiny_run / "last.keras"), _weights(run.last)
    assert all(_same(reference[name], resumed[name]) for name in reference)


def test_encoder_transfer_copies_exactly_the_encoder(tiny_run: Path) -> None:
    import keras

    from mammoseg.models import build_model, encoder_layer_names

    keras.utils.set_random_seed(5)
    model = build_model("dilated_resize", image_size=64, width=0.125)
    fresh = {layer.name: layer.get_weights() for layer in model.layers}
    names = T.transfer_encoder(model, tiny_run / "best.keras", freeze=True)
    assert names == encoder_layer_names(model) and names[0] == "conv1" and "conv5.1" in names
    donor = _weights(tiny_run / "best.keras")
    for layer in model.layers:
        if not layer.get_weights():
            continue
        if layer.name in names:
            assert _same(layer.get_weights(), donor[layer.name]) and not layer.trainable
        else:
            assert _same(layer.get_weights(), fresh[layer.name]) and layer.trainable


def _write_toml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_toml_and_command_line_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake_train(config, runs_dir):
        seen["config"], seen["runs_dir"] = config, runs_dir
        return RunDir(Path(runs_dir) / "x")

    monkeypatch.setattr(T, "train", fake_train)
    monkeypatch.delenv("MAMMOSEG_RUNS_DIR", raising=False)
    flat = _write_toml(tmp_path / "flat.toml", """
        variant = "fcn_skips"
        data = "some/data"
        epochs = 5
        width = 0.5
        learning_rate = 0.001
        runs_dir = "toml-runs"
    """)
    result = CliRunner().invoke(cli, ["train", "--config", str(flat), "--epochs", "7", "--seed", "3"])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert (config.epochs, config.width, config.seed, config.learning_rate) == (7, 0.5, 3, 0.001)
    assert config.positive_weight == 33.0 and config.data == "some/data" and config.batch_size == 16
    assert Path(seen["runs_dir"]) == Path("toml-runs")
    # the environment sits below the TOML's runs_dir and above the default
    monkeypatch.setenv("MAMMOSEG_RUNS_DIR", str(tmp_path / "env-runs"))
    assert CliRunner().invoke(cli, ["train", "--config", str(flat)]).exit_code == 0
    assert Path(seen["runs_dir"]) == Path("toml-runs")
    assert CliRunner().invoke(cli, ["train", "--variant", "fcn_skips", "--data", "d"]).exit_code == 0
    assert Path(seen["runs_dir"]) == tmp_path / "env-runs"
    monkeypatch.delenv("MAMMOSEG_RUNS_DIR")
    # an experiment file: its [train] table and [experiment] data; the CLI still wins
    experiment = _write_toml(tmp_path / "exp.toml", """
        [experiment]
        data = "exp/data"
        [train]
        epochs = 4
        positive_weight = 9.0
    """)
    args = ["train", "--config", str(experiment), "--variant", "dilated_resize", "--positive-weight", "2",
            "--runs-dir", str(tmp_path / "cli-runs")]
    assert CliRunner().invoke(cli, args).exit_code == 0
    config = seen["config"]
    assert (config.epochs, config.positive_weight, config.data) == (4, 2.0, "exp/data")
    assert Path(seen["runs_dir"]) == tmp_path / "cli-runs"


# Four pixels: logits and labels chosen so that each cross-entropy is a simple logarithm.
LOSS_LOGITS = np.array([[[[0.0, 0.0], [0.0, np.log(3)], [np.log(3), 0.0], [2.0, 0.0]]]], np.float32)
LOSS_LABELS = np.array([[[[0], [1], [1], [0]]]], np.float32)
LOSS_CE = np.array([np.log(2), np.log(4 / 3), np.log(4), np.log(1 + np.exp(-2))])  # -log p(true class)


def test_loss_hand_example_and_normalisations() -> None:
    """Positive weight 5: weights 1, 5, 5, 1. The author's divides the weighted sum by 4 pixels, not by 12."""
    from mammoseg.training.loss import WeightedPixelCrossEntropy

    weighted_sum = LOSS_CE @ np.array([1.0, 5.0, 5.0, 1.0])
    pixels = float(WeightedPixelCrossEntropy(5.0)(LOSS_LABELS, LOSS_LOGITS))
    weights = float(WeightedPixelCrossEntropy(5.0, "weights")(LOSS_LABELS, LOSS_LOGITS))
    assert pixels == pytest.approx(weighted_sum / 4, rel=1e-6)
    assert weights == pytest.approx(weighted_sum / 12, rel=1e-6)
    # more abnormal pixels, larger loss: his scale grows with the weight, the weighted mean does not
    assert float(WeightedPixelCrossEntropy(1.0)(LOSS_LABELS, LOSS_LOGITS)) == pytest.approx(LOSS_CE.mean(), rel=1e-6)
    assert WeightedPixelCrossEntropy(5.0).get_config()["normalization"] == "pixels"
    with pytest.raises(ValueError, match="normalization"):
        WeightedPixelCrossEntropy(5.0, "mean")
    tf = pytest.importorskip("tensorflow")
    # his script: tf.losses.sparse_softmax_cross_entropy(labels, logits, weights=1 + (w - 1) * [label > 0])
    his = tf.compat.v1.losses.sparse_softmax_cross_entropy(
        labels=LOSS_LABELS.astype(np.int32), logits=LOSS_LOGITS, weights=1.0 + 4.0 * LOSS_LABELS)
    assert pixels == pytest.approx(float(his), rel=1e-6)


def test_clear_errors_for_bad_config(tmp_path: Path) -> None:
    bad = _write_toml(tmp_path / "bad.toml", 'variant = "dilated_resize"\nepoch = 3\n')
    result = CliRunner().invoke(cli, ["train", "--config", str(bad), "--data", "d"])
    assert isinstance(result.exception, InputError) and "unknown key(s) epoch" in str(result.exception)
    assert str(bad) in str(result.exception)
    with pytest.raises(InputError, match="unknown variant 'unet'"):
        build_config({"variant": "unet", "data": "d"})
    with pytest.raises(InputError, match="epochs must be a positive integer"):
        build_config({"variant": "dilated_resize", "data": "d", "epochs": 0})
    with pytest.raises(InputError, match="loss_normalization must be one of pixels, weights"):
        build_config({"variant": "dilated_resize", "data": "d", "loss_normalization": "mean"})
    with pytest.raises(InputError, match="freeze_encoder needs init_encoder_from"):
        build_config({"variant": "dilated_resize", "data": "d", "freeze_encoder": True})
    broken = tmp_path / "broken.toml"
    broken.write_text("epochs = = 3")
    with pytest.raises(InputError, match="not valid TOML"):
        build_config(__import__("mammoseg.training.config", fromlist=["x"]).train_table(broken))


def test_locked_and_finished_run_folders(tiny_run: Path, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "busy")
    run.path.mkdir()
    (run.path / ".lock").write_text(f"{os.getpid()} {os.uname().nodename}\n")
    config = build_config(_config_of(tiny_run, run_name="busy"))
    with pytest.raises(RunLocked, match="in use by process"):
        T.train(config, tmp_path)
    (run.path / ".lock").write_text(f"999999999 {os.uname().nodename}\n")  # a dead process: stale, taken over
    with run.lock():
        assert (run.path / ".lock").read_text().startswith(str(os.getpid()))
    assert not (run.path / ".lock").exists()
    finished = build_config(_config_of(tiny_run, run_name=tiny_run.name))
    with pytest.raises(InputError, match="already exists"):
        T.train(finished, tiny_run.parent)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(InputError, match="cannot write"):
        with RunDir(blocked / "run").lock():
            pass


def test_frozen_encoder_training_on_two_cpu_devices(tiny_run: Path, tmp_path: Path) -> None:
    """The article's five-epoch step (copied, frozen encoder) under MirroredStrategy over two logical CPU
    devices. Those must be configured before TensorFlow starts, hence a fresh process."""
    import keras

    from mammoseg.models import build_model, encoder_layer_names

    values = _config_of(tiny_run, run_name="frozen", epochs=1, distribute="mirrored", init_encoder_from=str(tiny_run),
                        freeze_encoder=True)
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from mammoseg.training.config import build_config
        from mammoseg.training.train import train
        train(build_config({values!r}), {str(tmp_path)!r})
    """)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = RunDir(tmp_path / "frozen")
    config = run.config()
    assert config["distribution"]["replicas"] == 2 and run.state()["status"] == "finished"
    assert config["trainable_params"] < config["params"]
    with open(run.path / "history.csv") as f:
        assert len(list(csv.DictReader(f))) == 1
    donor, trained = _weights(tiny_run / "best.keras"), _weights(run.last)
    names = encoder_layer_names(keras.saving.load_model(run.last, compile=False))
    for name in names:
        assert _same(trained[name], donor[name]), name
    keras.utils.set_random_seed(values.get("seed", 0))
    initial = build_model("dilated_resize", image_size=64, width=values["width"])
    for name in ("conv5.2", "up_conv2", "logits"):
        assert not _same(trained[name], initial.get_layer(name).get_weights()), name


def test_nan_loss_stops_clearly_and_keeps_the_last_good_checkpoint(tiny_run: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from keras import ops

    from mammoseg.training.loss import WeightedPixelCrossEntropy

    shutil.copytree(tiny_run, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    before = run.last.read_bytes()
    monkeypatch.setattr(WeightedPixelCrossEntropy, "call", lambda self, y, p: ops.sum(p) * float("nan"))
    with pytest.raises(T.TrainingDiverged, match="NaN or infinite in epoch 3.*epoch 2"):
        T.resume(run.path, {"epochs": 3})
    assert run.last.read_bytes() == before and len(run.read_history()) == 2
    state = run.state()
    assert state["status"] == "failed" and "NaN" in state["error"] and not (run.path / ".lock").exists()


def test_only_the_chief_writes_into_the_run_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    from mammoseg.training.distribute import worker_subfolder

    assert worker_subfolder("mirrored") is None
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert worker_subfolder("multi-worker") is None
    cluster = {"worker": ["a:1", "b:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert worker_subfolder("multi-worker") is None
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert worker_subfolder("multi-worker") == ".workers/worker-1"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["c:0"], **cluster},
                                                 "task": {"type": "worker", "index": 0}}))
    assert worker_subfolder("multi-worker") == ".workers/worker-0"


def _killed_before_config(run: Path, kill_point: str) -> None:
    """A run folder as a kill leaves it before config.json: a stale lock, then TensorBoard's folder, then
    the epoch-0 previews, the initial checkerboard scores and a torn temporary file."""
    import socket

    run.mkdir(parents=True)
    (run / ".lock").write_text(f"999999999 {socket.gethostname()}\n")  # no such process: a stale lock
    if kill_point in ("tensorboard", "previews"):
        (run / "tb" / "train").mkdir(parents=True)
        (run / "tb" / "train" / "events.out.tfevents.0.host").write_bytes(b"\x00" * 7)
    if kill_point == "previews":
        (run / "previews" / "epoch_000").mkdir(parents=True)
        (run / "previews" / "epoch_000" / "ex0000_soft.png").write_bytes(b"\x89PNG")
        (run / "checkerboard_init.json").write_text("{}")
        (run / ".config.x1.tmp.json").write_text('{"vari')


@pytest.mark.parametrize("kill_point", ["lock", "tensorboard", "previews"])
def test_resume_of_a_run_killed_before_its_config(kill_point: str, tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "early"
    _killed_before_config(run, kill_point)
    refused = CliRunner().invoke(cli, ["train", "--resume", str(run)])
    assert isinstance(refused.exception, InputError), refused.output
    assert str(refused.exception).startswith(f"{run}: the run stopped before it wrote config.json")
    if kill_point != "previews":
        return  # the start below does not depend on what was left: done once, with the most left over
    saved = _config_of(tiny_run)
    options = ["--variant", saved["variant"], "--data", saved["data"], "--width", str(saved["width"]),
               "--epochs", "1", "--batch-size", str(saved["batch_size"])]
    started = CliRunner().invoke(cli, ["train", "--resume", str(run), *options], catch_exceptions=False)
    assert started.exit_code == 0, started.output
    state = RunDir(run).state()
    assert state["status"] == "finished" and state["epochs_done"] == 1 and not (run / ".lock").exists()
    assert RunDir(run).config()["run_name"] == "early" and len(RunDir(run).read_history()) == 1


def test_two_ablations_of_one_experiment_share_its_runs(tiny_run: Path, tmp_path: Path) -> None:
    """Each run is trained and evaluated once, by whichever process locks it first; the other waits for
    it, then both report on all runs, and no file is left half-written."""
    data = _config_of(tiny_run)["data"]
    toml = tmp_path / "exp.toml"
    toml.write_text(textwrap.dedent(f"""
        [experiment]
        name = "exp"
        data = "{data}"
        seeds = 2
        variants = ["dilated_resize"]
        [train]
        width = 0.125
        epochs = 1
        batch_size = 4
    """))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "mammoseg", "ablate", "--config", str(toml), "--runs-dir", str(tmp_path / "runs")]
    processes = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (out, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
        assert "2 runs trained and evaluated" in out
    logs = "".join(err for _, err in outputs).splitlines()
    assert sum(line.startswith("epoch 1/1") for line in logs) == 2  # two runs, each trained once
    assert sum(line.startswith("evaluating ") for line in logs) == 2
    runs = tmp_path / "runs" / "exp"
    for seed in (0, 1):
        run = RunDir(runs / f"dilated_resize-seed{seed}")
        assert run.state()["status"] == "finished" and len(run.read_history()) == 1
        assert (run.path / "eval" / "test" / "metrics.json").is_file() and not (run.path / ".lock").exists()
    assert not [p for p in runs.rglob("*") if ".tmp" in p.name]


def test_losses_saved_before_the_normalization_option_keep_dividing_by_the_weights() -> None:
    from mammoseg.training.loss import WeightedPixelCrossEntropy

    config = WeightedPixelCrossEntropy(18.0).get_config()
    assert WeightedPixelCrossEntropy.from_config(config).normalization == "pixels"
    config.pop("normalization")
    assert WeightedPixelCrossEntropy.from_config(config).normalization == "weights"
