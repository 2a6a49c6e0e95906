"""Prediction on one mammogram of any size: P(abnormal) mapped back onto the original pixels.

The network sees the same preprocessing as training (`prepare_full_image`: breast crop, window,
resize with padding), and `Geometry.restore` undoes it, so every output lies on the original
mammogram. The soft map is the primary output — a radiologist reads probabilities — and the hard
mask (P > 0.5) is secondary.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mammoseg.core.conventions import AUTHOR_PIXEL_DIVISOR, abnormal_probability, logit_margin, predicted_positive
from mammoseg.core.atomic import write_bytes, write_json
from mammoseg.core.errors import InputError
from mammoseg.runs.rundir import RunDir, operating_point_of, read_json


MIN_SIDE = 64
"""Shorter side below this many pixels cannot be a mammogram (CBIS-DDSM's are thousands)."""
MAX_ASPECT = 4.0
"""Long side / short side above this is not a mammogram (CBIS-DDSM's stay under 3)."""
MIN_NEIGHBOUR_CORRELATION = 0.3
"""Adjacent pixels of a (downsampled) radiograph are strongly correlated; noise is not."""
MAX_COLOUR_SPREAD = 8.0
"""Mean |R-G|, |G-B| in 8-bit levels above which an RGB file is a colour picture, not a grey radiograph."""


@dataclass
class Prediction:
    pixels: np.ndarray  # original grayscale pixels
    network_input: np.ndarray  # uint8 S x S
    prob_network: np.ndarray  # float32 S x S
    prob: np.ndarray  # float32 H x W, on the original pixels
    margin_network: np.ndarray  # float32 S x S, the logit margin l1 - l0 the lesion candidates are peaks of


def run_image_size(run_dir: str | Path, model: Any) -> int:
    """The run's network input size, from config.json or else the model's input shape."""
    run = RunDir(run_dir)
    size = run.config(required=False).get("image_size")
    if size is None:
        return int(model.inputs[0].shape[1])
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InputError(run.config_file, f"image_size must be a positive integer, got {size!r}")
    return size


def _reject_colour(path: Path) -> None:
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 3 or raw.shape[2] < 3:
        return
    bgr = raw[..., :3].astype(np.float32)
    if raw.dtype == np.uint16:
        bgr /= 257.0
    spread = float(np.mean(np.abs(bgr[..., 0] - bgr[..., 1])) + np.mean(np.abs(bgr[..., 1] - bgr[..., 2]))) / 2
    if spread > MAX_COLOUR_SPREAD:
        raise InputError(path, f"a colour image (channels differ by {spread:.0f} levels on average), not a grayscale mammogram")


def check_mammogram(pixels: np.ndarray, path: str | Path) -> None:
    """Refuse arrays that cannot be a mammogram, with the reason, before a model is asked about them."""
    if pixels.ndim != 2:
        raise InputError(path, f"expected a 2-D grayscale image, got shape {pixels.shape}")
    h, w = pixels.shape
    if min(h, w) < MIN_SIDE:
        raise InputError(path, f"{h}x{w} pixels is too small for a mammogram (shorter side under {MIN_SIDE})")
    if max(h, w) / min(h, w) > MAX_ASPECT:
        raise InputError(path, f"{h}x{w} pixels: aspect ratio {max(h, w) / min(h, w):.1f} is not a mammogram's "
                               f"(at most {MAX_ASPECT:g})")
    step = max(1, math.ceil(max(h, w) / 512))
    low = np.asarray(pixels[::step, ::step], dtype=np.float64)
    if low.std() == 0:
        raise InputError(path, "the image is blank (every pixel has the same value)")
    if np.unique(low).size <= 2:
        raise InputError(path, "the image has only two grey levels: a mask, not a mammogram")
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in ((low[:, 1:], low[:, :-1]), (low[1:], low[:-1]))]
    corr = [c for c in corr if math.isfinite(c)]
    if corr and max(corr) < MIN_NEIGHBOUR_CORRELATION:
        raise InputError(path, f"looks like noise, not a radiograph (neighbouring pixels correlate at {max(corr):.2f})")


