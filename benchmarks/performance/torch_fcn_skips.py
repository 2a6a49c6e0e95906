"""The `fcn_skips` network in plain PyTorch: the CPU yardstick's second network (`cpu_training.py`).

Same layers, filter counts, kernels, strides, dropouts, skips and parameter count as
`mammoseg.models.build_model("fcn_skips")` (DESIGN.md §1.1): the shared encoder (`conv1` ... `conv5.1`),
the FCN head (`pool5`, `fc_1` with kernel = stride = S/128, `fc_2`), and seven transposed convs with
additive skips from pool5 ... pool1 and conv1's BatchNorm output, ELU after each addition. Pooling pads
symmetrically where TensorFlow's SAME pads at the end (same cost, windows shifted by one pixel).

Standalone like `torch_dilated_resize.py`; both take their blocks and loss from `torch_blocks.py`.
PyTorch is not a mammoseg dependency.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch_blocks import ConvBN, conv_bn, init_like_keras


class FcnSkips(nn.Module):
    """Encoder, pool5 + fc_1 + fc_2 down to 2x2, seven transposed convs with additive skips, ELU."""

    def __init__(self, width: float = 1.0, image_size: int = 640) -> None:
        super().__init__()
        if image_size % 128:
            raise ValueError("fcn_skips needs an image size that is a multiple of 128")

        def w(n: int) -> int:
            return max(1, int(round(n * width)))

        f = image_size // 128
        self.conv1 = conv_bn(1, w(32), 3, stride=2, padding=1)  # skip tap: BatchNorm output, before ReLU
        self.block1 = nn.Sequential(ConvBN(w(32), w(32)), ConvBN(w(32), w(32)))  # conv1.1, conv1.2
        self.pool1 = nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1), nn.Dropout(0.1))
        self.block2 = nn.Sequential(ConvBN(w(32), w(64)), ConvBN(w(64), w(64)))
        self.block3 = nn.Sequential(ConvBN(w(64), w(128)), ConvBN(w(128), w(128)))
        self.block4 = nn.Sequential(ConvBN(w(128), w(256)), ConvBN(w(256), w(256)))
        self.block5 = nn.Sequential(ConvBN(w(256), w(512)), ConvBN(w(512), w(512)))
        self.pool = nn.Sequential(nn.MaxPool2d(2), nn.Dropout(0.1))  # pool2 ... pool5 (no weights: shared)
        self.fc_1 = conv_bn(w(512), w(2048), f, stride=f, dropout=0.25)
        self.fc_2 = conv_bn(w(2048), w(2048), 1, dropout=0.25)
        self.up_conv1 = nn.ConvTranspose2d(w(2048), w(512), f, stride=f)
        self.up_conv2 = nn.ConvTranspose2d(w(512), w(256), 4, stride=2, padding=1)
        self.up_conv3 = nn.ConvTranspose2d(w(256), w(128), 4, stride=2, padding=1)
        self.up_conv4 = nn.ConvTranspose2d(w(128), w(64), 4, stride=2, padding=1)
        self.up_conv5 = nn.ConvTranspose2d(w(64), w(32), 4, stride=2, padding=1)
        self.up_conv6 = conv_bn(w(32), w(16), 3, padding=1)
        self.up_conv7 = nn.ConvTranspose2d(w(16), w(32), 4, stride=2, padding=1)
        self.up_conv8 = conv_bn(w(32), w(16), 3, padding=1)
        self.logits = nn.ConvTranspose2d(w(16), 2, 4, stride=2, padding=1)
        self.dropout = nn.Dropout(0.1)  # up_conv5's and up_conv7's, before their skip additions
        init_like_keras(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv1 = self.conv1(x)
        pool1 = self.pool1(self.block1(F.relu(conv1)))
        pool2 = self.pool(self.block2(pool1))
        pool3 = self.pool(self.block3(pool2))
        pool4 = self.pool(self.block4(pool3))
        pool5 = self.pool(self.block5(pool4))
        x = F.relu(self.fc_2(F.relu(self.fc_1(pool5))))
        x = F.elu(self.up_conv1(x) + pool5)
        x = F.elu(self.up_conv2(x) + pool4)
        x = F.elu(self.up_conv3(x) + pool3)
        x = F.elu(self.up_conv4(x) + pool2)
        x = F.elu(self.dropout(self.up_conv5(x)) + pool1)
        x = F.elu(self.up_conv6(x))
        x = F.elu(self.dropout(self.up_conv7(x)) + conv1)
        x = F.elu(self.up_conv8(x))
        return self.logits(x)
