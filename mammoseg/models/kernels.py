"""The checkerboard facts of a model's transposed convolutions (docs/design.md §4), read from its weights.

The scores themselves are numpy functions of a kernel (`mammoseg.metrics.checkerboard`); this module
only finds the layers of a Keras model they apply to.
"""

from __future__ import annotations

from typing import Any

import keras

from mammoseg.metrics.checkerboard import kernel_checkerboard_score, kernel_overlap
from mammoseg.models.variants import transposed_layer_names


def model_kernel_scores(model: keras.Model) -> dict[str, float]:
    """Kernel checkerboard score of every transposed convolution of a Keras model, by layer name."""
    return {name: kernel_checkerboard_score(keras.ops.convert_to_numpy(layer.kernel), tuple(layer.strides))
            for name, layer in _transposed(model)}


def model_kernel_overlap(model: keras.Model) -> dict[str, dict[str, Any]]:
    """`kernel_overlap` of every transposed convolution of a Keras model, by layer name."""
    return {name: kernel_overlap(tuple(layer.kernel_size), tuple(layer.strides)) for name, layer in _transposed(model)}


def _transposed(model: keras.Model) -> list[tuple[str, Any]]:
    return [(name, model.get_layer(name)) for name in transposed_layer_names(model)]
