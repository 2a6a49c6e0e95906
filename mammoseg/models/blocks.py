"""The shared building blocks of every variant, as step records and the one function that applies them.

A network is a sequence of step records (`Conv`, `Transpose`, `Resize`, `Pool`); a skip connection
is a step's `skip` field, either the name of an earlier step or a `Bottleneck` record. Keeping the
variants as data makes the difference between two designs exactly the difference between two
tuples, and guarantees they share every other detail (initialisation, the L2 scale, BatchNorm
settings, layer naming).

Each step produces Keras layers named after the article's author: the operation keeps the step's
name (`conv1.1`, `up_conv2`, `logits`), the layers around it get derived names
(`conv1.1_bn`, `up_conv2_dropout`, `up_conv2_add`, `up_conv2_elu`); under the PyTorch backend
dots become underscores (`layer_name`). After a step, the following
operations run in this fixed order: dropout (unless `dropout_after_bn`), BatchNorm, dropout
(if `dropout_after_bn`), skip addition, activation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import keras

NUM_CLASSES = 2
BN_MOMENTUM = 0.99  # Keras' momentum means what TF1's `momentum` meant: weight of the old moving average
BN_EPSILON = 1e-8
INIT_STDDEV = 0.05
L2_LAMBDA = 1e-5  # the author's lamC: tf.contrib.layers.l2_regularizer(1e-5), i.e. 1e-5 * sum(k^2) / 2

# Sizes that depend on the build options, resolved by `BuildOptions.resolve`.
FC_SCALE = "image_size/128"  # fc_1's and up_conv1's kernel = stride: 5 at 640, so fc_1 always yields 2x2
TRANSPOSE_KERNEL = "transpose_kernel"  # upsample_1's kernel in `dilated_transpose` (4 as the author, or 3)

Size = Union[int, str]


@dataclass(frozen=True)
class Bottleneck:
    """A 1x1 convolution applied to an earlier step's output before it is added as a skip."""

    name: str
    source: str
    filters: int
    bn: bool = False
    act: str | None = None
    regularized: bool = True


@dataclass(frozen=True)
class Conv:
    """A convolution and what follows it.

    `tap` says which tensor later skips read under this step's name: "out" (after the activation)
    or "bn" (the BatchNorm output before the activation, as the author's `conv1`, `conv4`, `conv5`).
    `output=True` marks the logits layer: its filter count ignores the width multiplier and it
    computes in float32 under any mixed-precision policy. `regularized=False` leaves the kernel
    out of the L2 penalty, as the author did for some decoder layers (see the variants).
    """

    name: str
    filters: int
    kernel: Size = 3
    stride: Size = 1
    dilation: int = 1
    padding: str = "same"
    bn: bool = True
    act: str | None = "relu"
    dropout: float = 0.0
    dropout_after_bn: bool = False
    skip: str | Bottleneck | None = None
    tap: str = "out"
    output: bool = False
    regularized: bool = True


@dataclass(frozen=True)
class Transpose:
    """A transposed convolution (SAME padding: output = input x stride exactly) and what follows it."""

    name: str
    filters: int
    kernel: Size = 4
    stride: Size = 2
    bn: bool = False
    act: str | None = None
    dropout: float = 0.0
    dropout_after_bn: bool = False
    skip: str | Bottleneck | None = None
    tap: str = "out"
    output: bool = False
    regularized: bool = True


@dataclass(frozen=True)
class Resize:
    """Nearest-neighbour upsampling by an integer factor (no weights, no artifacts of its own)."""

    name: str
    factor: int


@dataclass(frozen=True)
class Pool:
    """Max pooling (SAME padding) followed by dropout; skips read the tensor after the dropout."""

    name: str
    size: int = 2
    stride: int = 2
    dropout: float = 0.1


Step = Union[Conv, Transpose, Resize, Pool]


@dataclass(frozen=True)
class BuildOptions:
    """The knobs shared by every step of one build.

    `l2` is the author's lambda, the scale of TF1's `l2_regularizer`: a penalty of l2 * sum(k^2) / 2
    per regularised kernel, which is Keras' `L2(l2 / 2)`.
    """

    image_size: int = 640
    width: float = 1.0
    transpose_kernel: int = 4
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

    def conv_kwargs(self, regularized: bool = True) -> dict:
        """Initialisation and regularisation of a convolution kernel, encoder and decoder alike."""
        return {
            "kernel_initializer": keras.initializers.TruncatedNormal(stddev=INIT_STDDEV),
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
    if isinstance(step, Resize):
        x = keras.layers.UpSampling2D(step.factor, interpolation="nearest", name=layer_name(step.name))(x)
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
