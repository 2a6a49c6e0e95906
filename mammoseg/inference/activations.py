"""Looking inside a trained network: any named layer's activations and their checkerboard scores.

The article's Figure 10 (the second transposed layer of the FCN) is what made its author suspect
the upsampling; `visualize-layer` reproduces that view for any layer of any variant and puts
numbers on it: the map scores of the channel-mean activation and, for a transposed layer, the
kernel score of its weights.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from mammoseg.core.conventions import ALIASING_FREQUENCIES
from mammoseg.core.atomic import write_bytes, write_json
from mammoseg.core.errors import InputError


MAX_CHANNELS = 32
SEARCH_SPLITS = ("test", "val", "train")


def layer_table(model: Any) -> list[tuple[str, str, tuple]]:
    """(name, class, output shape without the batch axis) of every layer, in model order."""
    rows = []
    for layer in model.layers:
        try:
            shape = tuple(layer.output.shape[1:])
        except (AttributeError, ValueError):
            shape = ()
        rows.append((layer.name, type(layer).__name__, shape))
    return rows


def get_layer(model: Any, name: str, run_dir: str | Path) -> Any:
    names = [layer.name for layer in model.layers]
    if name not in names:
        raise InputError(run_dir, f"no layer named {name!r}; valid layers: {', '.join(names)}")
    return model.get_layer(name)


def _from_examples(run_dir: Path, example_id: str | None) -> tuple[np.ndarray, str] | None:
    """An input image saved by evaluation: the given id, or (no id) the first positive example."""
    from mammoseg.runs.rundir import RunDir

    for data in RunDir(run_dir).examples():
        ids = [str(i) for i in data["example_id"]]
        if example_id is None:
            masks = data["mask"].reshape(len(ids), -1)
            index = next((i for i in range(len(ids)) if masks[i].any()), 0 if ids else None)
        else:
            index = ids.index(example_id) if example_id in ids else None
        if index is not None:
            return np.squeeze(data["image"][index]).astype(np.uint8), ids[index]
    return None


def _from_dataset(run_dir: Path, config: dict[str, Any], example_id: str | None) -> tuple[np.ndarray, str] | None:
    """Scan the run's prepared dataset for an example id (or take the first validation example)."""
    dataset = config.get("data") or config.get("dataset")
    if not dataset or not Path(dataset).is_dir():
        return None
    from mammoseg.dataset.pipeline import denormalize, make_dataset, shard_files

    for split in (("val",) if example_id is None else SEARCH_SPLITS):
        try:
            if not shard_files(dataset, split):
                continue
        except InputError:
            continue
        for batch in make_dataset(dataset, split, batch_size=16, with_metadata=True).as_numpy_iterator():
            ids = [i.decode("utf-8") for i in batch["example_id"]]
            index = 0 if example_id is None else (ids.index(example_id) if example_id in ids else None)
            if index is not None:
                return denormalize(batch["image"][index, ..., 0]), ids[index]
    return None


def load_input(run_dir: str | Path, config: dict[str, Any], image: str | None, image_size: int) -> tuple[np.ndarray, str]:
    """The uint8 S x S network input for `--image`: a file (preprocessed like `predict`), an example id
    of the run's evaluation examples or dataset, or by default the first saved positive example."""
    run_dir = Path(run_dir)
    if image is not None and Path(image).is_file():
        from mammoseg.dataset.preprocess import prepare_full_image
        from mammoseg.inference.predict import read_mammogram

        small, _ = prepare_full_image(read_mammogram(image), image_size)
        return small, Path(image).stem
    found = _from_examples(run_dir, image) or _from_dataset(run_dir, config, image)
    if found is None:
        if image is None:
            raise InputError(run_dir, "no evaluation examples or dataset to take an image from; give --image ID|PATH")
        raise InputError(image, f"neither an image file nor an example id of {run_dir}'s evaluation or dataset")
    pixels, example_id = found
    if pixels.shape != (image_size, image_size):
        raise InputError(run_dir, f"example {example_id} is {pixels.shape[0]}x{pixels.shape[1]}, the model takes "
                                  f"{image_size}x{image_size}")
    return pixels, example_id


