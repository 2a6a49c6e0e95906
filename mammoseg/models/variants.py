"""The article's five networks as specs over the shared blocks, and the one builder that reads them.

Every variant is the shared VGG-like encoder (`conv1` ... `conv5.1`), a head (FCN: `pool5`,
`fc_1`, `fc_2` down to 2x2x2048; dilated: `conv5.2`, `conv5.3` at 1/32 resolution) and a decoder.
Read two decoders side by side to see what an ablation changes; everything else is shared.

Image sizes: the dilated variants take any multiple of 32 (decoder input S/32). The FCN variants
take any multiple of 128: the author's `fc_1` is a 5x5 stride-5 VALID conv on the 10x10 `pool5`
map at 640; here its kernel = stride = S/128, which is his 5x5/5 at 640 and always yields the 2x2
map (`up_conv1` mirrors it with the same kernel = stride).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import keras

from mammoseg.core.conventions import ARTICLE_ORDER
from mammoseg.models.blocks import (
    FC_SCALE,
    L2_LAMBDA,
    NUM_CLASSES,
    TRANSPOSE_KERNEL,
    Bottleneck,
    BuildOptions,
    Conv,
    Pool,
    Resize,
    Step,
    Transpose,
    apply_step,
    layer_name,
)

ENCODER: tuple[Step, ...] = (
    Conv("conv1", 32, stride=2, tap="bn"),
    Conv("conv1.1", 32),
    Conv("conv1.2", 32),
    Pool("pool1", size=3),
    Conv("conv2.1", 64),
    Conv("conv2.2", 64),
    Pool("pool2"),
    Conv("conv3.1", 128),
    Conv("conv3.2", 128),
    Pool("pool3"),
    Conv("conv4", 256, tap="bn"),
    Conv("conv4.1", 256),
    Pool("pool4"),
    Conv("conv5", 512, tap="bn"),
    Conv("conv5.1", 512),
)

# Dropout after BatchNorm and before ReLU equals the author's dropout after ReLU (ReLU commutes with it).
FCN_HEAD: tuple[Step, ...] = (
    Pool("pool5"),
    Conv("fc_1", 2048, kernel=FC_SCALE, stride=FC_SCALE, padding="valid", dropout=0.25, dropout_after_bn=True),
    Conv("fc_2", 2048, kernel=1, dropout=0.25, dropout_after_bn=True),
)

DILATED_HEAD: tuple[Step, ...] = (
    Conv("conv5.2", 512, dilation=2),
    Conv("conv5.3", 512, dilation=2),
)


def _without_l2(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    """The same steps with every kernel, bottlenecks included, left out of the L2 penalty."""

    def bare(step: Step) -> Step:
        if not isinstance(step, (Conv, Transpose)):
            return step
        skip = replace(step.skip, regularized=False) if isinstance(step.skip, Bottleneck) else step.skip
        return replace(step, regularized=False, skip=skip)

    return tuple(bare(step) for step in steps)


# L2 as the author applied it: his lamC = 1e-5 on the encoder, the FCN head (fc_1, fc_2 included) and
# conv5.2/conv5.3 everywhere; in the decoders, per variant as marked below (his 3.2.4.01 and 3.2.5.03
# regularise no decoder layer at all, 3.2.7.01 all but the 1x1 convs and logits, 3.6.0.04 all but
# upsample_4, upsample_5 and logits).
FCN_SKIPS: tuple[Step, ...] = _without_l2((
    Transpose("up_conv1", 512, FC_SCALE, FC_SCALE, skip="pool5", act="elu"),
    Transpose("up_conv2", 256, 4, 2, skip="pool4", act="elu"),
    Transpose("up_conv3", 128, 4, 2, skip="pool3", act="elu"),
    Transpose("up_conv4", 64, 4, 2, skip="pool2", act="elu"),
    Transpose("up_conv5", 32, 4, 2, dropout=0.1, skip="pool1", act="elu"),
    Conv("up_conv6", 16, 3, act="elu"),
    Transpose("up_conv7", 32, 4, 2, dropout=0.1, skip="conv1", act="elu"),
    Conv("up_conv8", 16, 3, act="elu"),
    Transpose("logits", NUM_CLASSES, 4, 2, output=True),
))

FCN_BOTTLENECK: tuple[Step, ...] = _without_l2((
    Transpose("up_conv1", 512, FC_SCALE, FC_SCALE, bn=True, skip="pool5", act="elu"),
    Transpose("up_conv2", 256, 4, 2, bn=True, skip=Bottleneck("bottleneck_5.1", "conv5", 256, bn=True), act="elu"),
    Transpose("up_conv3", 128, 4, 2, bn=True, skip=Bottleneck("bottleneck_4.1", "conv4", 128), act="elu"),
    Transpose("up_conv4", 64, 4, 2, bn=True, skip=Bottleneck("bottleneck_3.1", "conv3.1", 64), act="elu"),
    Transpose("up_conv5", 32, 4, 2, bn=True, dropout=0.1, skip=Bottleneck("bottleneck_2.1", "conv2.1", 32), act="elu"),
    Conv("up_conv6", 16, 3, act="elu"),
    Transpose("up_conv7", 32, 4, 2, bn=True, dropout=0.1, skip="conv1", act="elu"),
    Conv("up_conv8", 16, 3, act="elu"),
    Transpose("logits", NUM_CLASSES, 4, 2, output=True),
))

FCN_RESIZE_MID: tuple[Step, ...] = (
    Transpose("up_conv1", 512, FC_SCALE, FC_SCALE, skip="pool5", act="elu"),
    Transpose("up_conv2", 256, 4, 2, bn=True, act="elu",
              skip=Bottleneck("bottleneck_5.1", "conv5", 256, bn=True, regularized=False)),
    Conv("up_conv3", 64, 1, bn=False, act="elu", regularized=False),
    Resize("resize_3", 2),
    Conv("up_conv4", 64, 3, dropout=0.1, skip=Bottleneck("bottleneck_4.1", "conv4", 64, regularized=False), act="elu"),
    Conv("up_conv6", 32, 3, act="elu"),
    Transpose("up_conv5", 32, 4, 2, bn=True, dropout=0.1, act="elu",
              skip=Bottleneck("bottleneck_3.1", "conv3.2", 32, act="elu", regularized=False)),
    Resize("resize_6", 8),
    Conv("up_conv7", 16, 3, act="elu"),
    Transpose("logits", NUM_CLASSES, 3, 1, output=True, regularized=False),
)

DILATED_RESIZE: tuple[Step, ...] = (
    Resize("resize_1", 2),
    Conv("up_conv2", 512),
    Resize("resize_3", 2),
    Conv("up_conv4", 128, dropout=0.01, dropout_after_bn=True),
    Conv("up_conv5", 64),
    Resize("resize_6", 4),
    Conv("up_conv6", 32),
    Conv("up_conv7", 32),
    Transpose("upsample_4", 16, 4, 2, act="relu", regularized=False),
    Transpose("upsample_5", 8, 3, 1, act="relu", regularized=False),
    Conv("logits", NUM_CLASSES, 1, bn=False, act=None, output=True, regularized=False),
)

# The control of the article's Figures 6 and 7: only the first upsampling step differs. upsample_1 (the
# first step of his 3.6.0.01) carries the L2 penalty like the decoder convs around it; 3.6.0.04 exempts
# only its last two transposes and the logits.
DILATED_TRANSPOSE: tuple[Step, ...] = (Transpose("upsample_1", 512, TRANSPOSE_KERNEL, 2),) + DILATED_RESIZE[1:]


@dataclass(frozen=True)
class VariantSpec:
    """One network: trunk (encoder + head) then decoder, and the image sizes it can take."""

    name: str
    summary: str
    trunk: tuple[Step, ...]
    decoder: tuple[Step, ...]
    size_multiple: int

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.trunk + self.decoder


VARIANTS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        VariantSpec("fcn_skips", "FCN, seven transposed convs, additive skips", ENCODER + FCN_HEAD, FCN_SKIPS, 128),
        VariantSpec("fcn_bottleneck", "FCN, 1x1 bottlenecks before four skips", ENCODER + FCN_HEAD, FCN_BOTTLENECK, 128),
        VariantSpec("fcn_resize_mid", "FCN, middle transposes replaced by resize+conv", ENCODER + FCN_HEAD, FCN_RESIZE_MID, 128),
        VariantSpec("dilated_transpose", "dilated, first upsampling by transposed conv", ENCODER + DILATED_HEAD, DILATED_TRANSPOSE, 32),
        VariantSpec("dilated_resize", "dilated, resize+conv upsampling (final model)", ENCODER + DILATED_HEAD, DILATED_RESIZE, 32),
    )
}


def variant_names() -> list[str]:
    """Variant names in the article's order, from the first FCN to the final model (specs in `VARIANTS`)."""
    return list(ARTICLE_ORDER)


