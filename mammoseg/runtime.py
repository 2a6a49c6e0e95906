"""Process-wide set-up shared by every command: quiet TensorFlow logs, logging, environment facts."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import platform
import sys
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger("mammoseg")


def configure_logging(verbosity: int) -> None:
    """verbosity: -1 quiet (warnings only), 0 normal, 1+ debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s" if verbosity <= 0 else "%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("mammoseg")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbosity > 0 else "2")


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for a while: TensorFlow's C++ start-up lines (oneDNN,
    CUDA probing on a machine without a GPU) are written by absl and ignore TF_CPP_MIN_LOG_LEVEL."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def start_backend_quietly() -> None:
    """Import Keras and let its backend probe the devices with the native start-up noise hidden."""
    with native_stderr_silenced():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on, for config.json and benchmark records."""
    names = ["mammoseg", "keras", "tensorflow", "jax", "torch", "numpy", "pandas", "pydicom", "opencv-python-headless"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def environment() -> dict[str, Any]:
    """Backend, devices and versions: what every timing or result must be recorded with."""
    import keras

    info: dict[str, Any] = {
        "keras_backend": keras.backend.backend(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": package_versions(),
    }
    info["devices"] = list_devices()
    return info


def list_devices() -> list[str]:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return [f"{d.device_type}:{d.name}" for d in tf.config.list_logical_devices()]
        if backend == "jax":
            import jax

            return [f"{d.platform}:{d.device_kind}" for d in jax.devices()]
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return [f"cuda:{torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
            return ["cpu"]
    except Exception as exc:  # device discovery must never break a run
        logger.debug("device discovery failed: %s", exc)
    return ["unknown"]
