"""The `dilated_resize` network in plain PyTorch, timed for one training step: the yardstick that the
Keras model of `mammoseg bench` is compared with on the same GPU.

Same layers, filter counts, kernels, strides, dilations, dropouts and parameter count as
`mammoseg.models.build_model("dilated_resize")` (docs/design.md §1), trained with the same loss
(two-class softmax cross-entropy, abnormal pixels weighted 18, summed over the pixels and divided by
their number as mammoseg's default loss, plus L2 1e-5 on the conv kernels; torch_blocks.py) and Adam. bf16 autocast, channels_last memory format, optional torch.compile; inputs
are random tensors already on the device, so only the network's speed is measured.

Standalone on purpose: PyTorch is not a dependency of mammoseg, and nothing in the package or the
tests imports this file. Usage:

    python benchmarks/performance/torch_dilated_resize.py --batch-size 64 --compile
    python benchmarks/performance/torch_dilated_resize.py --device cpu --image-size 64 --width 0.125 --steps 2
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch_blocks import ConvBN, conv_flops, init_like_keras, kernels, keras_style_param_count, training_loss

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the record every benchmark writes
from record import write_record  # noqa: E402

class DilatedResize(nn.Module):
    """Encoder conv1 ... conv5.1, dilated conv5.2/5.3, nearest-resize + conv decoder, two transposes, 1x1 logits."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()

        def w(n: int) -> int:
            return max(1, int(round(n * width)))

        self.encoder = nn.Sequential(
            ConvBN(1, w(32), stride=2),  # conv1
            ConvBN(w(32), w(32)),  # conv1.1
            ConvBN(w(32), w(32)),  # conv1.2
            nn.MaxPool2d(3, stride=2, padding=1), nn.Dropout(0.1),  # pool1
            ConvBN(w(32), w(64)), ConvBN(w(64), w(64)),  # conv2.1, conv2.2
            nn.MaxPool2d(2), nn.Dropout(0.1),  # pool2
            ConvBN(w(64), w(128)), ConvBN(w(128), w(128)),  # conv3.1, conv3.2
            nn.MaxPool2d(2), nn.Dropout(0.1),  # pool3
            ConvBN(w(128), w(256)), ConvBN(w(256), w(256)),  # conv4, conv4.1
            nn.MaxPool2d(2), nn.Dropout(0.1),  # pool4
            ConvBN(w(256), w(512)), ConvBN(w(512), w(512)),  # conv5, conv5.1
            ConvBN(w(512), w(512), dilation=2), ConvBN(w(512), w(512), dilation=2),  # conv5.2, conv5.3
        )  # fmt: skip
        self.up_conv2 = ConvBN(w(512), w(512))
        self.up_conv4 = ConvBN(w(512), w(128), dropout=0.01)
        self.up_conv5 = ConvBN(w(128), w(64))
        self.up_conv6 = ConvBN(w(64), w(32))
        self.up_conv7 = ConvBN(w(32), w(32))
        self.upsample_4 = nn.ConvTranspose2d(w(32), w(16), 4, stride=2, padding=1)
        self.upsample_5 = nn.ConvTranspose2d(w(16), w(8), 3, stride=1, padding=1)
        self.logits = nn.Conv2d(w(8), 2, 1)
        init_like_keras(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder(x)
        x = self.up_conv2(F.interpolate(x, scale_factor=2, mode="nearest"))  # resize_1
        x = F.interpolate(x, scale_factor=2, mode="nearest")  # resize_3
        x = self.up_conv5(self.up_conv4(x))
        x = F.interpolate(x, scale_factor=4, mode="nearest")  # resize_6
        x = self.up_conv7(self.up_conv6(x))
        x = F.relu(self.upsample_4(x))
        x = F.relu(self.upsample_5(x))
        return self.logits(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--width", type=float, default=1.0, help="filter-count multiplier (1.0: the article's model)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, autotuning)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16", help="bf16 autocast or plain float32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file (benchmarks/record.py)")
    args = parser.parse_args()
    if args.image_size % 32:
        parser.error("--image-size must be a multiple of 32 (the encoder downsamples by 32)")

    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = DilatedResize(args.width)
    params = keras_style_param_count(model)
    flops = conv_flops(model, args.image_size)
    model = model.to(device, memory_format=torch.channels_last)
    step_model = torch.compile(model) if args.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=7e-4, fused=device.type == "cuda")
    model_kernels = kernels(model)

    b, s = args.batch_size, args.image_size
    generator = torch.Generator(device=device).manual_seed(0)
    x = (torch.rand(b, 1, s, s, device=device, generator=generator) - 0.5).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(b, s, s, device=device, generator=generator) > 0.9).float()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits = step_model(x)
        loss = training_loss(logits, y, model_kernels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(max(1, args.warmup)):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    seconds = time.perf_counter() - start
    images_per_second = b * args.steps / seconds
    result = {
        "network": "dilated_resize (PyTorch)",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "batch_size": b,
        "image_size": s,
        "width": args.width,
        "precision": args.precision,
        "compile": args.compile,
        "channels_last": True,
        "params_keras_style": params,
        "params_trainable": sum(p.numel() for p in model.parameters()),
        "flops_forward_per_image": flops,
        "steps": args.steps,
        "images_per_second": images_per_second,
        "tflops_per_second": 3 * flops * images_per_second / 1e12,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "final_loss": loss.item(),
    }
    print(f"dilated_resize (PyTorch {torch.__version__}) on {result['device']}: {params:,} parameters "
          f"({result['params_trainable']:,} trainable + BatchNorm statistics), {flops / 1e9:.2f} GFLOP/image forward")
    print(f"batch {b} at {s}x{s}, {args.precision}, channels_last, compile={args.compile}: "
          f"{images_per_second:.1f} images/s training, {result['tflops_per_second']:.2f} TFLOP/s")
    write_record(args.json, result)


if __name__ == "__main__":
    main()