def layer_activation(model: Any, layer_name: str, image_uint8: np.ndarray) -> np.ndarray:
    """The layer's output [H, W, C] (float32) for one uint8 S x S input."""
    import keras

    from mammoseg.dataset.pipeline import normalize

    sub = keras.Model(model.input, model.get_layer(layer_name).output)
    out = sub(normalize(image_uint8)[None, ..., None], training=False)
    activation = np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)[0]
    return activation[..., None] if activation.ndim == 2 else activation


def layer_scores(model: Any, layer_name: str, activation: np.ndarray) -> dict[str, Any]:
    """Map scores of the channel-mean activation; the kernel score too when the layer is a transposed or a
    sub-pixel convolution (its kernel read as the stride-s transposed kernel it equals)."""
    from mammoseg.metrics.checkerboard import activation_scores, kernel_checkerboard_score, kernel_overlap
    from mammoseg.models.kernels import upsampling_kernel

    scores: dict[str, Any] = {"map": activation_scores(activation) if min(activation.shape[:2]) >= 2 else {}}
    found = upsampling_kernel(model, layer_name)
    if found is not None:
        kernel, strides = found
        scores["kernel"] = {"score": kernel_checkerboard_score(kernel, strides), "kernel_size": list(kernel.shape[:2]),
                            "strides": list(strides), **kernel_overlap(kernel.shape[:2], strides)}
    return scores


def _top_channels(activation: np.ndarray, limit: int) -> tuple[np.ndarray, list[int]]:
    """The `limit` channels with the largest spatial spread (dead channels show nothing)."""
    spread = activation.reshape(-1, activation.shape[-1]).std(axis=0)
    order = sorted(np.argsort(-spread, kind="stable")[:limit].tolist())
    return activation[..., order], order


def visualize_layer(run_dir: str | Path, layer_name: str, image: str | None = None, checkpoint: str = "best",
                    out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """`mammoseg visualize-layer`: PNG (channels, mean map, spectrum) and JSON of scores; returns both paths."""
    from mammoseg.metrics.checkerboard import activation_map, radial_power_spectrum
    from mammoseg.inference.render import activation_figure
    from mammoseg.inference.predict import run_image_size
    from mammoseg.runs.rundir import RunDir

    run_dir = Path(run_dir)
    config = RunDir(run_dir).config(required=False)
    model = RunDir(run_dir).load_model(checkpoint)
    layer = get_layer(model, layer_name, run_dir)
    pixels, label = load_input(run_dir, config, image, run_image_size(run_dir, model))
    activation = layer_activation(model, layer_name, pixels)
    scores = layer_scores(model, layer_name, activation)
    mean_map = activation_map(activation)
    freqs, power = radial_power_spectrum(mean_map)
    channels, order = _top_channels(activation, MAX_CHANNELS)
    text = ", ".join(f"{k} {v:.3g}" for k, v in scores["map"].items() if k in ("phase_mean", "aliasing_fraction"))
    if "kernel" in scores:
        text += f", kernel {scores['kernel']['score']:.3g}"
    title = f"{config.get('variant', run_dir.name)} / {layer_name} ({type(layer).__name__}) on {label}"
    png = activation_figure(channels, mean_map, freqs, power, ALIASING_FREQUENCIES, title, text)
    out_dir = Path(out_dir) if out_dir is not None else RunDir(run_dir).layers
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{layer_name}_{label}")
    png_path, json_path = out_dir / f"{stem}.png", out_dir / f"{stem}.json"
    write_bytes(png_path, png)
    write_json(json_path, {
        "run": str(run_dir), "variant": config.get("variant"), "checkpoint": checkpoint, "layer": layer_name,
        "layer_class": type(layer).__name__, "output_shape": list(activation.shape), "image": label,
        "channels_shown": order, "scores": scores,
        "conventions": {"map": "scores of the channel-mean activation, stride 2; phase_mean_channel_median is the "
                               "median per-channel phase-mean score",
                        "kernel": "sqrt(sum_o var_r G_r(o) / sum_o mean_r G_r(o)^2) of the per-phase, per-output-"
                                  "channel tap sums of the transposed kernel, in [0, 1] (0 = no checkerboard from a "
                                  "constant input); taps_per_phase/uneven: the structural overlap (k mod s != 0)"},
    })
    return png_path, json_path
