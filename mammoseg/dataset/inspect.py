"""`mammoseg inspect`: what a prepared dataset holds, as a count table and a picture of samples.

Looking at a few decoded examples with their masks is the cheapest check that preprocessing did
what it should (orientation, crop, windowing, masks on the lesions, negatives really normal).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mammoseg.core.conventions import KINDS, SPLITS


def count_table(dataset: str | Path) -> str:
    """Examples per split (rows) and kind (columns), with patients and source images, as text."""
    from mammoseg.dataset.pipeline import read_manifest

    manifest = read_manifest(dataset)
    lines = [f"{'split':6s}" + "".join(f"{k:>10s}" for k in (*KINDS, "total", "images", "patients"))]
    for split in (*SPLITS, "all"):
        rows = manifest if split == "all" else manifest[manifest["split"] == split]
        counts = [int((rows["kind"] == k).sum()) for k in KINDS]
        cells = (*counts, len(rows), rows["source_image"].nunique(), rows["patient_id"].nunique())
        lines.append(f"{split:6s}" + "".join(f"{c:>10d}" for c in cells))
    report = Path(dataset) / "prepare_report.csv"
    if report.is_file():
        skipped = pd.read_csv(report, dtype=str, keep_default_na=False)
        warned = int(skipped["reason"].str.startswith("warning:").sum())
        lines.append(f"skipped cases: {len(skipped) - warned}, warnings: {warned} (see {report})")
    return "\n".join(lines)


def draw_samples(dataset: str | Path, out: str | Path, *, per_cell: int = 3, seed: int = 0) -> Path:
    """A grid (rows: split x kind; columns: samples) of images with their masks outlined in red,
    written atomically to `out` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mammoseg.core.atomic import atomic_path
    from mammoseg.dataset.pipeline import read_manifest

    dataset, out = Path(dataset), Path(out)
    manifest = read_manifest(dataset)
    picks = []
    for split in SPLITS:
        for kind in KINDS:
            cell = manifest[(manifest["split"] == split) & (manifest["kind"] == kind)]
            if len(cell):
                picks.append(((split, kind), cell.sample(n=min(per_cell, len(cell)), random_state=seed)))
    examples = _load(dataset, pd.concat([p for _, p in picks]) if picks else manifest.iloc[:0])
    rows = max(1, len(picks))
    fig, axes = plt.subplots(rows, per_cell, figsize=(2.2 * per_cell, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, ((split, kind), cell) in enumerate(picks):
        for c, example_id in enumerate(cell["example_id"]):
            image, mask = examples[example_id]
            ax = axes[r, c]
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            if mask.any():
                ax.contour(mask > 0, levels=[0.5], colors="red", linewidths=0.8)
            ax.set_title(f"{split} {kind}\n{example_id[-28:]}", fontsize=6)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out


def _load(dataset: Path, wanted: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode the wanted examples (whole breasts and fixed tiles), reading only the shards that hold them."""
    import tensorflow as tf

    from mammoseg.dataset.pipeline import read_dataset_info
    from mammoseg.dataset.shards import parse_example
    from mammoseg.dataset.tiles import decode_record, record_examples

    size = read_dataset_info(dataset)["image_size"]
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ids = set(wanted["example_id"])
    for shard in sorted(set(wanted["shard"])):
        examples = tf.data.TFRecordDataset(str(dataset / shard)).map(
            lambda record: record_examples(decode_record(parse_example(record), size), size, tiles=True)).unbatch()
        for ex in examples.as_numpy_iterator():
            example_id = ex["example_id"].decode()
            if example_id in ids:
                found[example_id] = (ex["image"][..., 0], ex["mask"][..., 0])
    missing = ids - set(found)
    if missing:
        from mammoseg.core.errors import InputError

        raise InputError(dataset, f"{len(missing)} example(s) listed in manifest.csv are not in their shards (e.g. {sorted(missing)[0]})")
    return found
