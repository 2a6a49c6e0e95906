"""Synthetic mammogram files and saved untrained models for tests of commands that read them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cbis_factory import write_dicom  # noqa: F401  (the tests' DICOM files, from one writer)


def fake_mammogram(height: int, width: int, seed: int = 0, bits: int = 16) -> np.ndarray:
    """A smooth breast-like blob on the left edge on a dark background, with mild texture."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    breast = ((yy - height / 2) / (0.45 * height)) ** 2 + (xx / (0.7 * width)) ** 2 < 1.0
    texture = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), max(2.0, height / 60))
    image = breast * (0.55 + 0.8 * (texture - texture.mean()))
    top = 65535 if bits == 16 else 255
    return np.clip(image * top, 0, top).astype(np.uint16 if bits == 16 else np.uint8)


def save_untrained_run(root: Path, variant: str, image_size: int, *, examples: bool = True) -> Path:
    """A run folder holding an untrained tiny model as best.keras and last.keras, with config.json
    and (optionally) evaluation examples, enough for commands that only read a checkpoint."""
    from mammoseg.models import build_model

    run = root / f"{variant}-seed1"
    run.mkdir(parents=True)
    model = build_model(variant, image_size=image_size, width=0.125)
    model.save(run / "best.keras")
    (run / "last.keras").write_bytes((run / "best.keras").read_bytes())
    (run / "config.json").write_text(json.dumps({"variant": variant, "image_size": image_size, "width": 0.125,
                                                 "seed": 1, "transpose_kernel": 4}))
    if examples:
        import cv2

        image = cv2.resize(fake_mammogram(2 * image_size, 2 * image_size, bits=8), (image_size, image_size))
        mask = np.zeros((image_size, image_size), np.uint8)
        mask[image_size // 3: image_size // 2, image_size // 4: image_size // 3] = 255
        (run / "eval" / "test").mkdir(parents=True)
        np.savez(run / "eval" / "test" / "examples.npz", example_id=np.array(["P_00001_LEFT_CC_1", "N_00002"]),
                 kind=np.array(["positive", "negative"]), image=np.stack([image, image]),
                 mask=np.stack([mask, np.zeros_like(mask)]), prob=np.zeros((2, image_size, image_size), np.float16))
    return run
