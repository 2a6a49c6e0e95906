"""Forward FLOPs per image, counted from layer configurations and shapes (no profiler, any backend).

Convention: FLOPs = 2 x multiply-adds of convolutions, transposed convolutions and dense layers.
A convolution costs out_H x out_W x kH x kW x C_in x C_out multiply-adds; a transposed convolution
scatters its whole kernel from every input pixel, in_H x in_W x kH x kW x C_in x C_out (the
products that SAME padding then crops away are counted, as frameworks compute them). Bias adds,
BatchNorm, activations, pooling, resizes and additions are a few operations per element, under 2%
of these networks' total, and are not counted.
"""

from __future__ import annotations

import math

import keras


def layer_macs(layer: keras.layers.Layer) -> int:
    """Multiply-adds of one layer for one image (0 for layers without a matrix product)."""
    if isinstance(layer, keras.layers.Conv2DTranspose):
        _, h, w, c_in = layer.input.shape
        kh, kw = layer.kernel_size
        return h * w * kh * kw * c_in * layer.filters
    if isinstance(layer, keras.layers.Conv2D):
        _, h, w, _ = layer.output.shape
        c_in = layer.input.shape[-1]
        kh, kw = layer.kernel_size
        return h * w * kh * kw * (c_in // layer.groups) * layer.filters
    if isinstance(layer, keras.layers.Dense):
        return math.prod(layer.input.shape[1:]) * layer.units
    return 0


def count_flops(model: keras.Model) -> int:
    """Forward FLOPs per image: 2 x multiply-adds of every conv, transposed conv and dense layer."""
    return 2 * sum(layer_macs(layer) for layer in model.layers)


def count_activations(model: keras.Model) -> int:
    """Elements per image of every layer's output, the input included: what a training step keeps
    for the backward pass before any fusion, so its memory per image grows with this."""
    return sum(math.prod(layer.output.shape[1:]) for layer in model.layers)
