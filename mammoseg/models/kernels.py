"""The checkerboard facts of a model's learned upsampling kernels (docs/design.md §4), read from its weights.

The scores themselves are numpy functions of a kernel (`mammoseg.metrics.checkerboard`); this module
only finds the layers of a Keras model they apply to and hands each one over as a stride-s transposed
kernel: a transposed convolution as it is, a sub-pixel convolution rearranged into the transposed
kernel it equals (`subpixel_transposed_kernel`). Resizes (nearest, bilinear, bilinear additive) have no
learned kernel: every phase of their fixed kernel sums to the same value, and only the map measures apply.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mammoseg.metrics.checkerboard import kernel_checkerboard_score, kernel_overlap, subpixel_transposed_kernel
from mammoseg.models.blocks import SHUFFLE_SUFFIX
from mammoseg.models.build import subpixel_layer_names, transposed_layer_names


def upsampling_kernel(model: keras.Model, name: str) -> tuple[np.ndarray, tuple[int, int]] | None:
    """Layer `name`'s kernel as a transposed kernel [kH, kW, out, in] and its stride; None when the layer
    is neither a transposed nor a sub-pixel convolution."""
    layer = model.get_layer(name)
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return keras.ops.convert_to_numpy(layer.kernel), tuple(layer.strides)
    if name in subpixel_layer_names(model):
        factor = model.get_layer(f"{name}{SHUFFLE_SUFFIX}").factor
        return subpixel_transposed_kernel(keras.ops.convert_to_numpy(layer.kernel), factor), (factor, factor)
    return None


def model_kernel_scores(model: keras.Model) -> dict[str, float]:
    """Kernel checkerboard score of every transposed and sub-pixel convolution of a Keras model, by layer name."""
    return {name: kernel_checkerboard_score(kernel, stride) for name, (kernel, stride) in _upsampling(model)}


def model_kernel_overlap(model: keras.Model) -> dict[str, dict[str, Any]]:
    """`kernel_overlap` of every transposed and sub-pixel convolution of a Keras model, by layer name."""
    return {name: kernel_overlap(kernel.shape[:2], stride) for name, (kernel, stride) in _upsampling(model)}


def _upsampling(model: keras.Model) -> list[tuple[str, tuple[np.ndarray, tuple[int, int]]]]:
    names = set(transposed_layer_names(model)) | set(subpixel_layer_names(model))
    return [(layer.name, upsampling_kernel(model, layer.name)) for layer in model.layers if layer.name in names]
