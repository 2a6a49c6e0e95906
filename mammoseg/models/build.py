"""The one builder of every registered variant, and what callers read back from a built model."""

from __future__ import annotations

import keras

from mammoseg.models.blocks import SHUFFLE_SUFFIX, BuildOptions, apply_step, layer_name
from mammoseg.models.registry import check_image_size, get_spec
from mammoseg.models.steps import L2_LAMBDA, Conv
from mammoseg.models.variants import ENCODER


def build_model(
    variant: str,
    *,
    image_size: int = 640,
    width: float = 1.0,
    transpose_kernel: int | None = None,
    dropout: bool = True,
    l2: float = L2_LAMBDA,
) -> keras.Model:
    """Build one variant: input "image" [S,S,1] float32, output logits [S,S,2] in float32.

    P(abnormal) = softmax(logits)[..., 1]. `width` scales every filter count but the logits' (at
    least one filter per layer); `transpose_kernel` is `upsample_1`'s kernel in `dilated_transpose`
    (default: the spec's, 4, the author's even overlap; 3: Odena et al.'s uneven-overlap case); `dropout=False` leaves
    out every dropout layer (weights stay interchangeable); `l2` is the author's lambda (penalty
    l2 * sum(k^2) / 2 on the kernels he regularised, see the decoders; 0: none).
    Weights are drawn from Keras' global RNG: call `keras.utils.set_random_seed` first to repeat them.
    """
    spec = get_spec(variant)
    check_image_size(variant, image_size)
    transpose_kernel = spec.transpose_kernel if transpose_kernel is None else transpose_kernel
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    if not isinstance(transpose_kernel, int) or transpose_kernel < 2:
        raise ValueError(f"transpose_kernel must be an integer >= 2, got {transpose_kernel}")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    opts = BuildOptions(image_size=image_size, width=width, transpose_kernel=transpose_kernel, dropout=dropout, l2=l2)
    inputs = keras.Input((image_size, image_size, 1), name="image", dtype="float32")
    x, taps = inputs, {}
    for step in spec.steps:
        x = apply_step(step, x, taps, opts)
    return keras.Model(inputs, x, name=variant)


def encoder_layer_names(model: keras.Model) -> list[str]:
    """The shared encoder's weighted layers, `conv1` ... `conv5.1` and their BatchNorms, for transfer/freezing."""
    present = {layer.name for layer in model.layers}
    names = []
    for step in ENCODER:
        if isinstance(step, Conv):
            names += [n for n in (layer_name(step.name), layer_name(f"{step.name}_bn")) if n in present]
    return names


def transposed_layer_names(model: keras.Model) -> list[str]:
    """Every transposed convolution in model order (stride 1 ones included)."""
    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2DTranspose)]


def subpixel_layer_names(model: keras.Model) -> list[str]:
    """Every sub-pixel convolution in model order: the convolution whose output a depth-to-space layer shuffles."""
    names = {layer.name for layer in model.layers}
    return [layer.name for layer in model.layers if f"{layer.name}{SHUFFLE_SUFFIX}" in names]


def decoder_input_shape(model: keras.Model, variant: str | None = None) -> tuple[int, ...]:
    """Shape (without batch) of the tensor the decoder starts from: 2x2x2048 (FCN) or S/32 x S/32 x 512.

    `variant` defaults to the model's name, which `build_model` sets (and saving keeps).
    """
    first = layer_name(get_spec(variant or model.name).decoder[0].name)
    return tuple(model.get_layer(first).input.shape[1:])
