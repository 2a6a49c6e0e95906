"""What the PyTorch twins of mammoseg's networks share: the conv blocks, the initialisation, the loss
and L2 as Keras computes them, and the counts (parameters, FLOPs) in mammoseg's conventions.

Standalone on purpose: PyTorch is not a dependency of mammoseg, and nothing in the package or the
tests imports this file (torch_dilated_resize.py, torch_fcn_skips.py and cpu_training.py do).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

BN_EPSILON = 1e-8
BN_MOMENTUM = 0.01  # PyTorch's momentum weighs the new batch: Keras' 0.99
L2 = 1e-5
POSITIVE_WEIGHT = 18.0  # the positive weight `mammoseg bench` trains with (workflows/bench/models.py)


class ConvBN(nn.Sequential):
    """3x3 conv (bias) -> BatchNorm -> [dropout] -> ReLU, as every encoder and decoder conv of the models."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation),
            nn.BatchNorm2d(c_out, eps=BN_EPSILON, momentum=BN_MOMENTUM),
        ]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0,
            dropout: float = 0.0) -> nn.Sequential:
    """Conv (bias) -> BatchNorm -> [dropout after BN], no activation: for taps before it and for ELU layers."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding),
        nn.BatchNorm2d(c_out, eps=BN_EPSILON, momentum=BN_MOMENTUM),
    ]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def kernels(model: nn.Module) -> list[torch.Tensor]:
    """The conv and transposed-conv kernels: what carries Keras' L2 and its truncated-normal initialiser."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def init_like_keras(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.trunc_normal_(m.weight, std=0.05, a=-0.1, b=0.1)
            nn.init.zeros_(m.bias)


def weighted_cross_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-pixel 2-class CE, abnormal pixels weighted POSITIVE_WEIGHT, summed and divided by the number of
    pixels: mammoseg's default (`loss_normalization = "pixels"`, the author's), so both do the same work."""
    ce = F.cross_entropy(logits.float(), mask.long(), reduction="none")
    weight = 1.0 + (POSITIVE_WEIGHT - 1.0) * mask
    return (weight * ce).sum() / ce.numel()


def training_loss(logits: torch.Tensor, mask: torch.Tensor, model_kernels: list[torch.Tensor]) -> torch.Tensor:
    """The weighted cross-entropy plus L2 on the kernels, as Keras adds its layers' regularizers."""
    return weighted_cross_entropy(logits, mask) + L2 * sum((k.float() ** 2).sum() for k in model_kernels)


def keras_style_param_count(model: nn.Module) -> int:
    """Parameters plus BatchNorm running statistics: what Keras' count_params() counts."""
    stats = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return sum(p.numel() for p in model.parameters()) + stats


def conv_flops(model: nn.Module, image_size: int) -> int:
    """Forward FLOPs per image (2 x multiply-adds of convs and transposed convs), mammoseg's convention."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        if isinstance(module, nn.ConvTranspose2d):
            _, c_in, h, w = inputs[0].shape
            total += 2 * h * w * kh * kw * c_in * module.out_channels
        else:
            _, c_out, h, w = output.shape
            total += 2 * h * w * kh * kw * module.in_channels * c_out

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model.eval()
        model(torch.zeros(1, 1, image_size, image_size))
        model.train()
    for h in handles:
        h.remove()
    return total