def get_spec(variant: str) -> VariantSpec:
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}") from None


def check_image_size(variant: str, image_size: int) -> None:
    """Raise ValueError unless the variant's down- and upsampling map `image_size` back onto itself exactly."""
    spec = get_spec(variant)
    m = spec.size_multiple
    if not isinstance(image_size, int) or image_size < m or image_size % m:
        why = (
            "FCN variants need a multiple of 128 (fc_1's kernel = stride = size/128 reduces the size/64 pool5 map to 2x2)"
            if m == 128
            else "dilated variants need a multiple of 32 (the encoder downsamples by 32)"
        )
        raise ValueError(f"{variant}: image size {image_size} is not supported: {why}")


def build_model(
    variant: str,
    *,
    image_size: int = 640,
    width: float = 1.0,
    transpose_kernel: int = 4,
    dropout: bool = True,
    l2: float = L2_LAMBDA,
) -> keras.Model:
    """Build one variant: input "image" [S,S,1] float32, output logits [S,S,2] in float32.

    P(abnormal) = softmax(logits)[..., 1]. `width` scales every filter count but the logits' (at
    least one filter per layer); `transpose_kernel` is `upsample_1`'s kernel in `dilated_transpose`
    (4: the author's even overlap; 3: Odena et al.'s uneven-overlap case); `dropout=False` leaves
    out every dropout layer (weights stay interchangeable); `l2` is the author's lambda (penalty
    l2 * sum(k^2) / 2 on the kernels he regularised, see the decoders; 0: none).
    Weights are drawn from Keras' global RNG: call `keras.utils.set_random_seed` first to repeat them.
    """
    spec = get_spec(variant)
    check_image_size(variant, image_size)
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


def decoder_input_shape(model: keras.Model, variant: str | None = None) -> tuple[int, ...]:
    """Shape (without batch) of the tensor the decoder starts from: 2x2x2048 (FCN) or S/32 x S/32 x 512.

    `variant` defaults to the model's name, which `build_model` sets (and saving keeps).
    """
    first = layer_name(get_spec(variant or model.name).decoder[0].name)
    return tuple(model.get_layer(first).input.shape[1:])
