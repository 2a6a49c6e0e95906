"""Forward FLOPs per image, counted from layer configurations and shapes (no profiler, any backend).

Convention: FLOPs = 2 x multiply-adds of convolutions, transposed convolutions and dense layers.
A convolution costs out_H x out_W x kH x kW x C_in x C_out multiply-adds; a transposed convolution
scatters its whole kernel from every input pixel, in_H x in_W x kH x kW x C_in x C_out (the
products that SAME padding then crops away are counted, as frameworks compute them). A sub-pixel
convolution is its convolution at the low resolution (factor² x C output channels); its depth-to-space
moves elements and computes nothing. Bias adds, BatchNorm, activations, pooling, resizes (bilinear
ones included), channel-group sums and additions are a few operations per element, under 2% of these
networks' total, and are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import keras

from mammoseg.models.build import build_model, decoder_input_shape, subpixel_layer_names, transposed_layer_names
from mammoseg.models.registry import check_image_size, variant_names


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


@dataclass(frozen=True)
class VariantCost:
    """One variant built at one size: what it costs, or why the size does not fit it."""

    name: str
    params: int = 0
    flops: int = 0
    transposed: int = 0
    subpixel: int = 0
    decoder_input: tuple[int, ...] = ()
    unsupported: str = ""


def variant_costs(image_size: int, width: float = 1.0, transpose_kernel: int | None = None) -> Iterator[VariantCost]:
    """Every registered variant, built one at a time (at width 1 each takes seconds): parameters, forward
    FLOPs per image, transposed and sub-pixel layers and the shape the decoder starts from."""
    for name in variant_names():
        try:
            check_image_size(name, image_size)
        except ValueError as exc:
            yield VariantCost(name, unsupported=str(exc).split(": ", 2)[-1])
            continue
        model = build_model(name, image_size=image_size, width=width, transpose_kernel=transpose_kernel)
        yield VariantCost(name, model.count_params(), count_flops(model), len(transposed_layer_names(model)),
                          len(subpixel_layer_names(model)), decoder_input_shape(model))
