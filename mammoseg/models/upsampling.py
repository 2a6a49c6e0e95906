"""The Keras pieces of the upsampling designs beyond the article, in the `keras.ops` API (every backend).

Depth-to-space is written as a reshape and a transpose rather than a backend's own op, so a saved
model loads and gives the same numbers under TensorFlow, JAX and PyTorch. The layers and the ICNR
initialiser are registered with Keras, so `.keras` checkpoints that contain them load by name.
"""

from __future__ import annotations

from typing import Any

import keras

PACKAGE = "mammoseg"


def depth_to_space(x: Any, factor: int) -> Any:
    """[B, H, W, factor²·C] -> [B, H·factor, W·factor, C]; channel (i·factor + j)·C + c lands on pixel
    (h·factor + i, w·factor + j), TensorFlow's `depth_to_space` order (NHWC, DCR)."""
    _, h, w, depth = keras.ops.shape(x)
    c = depth // (factor * factor)
    x = keras.ops.reshape(x, (-1, h, w, factor, factor, c))
    x = keras.ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return keras.ops.reshape(x, (-1, h * factor, w * factor, c))


def space_to_depth(x: Any, factor: int) -> Any:
    """The inverse of `depth_to_space`: [B, H·factor, W·factor, C] -> [B, H, W, factor²·C]."""
    _, hf, wf, c = keras.ops.shape(x)
    h, w = hf // factor, wf // factor
    x = keras.ops.reshape(x, (-1, h, factor, w, factor, c))
    x = keras.ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return keras.ops.reshape(x, (-1, h, w, factor * factor * c))


@keras.saving.register_keras_serializable(package=PACKAGE)
class DepthToSpace(keras.layers.Layer):
    """Rearranges factor² channel blocks into factor x factor pixel blocks (the sub-pixel shuffle)."""

    def __init__(self, factor: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, inputs: Any) -> Any:
        return depth_to_space(inputs, self.factor)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        b, h, w, depth = input_shape
        scale = lambda n: None if n is None else n * self.factor  # noqa: E731
        return (b, scale(h), scale(w), depth // self.factor**2)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelGroupSum(keras.layers.Layer):
    """Sums every `group` consecutive channels into one: [B, H, W, group·C] -> [B, H, W, C] (Wojna et al.'s
    channel reduction after bilinear upsampling; a channel count not divisible by `group` is an error)."""

    def __init__(self, group: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group = int(group)

    def build(self, input_shape: tuple) -> None:
        if input_shape[-1] % self.group:
            raise ValueError(f"{self.name}: {input_shape[-1]} channels cannot be summed in groups of {self.group}")

    def call(self, inputs: Any) -> Any:
        _, h, w, depth = keras.ops.shape(inputs)
        grouped = keras.ops.reshape(inputs, (-1, h, w, depth // self.group, self.group))
        return keras.ops.sum(grouped, axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:3], input_shape[-1] // self.group)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "group": self.group}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ICNR(keras.initializers.Initializer):
    """ICNR (Aitken et al. 2017): a sub-pixel convolution's kernel [k, k, in, factor²·C] whose factor² blocks
    of C output channels are copies of one truncated-normal kernel [k, k, in, C]. Every output pixel of a
    factor x factor block then gets the same value at initialisation: sub-pixel convolution starts as
    nearest-neighbour upsampling of a convolution."""

    def __init__(self, factor: int, stddev: float) -> None:
        self.factor, self.stddev = int(factor), float(stddev)
        self.base = keras.initializers.TruncatedNormal(stddev=self.stddev)

    def __call__(self, shape: tuple, dtype: Any = None) -> Any:
        blocks = self.factor * self.factor
        if shape[-1] % blocks:
            raise ValueError(f"ICNR: {shape[-1]} output channels are not a multiple of {blocks}")
        base = self.base((*shape[:-1], shape[-1] // blocks), dtype=dtype)
        return keras.ops.tile(base, (1, 1, 1, blocks))

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "stddev": self.stddev}
