"""What the program chooses for the machine and the Keras release it runs on: precision `auto` from the GPUs'
compute capability, and the private Keras function multi-worker training patches."""

from __future__ import annotations

import configparser
from pathlib import Path

import keras
import pytest
from packaging.requirements import Requirement

from mammoseg.training.config import auto_precision

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


@pytest.mark.parametrize("capabilities, expected", [
    ([], "float32"),                      # no GPU
    ([(7, 0)], "float32"),                # V100: no bfloat16 tensor cores
    ([(7, 5)], "float32"),                # T4
    ([(8, 0)], "mixed_bfloat16"),         # A100
    ([(8, 6), (9, 0)], "mixed_bfloat16"),
    ([(9, 0), (7, 5)], "float32"),        # one old GPU among new ones: every replica must support it
])
def test_auto_precision_reads_the_compute_capability(capabilities, expected):
    assert auto_precision(capabilities) == expected


def test_the_installed_keras_is_in_the_pinned_range():
    """The Keras patch is tested on one range of releases; setup.cfg must not allow others."""
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG)
    requirements = [Requirement(line) for line in cfg["options"]["install_requires"].splitlines()
                    if line.strip() and not line.strip().startswith("#")]
    pin = next(r for r in requirements if r.name == "keras")
    assert pin.specifier.contains(keras.__version__), f"keras {keras.__version__} is outside {pin}"
    assert any(spec.operator == "<" for spec in pin.specifier), "the Keras range has no upper bound"


class _FakeMultiWorker:
    """Records the axis of every reduction, as MultiWorkerMirroredStrategy.reduce would receive it."""

    def __init__(self) -> None:
        self.axes: list[tuple[int, object]] = []

    def reduce(self, op: str, value, axis=None):
        self.axes.append((len(value.shape), axis))
        return value


@pytest.fixture
def multi_worker_trainer(monkeypatch):
    """Keras' TensorFlow trainer believing it runs under multi-worker training; its reduce function restored after."""
    from keras.src.backend.tensorflow import trainer

    monkeypatch.setattr(trainer, "_collective_all_reduce_multi_worker", lambda strategy: True)
    monkeypatch.setattr(trainer, "reduce_per_replica", trainer.reduce_per_replica)
    return trainer


def test_the_patch_is_still_needed(multi_worker_trainer):
    """Unpatched, Keras reduces every value over axis 0 under multi-worker training, and TensorFlow's strategies
    reject axis 0 for a scalar loss: the failure the patch mends."""
    import tensorflow as tf

    strategy = _FakeMultiWorker()
    multi_worker_trainer.reduce_per_replica({"loss": tf.constant(1.0)}, strategy, "auto")
    if strategy.axes != [(0, 0)]:
        pytest.skip(f"Keras {keras.__version__} no longer reduces a scalar over axis 0 ({strategy.axes}): "
                    "_average_scalars_across_workers in training/distribute.py can go")
    with pytest.raises(ValueError, match="Invalid reduction dimension 0"):
        tf.distribute.MirroredStrategy(["/cpu:0"]).reduce("MEAN", tf.constant(1.0), axis=0)


def test_the_patch_still_applies(multi_worker_trainer):
    import tensorflow as tf

    from mammoseg.training.distribute import _average_scalars_across_workers

    _average_scalars_across_workers()
    assert getattr(multi_worker_trainer.reduce_per_replica, "averages_scalars", False)
    _average_scalars_across_workers()  # installed once: a second call does not wrap it again
    strategy = _FakeMultiWorker()
    multi_worker_trainer.reduce_per_replica({"loss": tf.constant(1.0), "batch": tf.ones((3,))}, strategy, "auto")
    assert sorted(strategy.axes, key=str) == sorted([(0, None), (1, 0)], key=str)
