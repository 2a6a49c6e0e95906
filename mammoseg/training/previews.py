"""What a run shows of itself while it trains: the fixed validation images whose maps are written every
epoch (RUN/previews/).

The maps are measured as logit margins l1 − l0 (`mammoseg.core.conventions`), not P(abnormal): at
initialisation a narrow network's logits can be ~1e-9, where float32 probabilities are all 0.5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mammoseg.core.atomic import write_bytes
from mammoseg.core.conventions import abnormal_probability, logit_margin
from mammoseg.core.errors import MammosegError
from mammoseg.runs.rundir import RunDir

PREVIEWS_PER_KIND = 2


def select_previews(dataset: str, size: int, dataset_size: int) -> dict[str, np.ndarray]:
    """The fixed validation images shown every epoch: the first positives and negatives in shard order."""
    from mammoseg.dataset.pipeline import make_dataset, resize_batches

    ds = make_dataset(dataset, "val", batch_size=8, with_metadata=True, deterministic=True)
    ds = resize_batches(ds, size, dataset_size, with_metadata=True)
    picked: dict[str, list] = {"positive": [], "negative": []}
    rows: list[tuple[str, np.ndarray, np.ndarray]] = []
    for batch in ds:
        for i in range(len(batch["example_id"])):
            mask = batch["mask"][i].numpy()
            group = "positive" if mask.any() else "negative"
            if len(picked[group]) < PREVIEWS_PER_KIND:
                picked[group].append(i)
                rows.append((batch["example_id"][i].numpy().decode(), batch["image"][i].numpy(), mask))
        if all(len(v) >= PREVIEWS_PER_KIND for v in picked.values()):
            break
    return {
        "example_id": np.array([r[0] for r in rows]),
        "image": np.stack([r[1] for r in rows]) if rows else np.zeros((0, size, size, 1), np.float32),
        "mask": np.stack([r[2] for r in rows]) if rows else np.zeros((0, size, size, 1), np.float32),
    }


def logit_margins(model: Any, images: np.ndarray) -> np.ndarray:
    """l1 − l0 [N, S, S] in float64: P(abnormal) = sigmoid(margin), without float32's rounding near 0.5."""
    if len(images) == 0:
        return np.zeros((0,) + images.shape[1:3], np.float64)
    return logit_margin(model.predict_on_batch(images))


def _png(path: Path, array: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise MammosegError(f"{path}: PNG encoding failed")
    write_bytes(path, data.tobytes())


def write_previews(run: RunDir, model: Any, previews: dict[str, np.ndarray], epoch: int) -> np.ndarray:
    """previews/epoch_NNN/<id>_soft.png (P(abnormal) x 255) and _hard.png (argmax); returns the logit margins."""
    margin = logit_margins(model, previews["image"])
    prob = abnormal_probability(margin)
    folder = run.previews(epoch)
    for example_id, p in zip(previews["example_id"], prob):
        _png(folder / f"{example_id}_soft.png", np.clip(np.rint(p * 255), 0, 255).astype(np.uint8))
        _png(folder / f"{example_id}_hard.png", np.where(p > 0.5, 255, 0).astype(np.uint8))
    return margin


def write_preview_inputs(run: RunDir, previews: dict[str, np.ndarray]) -> None:
    from mammoseg.dataset.pipeline import denormalize

    folder = run.previews(None)
    for example_id, image, mask in zip(previews["example_id"], previews["image"], previews["mask"]):
        _png(folder / f"{example_id}_image.png", denormalize(image[..., 0]))
        _png(folder / f"{example_id}_mask.png", np.where(mask[..., 0] > 0.5, 255, 0).astype(np.uint8))
