"""The article's five networks as specs over the shared step records, registered in the article's order.

Every variant is the shared VGG-like encoder (`conv1` ... `conv5.1`), a head (FCN: `pool5`,
`fc_1`, `fc_2` down to 2x2x2048; dilated: `conv5.2`, `conv5.3` at 1/32 resolution) and a decoder.
Read two decoders side by side to see what an ablation changes; everything else is shared.

Image sizes: the dilated variants take any multiple of 32 (decoder input S/32). The FCN variants
take any multiple of 128: the author's `fc_1` is a 5x5 stride-5 VALID conv on the 10x10 `pool5`
map at 640; here its kernel = stride = S/128, which is his 5x5/5 at 640 and always yields the 2x2
map (`up_conv1` mirrors it with the same kernel = stride).
"""

from __future__ import annotations

from dataclasses import replace

from mammoseg.models.registry import VariantSpec, register
from mammoseg.models.steps import (
    FC_SCALE,
    NUM_CLASSES,
    TRANSPOSE_KERNEL,
    Bottleneck,
    Conv,
    Pool,
    Resize,
    Step,
    Transpose,
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

# The dilated decoder after its first upsampling step: the part every dilated design shares.
DILATED_BODY: tuple[Step, ...] = (
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
DILATED_RESIZE: tuple[Step, ...] = (Resize("resize_1", 2),) + DILATED_BODY

# The control of the article's Figures 6 and 7: only the first upsampling step differs. upsample_1 (the
# first step of his 3.6.0.01) carries the L2 penalty like the decoder convs around it; 3.6.0.04 exempts
# only its last two transposes and the logits.
DILATED_TRANSPOSE: tuple[Step, ...] = (Transpose("upsample_1", 512, TRANSPOSE_KERNEL, 2),) + DILATED_BODY


FCN_SIZES = (128, "FCN variants need a multiple of 128 (fc_1's kernel = stride = size/128 reduces the size/64 "
                  "pool5 map to 2x2)")
DILATED_SIZES = (32, "dilated variants need a multiple of 32 (the encoder downsamples by 32)")
PROBE_STEP = "up_conv2"  # every variant has one: the FCNs' first stride-2 transpose, the dilated ones' conv after
# their first upsampling


def fcn_variant(name: str, summary: str, decoder: tuple[Step, ...], positive_weight: float) -> VariantSpec:
    """An article FCN: the shared encoder, the FCN head, `decoder`."""
    return VariantSpec(name, summary, ENCODER + FCN_HEAD, decoder, *FCN_SIZES, positive_weight=positive_weight,
                       probe_step=PROBE_STEP, article=True)


def dilated_variant(name: str, summary: str, first_upsampling: tuple[Step, ...], *, article: bool = False) -> VariantSpec:
    """The article's final network with its first upsampling step swapped for `first_upsampling` (one or
    more steps that double the 1/32 map), everything else held fixed: the axis of the article's Figures 6-9.
    The author's weight for his dilated networks, 18 (his 3.6)."""
    return VariantSpec(name, summary, ENCODER + DILATED_HEAD, first_upsampling + DILATED_BODY, *DILATED_SIZES,
                       positive_weight=18.0, probe_step=PROBE_STEP, article=article)


# The author's positive weights: his 3.2.4/3.2.5: 33, 3.2.7: 20, 3.6: 18 (in `dilated_variant`).
for _spec in (
    fcn_variant("fcn_skips", "FCN, seven transposed convs, additive skips", FCN_SKIPS, 33.0),
    fcn_variant("fcn_bottleneck", "FCN, 1x1 bottlenecks before four skips", FCN_BOTTLENECK, 33.0),
    fcn_variant("fcn_resize_mid", "FCN, middle transposes replaced by resize+conv", FCN_RESIZE_MID, 20.0),
    dilated_variant("dilated_transpose", "dilated, first upsampling by transposed conv", DILATED_TRANSPOSE[:1],
                    article=True),
    dilated_variant("dilated_resize", "dilated, resize+conv upsampling (final model)", DILATED_RESIZE[:1],
                    article=True),
):
    register(_spec)