def read_mammogram(path: str | Path) -> np.ndarray:
    """Grayscale pixels of a DICOM, PNG or JPEG mammogram, checked for plausibility."""
    from mammoseg.dataset.dicom import RASTER_SUFFIXES, read_pixels

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if path.stat().st_size == 0:
        raise InputError(path, "the file is empty")
    if path.suffix.lower() in RASTER_SUFFIXES:
        _reject_colour(path)
    pixels = read_pixels(path)
    check_mammogram(pixels, path)
    return pixels


def margins(model: Any, images_uint8: np.ndarray) -> np.ndarray:
    """The logit margin l1 - l0 [B, S, S] float32 of the model's logits."""
    from mammoseg.dataset.pipeline import normalize

    x = normalize(images_uint8)[..., None]
    import keras

    return logit_margin(keras.ops.convert_to_numpy(model(x, training=False))).astype(np.float32)


def probabilities(model: Any, images_uint8: np.ndarray) -> np.ndarray:
    """P(abnormal) [B, S, S] float32: softmax channel 1 of the model's logits."""
    return abnormal_probability(margins(model, images_uint8)).astype(np.float32)


def predict_pixels(model: Any, pixels: np.ndarray, image_size: int) -> Prediction:
    """Preprocess, predict and map back one mammogram's pixels."""
    from mammoseg.dataset.preprocess import prepare_full_image

    small, geometry = prepare_full_image(pixels, image_size)
    margin_small = margins(model, small[None])[0]
    prob_small = abnormal_probability(margin_small).astype(np.float32)
    prob = np.clip(geometry.restore(prob_small), 0.0, 1.0).astype(np.float32)
    return Prediction(pixels=pixels, network_input=small, prob_network=prob_small, prob=prob,
                      margin_network=margin_small)


