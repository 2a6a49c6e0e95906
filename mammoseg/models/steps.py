"""The step records a network is written in, and the constants they share; no backend is imported here.

A network is a sequence of step records (`Conv`, `Transpose`, `Resize`, `Pool`, and the upsampling
steps beyond the article, `SubPixel` and `BilinearAdditive`); a skip connection is a step's `skip`
field, either the name of an earlier step or a `Bottleneck` record. Keeping the variants as data
makes the difference between two designs exactly the difference between two tuples, and lets the
registry, the CLI and the report read a variant without starting Keras. `mammoseg.models.blocks`
turns each record into Keras layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

NUM_CLASSES = 2
L2_LAMBDA = 1e-5  # the author's lamC: tf.contrib.layers.l2_regularizer(1e-5), i.e. 1e-5 * sum(k^2) / 2
AUTHOR_TRANSPOSE_KERNEL = 4  # the author's transposed kernels: 4x4 stride 2, an even overlap

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
    kernel: Size = AUTHOR_TRANSPOSE_KERNEL
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
    """Upsampling by an integer factor without weights: nearest-neighbour (the author's) or bilinear."""

    name: str
    factor: int
    interpolation: str = "nearest"


@dataclass(frozen=True)
class SubPixel:
    """Sub-pixel convolution (Shi et al. 2016): a convolution to factor² x filters channels at the low
    resolution, then depth-to-space. `icnr=True` initialises the factor² sub-kernels of each output
    channel as copies of one (Aitken et al. 2017), which makes it nearest-neighbour upsampling of a
    convolution at initialisation: no checkerboard before training."""

    name: str
    filters: int
    factor: int = 2
    kernel: int = 3
    icnr: bool = False
    regularized: bool = True


@dataclass(frozen=True)
class BilinearAdditive:
    """Bilinear additive upsampling (Wojna et al. 2019): bilinear resize by `factor`, then every `group`
    consecutive channels summed into one. No weights; the channel count drops by `group`."""

    name: str
    factor: int = 2
    group: int = 4


@dataclass(frozen=True)
class Pool:
    """Max pooling (SAME padding) followed by dropout; skips read the tensor after the dropout."""

    name: str
    size: int = 2
    stride: int = 2
    dropout: float = 0.1


Step = Union[Conv, Transpose, Resize, SubPixel, BilinearAdditive, Pool]
