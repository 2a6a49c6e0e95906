"""The shared building blocks of every variant: the one function that turns step records
(`mammoseg.models.steps`) into Keras layers, so that every design shares every other detail
(initialisation, the L2 scale, BatchNorm settings, layer naming).

Each step produces Keras layers named after the article's author: the operation keeps the step's
name (`conv1.1`, `up_conv2`, `logits`), the layers around it get derived names
(`conv1.1_bn`, `up_conv2_dropout`, `up_conv2_add`, `up_conv2_elu`); under the PyTorch backend
dots become underscores (`layer_name`). After a step, the following
operations run in this fixed order: dropout (unless `dropout_after_bn`), BatchNorm, dropout
(if `dropout_after_bn`), skip addition, activation.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from mammoseg.models.steps import (
    AUTHOR_TRANSPOSE_KERNEL,
    FC_SCALE,
    L2_LAMBDA,
    TRANSPOSE_KERNEL,
    BilinearAdditive,
    Bottleneck,
    Conv,
    Pool,
    Resize,
    Size,
    Step,
    SubPixel,
    Transpose,
)
from mammoseg.models.upsampling import ICNR, ChannelGroupSum, DepthToSpace

BN_MOMENTUM = 0.99  # Keras' momentum means what TF1's `momentum` meant: weight of the old moving average
BN_EPSILON = 1e-8
INIT_STDDEV = 0.05
SHUFFLE_SUFFIX = "_shuffle"  # a sub-pixel step's depth-to-space layer: the step's name + this suffix
GROUP_SUM_SUFFIX = "_sum"  # a bilinear additive step's channel-group sum: the step's name + this suffix


@dataclass(frozen=True)
class BuildOptions:
    """The knobs shared by every step of one build.

    `l2` is the author's lambda, the scale of TF1's `l2_regularizer`: a penalty of l2 * sum(k^2) / 2
    per regularised kernel, which is Keras' `L2(l2 / 2)`.
    """

    image_size: int = 640
    width: float = 1.0
    transpose_kernel: int = AUTHOR_TRANSPOSE_KERNEL
    dropout: bool = True
    l2: float = L2_LAMBDA

    def filters(self, n: int, fixed: bool = False) -> int:
        """Scale a filter count by the width multiplier, keeping at least one filter."""
        return n if fixed else max(1, int(round(n * self.width)))

    def resolve(self, value: Size) -> int:
        if value == FC_SCALE:
            return self.image_size // 128
        if value == TRANSPOSE_KERNEL:
            return self.transpose_kernel
        if isinstance(value, int):
            return value
        raise ValueError(f"unknown size placeholder {value!r}")

    def conv_kwargs(self, regularized: bool = True, icnr_factor: int = 0) -> dict:
        """Initialisation and regularisation of a convolution kernel, encoder and decoder alike
        (`icnr_factor`: a sub-pixel convolution's kernel, ICNR-initialised for that factor)."""
        initializer = (ICNR(icnr_factor, INIT_STDDEV) if icnr_factor
                       else keras.initializers.TruncatedNormal(stddev=INIT_STDDEV))
        return {
            "kernel_initializer": initializer,
            "kernel_regularizer": keras.regularizers.L2(self.l2 / 2) if regularized and self.l2 > 0 else None,
            "use_bias": True,
        }


def layer_name(name: str) -> str:
    """The Keras layer name of one of the author's names: itself, except under the PyTorch backend.

    PyTorch refuses parameter names with dots, and Keras names parameters after their layer, so
    there `conv1.1` becomes `conv1_1` (no author's name collides with that). Look layers up
    through this function to stay backend-independent: `model.get_layer(layer_name("conv5.1"))`.
    """
    return name.replace(".", "_") if keras.backend.backend() == "torch" else name


def batch_norm(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=layer_name(name))


def activation(act: str, name: str) -> keras.layers.Activation:
    return keras.layers.Activation(act, name=layer_name(f"{name}_{act}"))


def bottleneck(spec: Bottleneck, taps: dict, opts: BuildOptions):
    """1x1 convolution of an earlier tensor, so that only selected features reach the decoder."""
    conv = keras.layers.Conv2D(opts.filters(spec.filters), 1, name=layer_name(spec.name),
                               **opts.conv_kwargs(spec.regularized))
    x = conv(taps[spec.source])
    if spec.bn:
        x = batch_norm(f"{spec.name}_bn")(x)
    if spec.act:
        x = activation(spec.act, spec.name)(x)
    return x


def skip_tensor(skip: str | Bottleneck, taps: dict, opts: BuildOptions):
    return bottleneck(skip, taps, opts) if isinstance(skip, Bottleneck) else taps[skip]


def apply_step(step: Step, x, taps: dict, opts: BuildOptions):
    """Add one step's layers after tensor `x`; record what later skips read in `taps`; return the output."""
    if isinstance(step, (Resize, SubPixel, BilinearAdditive)):
        x = upsample(step, x, opts)
        taps[step.name] = x
        return x
    if isinstance(step, Pool):
        x = keras.layers.MaxPooling2D(step.size, step.stride, padding="same", name=layer_name(step.name))(x)
        if opts.dropout and step.dropout:
            x = keras.layers.Dropout(step.dropout, name=layer_name(f"{step.name}_dropout"))(x)
        taps[step.name] = x
        return x

    extra = {"dtype": "float32"} if step.output else {}
    filters = opts.filters(step.filters, fixed=step.output)
    kernel, stride = opts.resolve(step.kernel), opts.resolve(step.stride)
    if isinstance(step, Conv):
        layer = keras.layers.Conv2D(
            filters, kernel, strides=stride, padding=step.padding, dilation_rate=step.dilation,
            name=layer_name(step.name), **opts.conv_kwargs(step.regularized), **extra,
        )
    else:
        layer = keras.layers.Conv2DTranspose(
            filters, kernel, strides=stride, padding="same", name=layer_name(step.name),
            **opts.conv_kwargs(step.regularized), **extra,
        )
    x = layer(x)
    use_dropout = opts.dropout and step.dropout > 0
    if use_dropout and not step.dropout_after_bn:
        x = keras.layers.Dropout(step.dropout, name=layer_name(f"{step.name}_dropout"))(x)
    if step.bn:
        x = batch_norm(f"{step.name}_bn")(x)
        if step.tap == "bn":
            taps[step.name] = x
    if use_dropout and step.dropout_after_bn:
        x = keras.layers.Dropout(step.dropout, name=layer_name(f"{step.name}_dropout"))(x)
    if step.skip is not None:
        x = keras.layers.Add(name=layer_name(f"{step.name}_add"))([x, skip_tensor(step.skip, taps, opts)])
    if step.act:
        x = activation(step.act, step.name)(x)
    taps.setdefault(step.name, x)
    return x


def upsample(step: Resize | SubPixel | BilinearAdditive, x, opts: BuildOptions):
    """The layers of an upsampling step that is neither a transposed convolution nor followed by BatchNorm."""
    if isinstance(step, Resize):
        return keras.layers.UpSampling2D(step.factor, interpolation=step.interpolation, name=layer_name(step.name))(x)
    if isinstance(step, BilinearAdditive):
        x = keras.layers.UpSampling2D(step.factor, interpolation="bilinear", name=layer_name(step.name))(x)
        return ChannelGroupSum(step.group, name=layer_name(step.name + GROUP_SUM_SUFFIX))(x)
    filters = opts.filters(step.filters) * step.factor**2
    conv = keras.layers.Conv2D(filters, step.kernel, padding="same", name=layer_name(step.name),
                               **opts.conv_kwargs(step.regularized, step.factor if step.icnr else 0))
    return DepthToSpace(step.factor, name=layer_name(step.name + SHUFFLE_SUFFIX))(conv(x))
