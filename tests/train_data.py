"""An easy prepared dataset for training tests: bright discs on a dark noisy background are abnormal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mammoseg.dataset import shards


def _example(rng: np.random.Generator, size: int, positive: bool) -> tuple[np.ndarray, np.ndarray]:
    image = rng.normal(60, 12, (size, size))
    mask = np.zeros((size, size), np.uint8)
    if positive:
        r = rng.uniform(size / 10, size / 6)
        cy, cx = rng.uniform(r + 2, size - r - 2, 2)
        yy, xx = np.mgrid[:size, :size]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        image[disc] += 140
        mask[disc] = 1
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_easy_dataset(root: Path, size: int = 64, counts: dict[str, int] | None = None, seed: int = 0,
                       normals: int = 0, prefix: str = "ex") -> Path:
    """A prepared-dataset folder (dataset.json, manifest.csv, shards/) with alternating positives and negatives;
    the first `normals` negatives of each split are normal images (kind normal) instead. Example ids are
    `prefix` and a number."""
    counts = counts or {"train": 16, "val": 8, "test": 8}
    rng = np.random.default_rng(seed)
    rows = []
    (root / "shards").mkdir(parents=True, exist_ok=True)
    index = 0
    for split, count in counts.items():
        name = f"shards/{split}-00000.tfrecord"
        with shards.ShardWriter(root / name) as writer:
            for k in range(count):
                positive = index % 2 == 0
                image, mask = _example(rng, size, positive)
                kind = "positive" if positive else "normal" if k // 2 < normals else "negative"
                meta = dict(example_id=f"{prefix}{index:04d}", kind=kind,
                            patient_id=f"P_{index:05d}", abnormality_type="mass" if positive else "none",
                            pathology="BENIGN" if positive else "NONE", positive_fraction=float(mask.mean()))
                writer.write(shards.serialize_example(image, mask, **meta))
                rows.append(dict(meta, source_image="x.dcm", split=split, shard=name, height=size, width=size))
                index += 1
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "dataset.json").write_text(json.dumps({"format_version": 1, "image_size": size, "counts": counts}))
    return root