def operating_point(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's lesion operating point, chosen on its validation split by `evaluate` (the evaluation of its own
    test split, else of any own split); None before the run is evaluated."""
    run = RunDir(run_dir)
    for folder in [run.eval_dir("test"), *sorted((run.path / "eval").glob("*"))]:
        if "@" in folder.name:
            continue  # an external evaluation's threshold is the same, but its folder is not the run's own
        point = operating_point_of(read_json(folder / "metrics.json", required=False) or {})
        if isinstance(point.get("threshold"), (int, float)):
            return point
    return None


def candidates_at(prediction: Prediction, point: dict[str, Any] | None) -> dict[str, Any] | None:
    """The lesion candidates (peaks of the margin map, as `evaluate` finds them) at or above the operating
    point's threshold: how many, their scores, and their (row, column) on the network's S x S input."""
    if point is None:
        return None
    from mammoseg.metrics.detection import find_candidates

    positions, scores, _ = find_candidates(prediction.margin_network)
    keep = scores >= float(point["threshold"])
    return {"threshold": float(point["threshold"]), "target_sensitivity": point.get("target_sensitivity"),
            "candidates": int(keep.sum()), "scores": [round(float(v), 4) for v in scores[keep]],
            "network_positions": positions[keep].astype(int).tolist()}


def _display(pixels: np.ndarray, prob: np.ndarray, long_side: int = 1400) -> tuple[np.ndarray, np.ndarray]:
    """Area-downsampled copies for the overlay figure: full-size mammograms would only be resampled by
    the renderer anyway, at a far higher memory cost. Resized first, windowed after: no full-size
    float copy of a 12-megapixel scan (0.9 s of the figure's time before)."""
    from mammoseg.dataset.resize import area_resize

    h, w = pixels.shape
    scale = min(1.0, long_side / max(h, w))
    rows, cols = max(1, round(h * scale)), max(1, round(w * scale))
    lo, hi = (float(v) for v in np.percentile(pixels[:: max(1, h // 512), :: max(1, w // 512)], (0.5, 99.5)))
    image = (area_resize(pixels, rows, cols).astype(np.float32) - lo) / max(hi - lo, 1e-6)
    return np.clip(image, 0, 1), area_resize(prob, rows, cols)


def _png(array: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise InputError("png", "encoding failed")
    return encoded.tobytes()


def write_prediction(prediction: Prediction, out_dir: str | Path, stem: str, source: str | Path, run_dir: str | Path,
                     checkpoint: str, point: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write the overlay, 16-bit and .npy probability maps, hard mask and a summary, each atomically."""
    from mammoseg.inference.render import probability_overlay

    out_dir = Path(out_dir)
    prob = prediction.prob
    paths = {
        "overlay": out_dir / f"{stem}_overlay.png",
        "prob_png": out_dir / f"{stem}_prob16.png",
        "prob_npy": out_dir / f"{stem}_prob.npy",
        "mask": out_dir / f"{stem}_mask.png",
        "summary": out_dir / f"{stem}_summary.json",
    }
    image, heat = _display(prediction.pixels, prob)
    size = prediction.network_input.shape[0]
    above = int(np.count_nonzero(prediction.prob_network > 0.5))
    positive = predicted_positive(above, size, size)
    title = (f"{Path(source).name}: P(abnormal), max {prob.max():.2f}; "
             f"{'abnormal' if positive else 'no abnormality'} by the S²/{AUTHOR_PIXEL_DIVISOR} rule")
    write_bytes(paths["overlay"], probability_overlay(image, heat, title))
    write_bytes(paths["prob_png"], _png(np.round(prob * 65535.0).astype(np.uint16)))
    buffer = io.BytesIO()
    np.save(buffer, prob.astype(np.float32))
    write_bytes(paths["prob_npy"], buffer.getvalue())
    write_bytes(paths["mask"], _png(np.where(prob > 0.5, 255, 0).astype(np.uint8)))
    write_json(paths["summary"], {
        "source": str(source), "run": str(run_dir), "checkpoint": checkpoint,
        "original_shape": list(prob.shape), "image_size": size,
        "max_prob": float(prob.max()), "mean_prob": float(prob.mean(dtype=np.float64)),
        "fraction_above_05": float(np.count_nonzero(prob > 0.5) / prob.size),
        "network_pixels_above_05": above, "predicted_positive": bool(positive),
        "rule": f"predicted positive when more than S^2/{AUTHOR_PIXEL_DIVISOR} network-resolution pixels exceed 0.5",
        "operating_point": candidates_at(prediction, point),
    })
    return paths


def predict(run_dir: str | Path, image: str | Path, out_dir: str | Path, checkpoint: str = "best") -> dict[str, Path]:
    """`mammoseg predict`: the run's model applied to one mammogram file; returns the written paths."""
    return predict_many(run_dir, [image], out_dir, checkpoint)[0]


def predict_many(run_dir: str | Path, images: Sequence[str | Path], out_dir: str | Path,
                 checkpoint: str = "best") -> list[dict[str, Path]]:
    """The run's model, loaded once, applied to each mammogram file, each read once. The first is read before
    the slow model load, so a bad single image fails fast; a later bad file stops the run with what was written
    for the files before it kept. Returns each file's written paths."""
    paths = [Path(image) for image in images]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        repeated = next(s for s in stems if stems.count(s) > 1)
        raise InputError(next(p for p in paths if p.stem == repeated), "another image has the same name: their "
                                                                       "outputs would overwrite each other")
    first = read_mammogram(paths[0])
    model = RunDir(run_dir).load_model(checkpoint)
    size, point = run_image_size(run_dir, model), operating_point(run_dir)
    written = []
    for index, path in enumerate(paths):
        pixels = first if index == 0 else read_mammogram(path)
        written.append(write_prediction(predict_pixels(model, pixels, size), out_dir, path.stem, path, run_dir,
                                        checkpoint, point))
    return written
