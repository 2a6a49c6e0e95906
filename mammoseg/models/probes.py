"""The checkerboard of a network on two fixed probe images: the one measure behind a run's
`checkerboard_init.json`, the trained scores `evaluate` sets beside it, and the `checkerboard --at-init`
study (docs/design.md §4).

The probe images depend on the image size alone: a constant bright field and a smooth image (a broad
Gaussian bump on a gentle slope), in the model's normalised intensity range. Any periodic pattern a
network draws on them is its own, not the content's, and every run of every design sees the same two.
Scored:

- every transposed and sub-pixel layer's kernel checkerboard score (weights only, in [0, 1]) and its
  structural overlap (taps per output phase, uneven when k mod s != 0);
- the output's log-odds map, logit[1] - logit[0] of P(abnormal), not P itself: at initialisation the
  logits are tiny, P sits within a hair of 0.5 and can round to a constant in float32, while the
  scale-free scores of the log-odds map show the pattern P would show. Scored at stride 2 (the pixel
  checkerboard of a last stride-2 layer) and at periods 4 to 64 (`period_scores`: a stride-2 step
  working at 2/P of the output resolution);
- the activation after the variant's probe step (the decoder step right after its first upsampling),
  as the median of its per-channel phase-mean scores at stride 2, and the output's score at the
  period that step leaves there (`upsampling`: 32 for the dilated variants, 64 for the FCNs).

The output and probe scores drop a border of S/8 (activations: a quarter of their side): a constant
image is only constant in the output where no zero padding reached. `upsampling` scores the whole
maps: the probe activation is S/16 or S/32 on a side, and a cropped one leaves too few cells to
tell a design's phase pattern from the image's content. The forward pass uses training=False, so
BatchNorm applies its moving statistics (at initialisation mean 0, variance 1: the identity up to
epsilon) and dropout is off.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from mammoseg.core.conventions import logit_margin
from mammoseg.metrics.checkerboard import activation_scores, crop_border, map_scores, period_scores
from mammoseg.models.blocks import layer_name
from mammoseg.models.kernels import model_kernel_overlap, model_kernel_scores

CONSTANT_LEVEL = 0.25  # (191 - 127) / 255: a bright flat field; 0 would leave every activation at 0
PERIODS = (2, 4, 8, 16, 32, 64)
INNER_PERIODS = (4, 8, 16, 32)
MAP_OF = "log-odds logit[1] - logit[0] of P(abnormal) on the probe images (constant, smooth), border S/8 dropped"


def probe_inputs(image_size: int) -> dict[str, np.ndarray]:
    """The two probe images, [S, S] float32 in the model's normalised range."""
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float64) / image_size
    smooth = 0.3 * np.exp(-((xx - 0.45) ** 2 + (yy - 0.55) ** 2) / 0.08) + 0.1 * xx - 0.1
    return {
        "constant": np.full((image_size, image_size), CONSTANT_LEVEL, dtype=np.float32),
        "smooth": smooth.astype(np.float32),
    }


def output_scores(log_odds: np.ndarray, border: int) -> dict[str, float]:
    """Stride-2 map scores, period scores, their inner maximum and the std of one output map.

    "period_P" is the checkerboard left by a stride-2 layer working at 2/P of the output resolution;
    "inner_max" is the largest of periods 4 to 32, the layers inside the decoder as opposed to a last
    stride-2 layer (period 2). A std of 0 flags a constant output (e.g. every unit of a very narrow
    ReLU layer dead at initialisation): its scores are 0 for lack of any pattern, not of artifacts.
    """
    scores = map_scores(log_odds, 2, border)
    scores["std"] = float(np.std(crop_border(log_odds, border)))
    periods = period_scores(log_odds, PERIODS, border)
    scores.update({f"period_{p}": score for p, score in periods.items()})
    inner = [periods[p] for p in INNER_PERIODS if p in periods]
    scores["inner_max"] = max(inner) if inner else math.nan
    return scores


def step_output_layer(model: keras.Model, step: str) -> str | None:
    """Name of the last layer a step produced (its activation, skip addition or the op itself)."""
    step = layer_name(step)
    names = [layer.name for layer in model.layers if layer.name == step or layer.name.startswith(f"{step}_")]
    return names[-1] if names else None


def checkerboard_scores(model: keras.Model, probe_step: str) -> dict[str, Any]:
    """Every checkerboard score of `model` on the probe images: kernels, output maps, the probe step's
    activation, and the first upsampling's summary (`upsampling`: decoder and output score, mean over the
    two images). `map` holds the output's scores averaged over the images."""
    size = int(model.input.shape[1])
    probe_name = step_output_layer(model, probe_step)
    outputs = [model.output] + ([model.get_layer(probe_name).output] if probe_name else [])
    probe_model = keras.Model(model.input, outputs)
    result: dict[str, Any] = {"kernel": model_kernel_scores(model), "overlap": model_kernel_overlap(model),
                              "output": {}, "probe": {}, "probe_layer": probe_name}
    inside, outside, period = [], [], 0
    for name, image in probe_inputs(size).items():
        values = probe_model(image[None, :, :, None], training=False)
        values = [keras.ops.convert_to_numpy(v)[0] for v in (values if isinstance(values, (list, tuple)) else [values])]
        log_odds = _unit(logit_margin(values[0]))
        result["output"][name] = output_scores(log_odds, size // 8)
        if probe_name:
            activation = values[1]
            period = 2 * size // int(activation.shape[0])
            result["probe"][name] = activation_scores(activation, 2, activation.shape[0] // 4)
            inside.append(activation_scores(activation, 2)["phase_mean_channel_median"])
            outside.append(period_scores(log_odds, (period,)).get(period, math.nan))
    maps = list(result["output"].values())
    result["map"] = {key: _mean([m[key] for m in maps]) for key in maps[0]}
    result["map_of"] = MAP_OF
    result["n_images"] = len(maps)
    result["upsampling"] = {"probe_layer": probe_name, "period": period, "decoder": _mean(inside),
                            "output": _mean(outside)} if probe_name else {}
    return result


def _unit(log_odds: np.ndarray) -> np.ndarray:
    """The map scaled to a largest magnitude of 1: the measures are scale-free, and this keeps a network's tiny
    margins at initialisation above their absolute flatness cut-offs."""
    return log_odds / max(float(np.abs(log_odds).max()), 1e-300)


def _mean(values: list[float]) -> float:
    """Mean of the finite values; NaN when there is none (a score the map was too small to take)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan
