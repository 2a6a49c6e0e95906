"""Process-wide set-up shared by every command: quiet TensorFlow logs, logging, environment facts."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import multiprocessing
import os
import pickle
import platform
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from mammoseg.core.errors import MammosegError

T = TypeVar("T")

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


def run_in_fresh_process(function: Callable[..., T], *args: Any, what: str | None = None) -> T:
    """`function(*args)` in a newly spawned Python process, its result or exception returned here;
    `what` names the work in the error raised when the process dies without either.

    TensorFlow does not give back all of a trained model's memory, even after `clear_session`
    (tensorflow/tensorflow#61791): a process that trains one model after another grows by about a
    model's weights and optimizer state each time, on the accelerator too. A process per run gives
    everything back when it ends. Ctrl-C reaches both processes; this one waits for the other to
    stop, so the run can leave its state consistent.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    level = logging.getLogger("mammoseg").level
    verbosity = -1 if level >= logging.WARNING else 1 if level <= logging.DEBUG else 0
    process = context.Process(target=_child_main, args=(sender, verbosity, function, args), daemon=True)
    process.start()
    sender.close()
    try:
        ok, value = receiver.recv()
    except EOFError:
        process.join()
        raise MammosegError(
            f"{what or getattr(function, '__name__', function)}: its process ended without a result (exit code "
            f"{process.exitcode}; a negative code is the signal that stopped it, -9 often the system running out "
            "of memory)"
        ) from None
    except KeyboardInterrupt:
        process.join(timeout=60)
        raise
    finally:
        receiver.close()
    process.join()
    if not ok:
        raise value
    return value


def _child_main(sender: Any, verbosity: int, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    configure_logging(verbosity)
    start_backend_quietly()
    try:
        outcome: tuple[bool, Any] = (True, function(*args))
    except KeyboardInterrupt:
        sys.exit(130)
    except MammosegError as exc:
        outcome = (False, exc)
    except Exception as exc:  # a bug: show where, then hand it over
        traceback.print_exc()
        outcome = (False, exc)
    try:
        sender.send(outcome)
    except (pickle.PicklingError, TypeError, AttributeError):
        sender.send((False, MammosegError(f"{type(outcome[1]).__name__}: {outcome[1]}")))
    finally:
        sender.close()


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


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """(major, minor) compute capability of every GPU the active backend sees; empty without one (or where
    the backend does not say: a GPU of unknown capability is no GPU to choose a precision for)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            details = [tf.config.experimental.get_device_details(d) for d in tf.config.list_physical_devices("GPU")]
            return [tuple(d["compute_capability"]) for d in details if d.get("compute_capability")]
        if backend == "jax":
            import jax

            return [tuple(int(p) for p in str(d.compute_capability).split(".")[:2])
                    for d in jax.devices() if d.platform == "gpu" and getattr(d, "compute_capability", None)]
        if backend == "torch":
            import torch

            return [tuple(torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())]
    except Exception as exc:  # device discovery must never break a run
        logger.debug("compute capability discovery failed: %s", exc)
    return []
