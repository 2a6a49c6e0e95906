"""Loading a saved network: one place that turns a `.keras` file into a model or a one-line error.

Inference, evaluation, encoder transfer and the `checkerboard` command load without the training
configuration (`compile=False`): the project's loss and metrics are needed only to resume training,
which registers them (`mammoseg.training.loss`) first. The custom upsampling layers a checkpoint may
name register with this module's import.
"""

from __future__ import annotations

from pathlib import Path

import keras

from mammoseg.core.errors import InputError
from mammoseg.models import upsampling  # noqa: F401  (registers the layers a checkpoint may name)


def load_model(path: str | Path, *, compile: bool = False) -> keras.Model:
    """The network saved in `path`; InputError naming the file when it is missing or not a Keras model."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such model file")
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as exc:  # a corrupt or foreign file raises whatever its reader raises: say which file
        raise InputError(path, f"cannot load the model ({str(exc).splitlines()[0][:160]})") from exc
