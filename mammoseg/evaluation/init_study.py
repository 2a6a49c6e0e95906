"""Checkerboard artifacts before any training (Odena et al.'s claim), for every variant.

Each variant is built at random initialisation and fed a constant image and a smooth image
(a broad Gaussian bump on a gentle slope, in the model's normalised intensity range). Scored:

- every transposed layer's kernel checkerboard score (weights only, in [0, 1]) and its structural
  overlap (taps per output phase, uneven when k mod s != 0);
- the output's log-odds map, logit[1] - logit[0] = log(P / (1 - P)) of P(abnormal). Not the
  probability itself: at initialisation the logits are tiny (std 1e-3 to 1e-2 at width 1, far
  less at small widths), so P sits within a hair of 0.5, where P = 0.5 + log-odds / 4 to first
  order, and can round to a constant in float32. The scores are scale-free, so the log-odds map
  shows the pattern P would show. Scored at stride 2 (the pixel checkerboard of a last stride-2 layer) and at
  periods 4 to 64 (`period_scores`: a stride-2 step working at 2/P of the output resolution,
  e.g. period 32 for the first upsampling of the dilated variants and `up_conv3` of the FCNs);
- the activation after `up_conv2` (every variant has one: the first stride-2 upsampling of the
  FCNs, the conv after the first upsampling of the dilated ones) at stride 2, as the median of
  its per-channel phase-mean scores.

Maps lose a border of S/8 (activations: a quarter of their side) before scoring: a constant image
is only constant in the output where no zero padding reached. The period scores round that border
up to their block size, so their blocks stay aligned with the pattern's cells. The forward pass uses
training=False, so BatchNorm applies its initial moving statistics (mean 0, variance 1), i.e. the
identity up to epsilon, and dropout is off: what is measured is the initial weights alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mammoseg.core.conventions import logit_margin
from mammoseg.metrics.checkerboard import activation_scores, crop_border, map_scores, period_scores
from mammoseg.models.kernels import model_kernel_overlap, model_kernel_scores

PROBE_STEP = "up_conv2"
CONSTANT_LEVEL = 0.25  # (191 - 127) / 255: a bright flat field; 0 would leave every activation at 0
PERIODS = (2, 4, 8, 16, 32, 64)
INNER_PERIODS = (4, 8, 16, 32)


def study_inputs(image_size: int) -> dict[str, np.ndarray]:
    """The two probe images, [S, S] float32 in the model's normalised range."""
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float64) / image_size
    smooth = 0.3 * np.exp(-((xx - 0.45) ** 2 + (yy - 0.55) ** 2) / 0.08) + 0.1 * xx - 0.1
    return {
        "constant": np.full((image_size, image_size), CONSTANT_LEVEL, dtype=np.float32),
        "smooth": smooth.astype(np.float32),
    }


def output_scores(log_odds: np.ndarray, border: int) -> dict[str, float]:
    """Stride-2 map scores, period scores, their inner maximum and the std of one output map.

    "period_P" is the checkerboard left by a stride-2 layer working at 2/P of the output
    resolution; "inner_max" is the largest of periods 4 to 32, the transposed layers inside the
    decoder as opposed to a last stride-2 layer (period 2). A std of 0 flags a constant output
    (e.g. every unit of a very narrow ReLU layer dead at initialisation): its scores are 0 for
    lack of any pattern, not for lack of artifacts.
    """
    cropped = crop_border(log_odds, border)
    scores = map_scores(log_odds, 2, border)
    scores["std"] = float(np.std(cropped))
    periods = period_scores(log_odds, PERIODS, border)
    scores.update({f"period_{p}": score for p, score in periods.items()})
    inner = [periods[p] for p in INNER_PERIODS if p in periods]
    scores["inner_max"] = max(inner) if inner else float("nan")
    return scores


def _step_output_layer(model: Any, step: str) -> str | None:
    """Name of the last layer a decoder step produced (its activation, skip addition or the op itself)."""
    from mammoseg.models import layer_name

    step = layer_name(step)
    names = [layer.name for layer in model.layers if layer.name == step or layer.name.startswith(f"{step}_")]
    return names[-1] if names else None


def upsampling_checkerboard(model: Any, images: np.ndarray) -> dict[str, Any]:
    """Checkerboard of the decoder's first stride-2 step on real inputs, inside the decoder and at the output.

    Inside: the median per-channel phase-mean score (stride 2) of the activation after `up_conv2`,
    which follows the first upsampling of the dilated variants (`upsample_1` or `resize_1`) and is the
    first stride-2 transpose of the FCNs. At the output: the logit margin's score at the period that
    step leaves there (2 x S / the activation's side: 32 for the dilated variants, 64 for the FCNs).
    Means over `images` ([N, S, S, 1], model scale); no border is dropped, the inputs being real images.
    """
    import keras

    probe_name = _step_output_layer(model, PROBE_STEP)
    if probe_name is None:
        return {}
    probe = keras.Model(model.input, [model.output, model.get_layer(probe_name).output])
    logits, activations = (np.asarray(v) for v in probe(images, training=False))
    period = 2 * int(images.shape[1]) // int(activations.shape[1])
    inside = [activation_scores(a, 2)["phase_mean_channel_median"] for a in activations]
    outside = [period_scores(logit_margin(m), (period,)).get(period, math.nan) for m in logits]
    return {"probe_layer": probe_name, "period": period, "n_images": len(images), "decoder": float(np.mean(inside)),
            "output": float(np.nanmean(outside)) if np.isfinite(outside).any() else math.nan}


def measure_variant(variant: str, seed: int, *, image_size: int, width: float, transpose_kernel: int) -> dict[str, Any]:
    """All at-init scores of one variant for one seed."""
    import keras

    from mammoseg.models import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(variant, image_size=image_size, width=width, transpose_kernel=transpose_kernel)
    probe_name = _step_output_layer(model, PROBE_STEP)
    outputs = [model.output] + ([model.get_layer(probe_name).output] if probe_name else [])
    probe_model = keras.Model(model.input, outputs)
    result: dict[str, Any] = {"kernel": model_kernel_scores(model), "output": {}, "probe": {}}
    for name, image in study_inputs(image_size).items():
        values = probe_model(image[None, :, :, None], training=False)
        values = [np.asarray(v)[0] for v in (values if isinstance(values, (list, tuple)) else [values])]
        result["output"][name] = output_scores(logit_margin(values[0]), image_size // 8)
        if probe_name:
            act = values[1]
            result["probe"][name] = activation_scores(act, 2, act.shape[0] // 4)
    result["probe_layer"] = probe_name
    result["overlap"] = model_kernel_overlap(model)
    keras.backend.clear_session()
    return result


def summarise(values: list[float]) -> dict[str, Any]:
    """mean, sd (ddof 1), median over seeds, and the values (non-finite ones kept, left out of the statistics)."""
    finite = [v for v in values if math.isfinite(v)]
    return {
        "mean": float(np.mean(finite)) if finite else float("nan"),
        "sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0,
        "median": float(np.median(finite)) if finite else float("nan"),
        "values": [float(v) for v in values],
    }


def _collect(per_seed: list[dict[str, Any]], path: tuple[str, ...]) -> list[float]:
    out = []
    for record in per_seed:
        node: Any = record
        for key in path:
            node = node[key]
        out.append(float(node))
    return out


def run_init_study(
    variants: list[str] | None = None,
    *,
    image_size: int = 640,
    width: float = 1.0,
    seeds: int = 3,
    transpose_kernel: int = 4,
) -> dict[str, Any]:
    """Measure every variant at initialisation over `seeds` seeds (0..seeds-1); mean ± sd per score."""
    from mammoseg.models import check_image_size, variant_names
    from mammoseg.core.progress import track

    variants = variants or variant_names()
    for variant in variants:
        check_image_size(variant, image_size)
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    jobs = [(v, s) for v in variants for s in range(seeds)]
    raw: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for variant, seed in track(jobs, "at-init study", unit="model"):
        raw[variant].append(
            measure_variant(variant, seed, image_size=image_size, width=width, transpose_kernel=transpose_kernel)
        )
    summary: dict[str, Any] = {}
    for variant, per_seed in raw.items():
        first = per_seed[0]
        summary[variant] = {
            "kernel": {layer: summarise(_collect(per_seed, ("kernel", layer))) for layer in first["kernel"]},
            "overlap": first["overlap"],
            "output": {
                inp: {score: summarise(_collect(per_seed, ("output", inp, score))) for score in scores}
                for inp, scores in first["output"].items()
            },
            "probe_layer": first["probe_layer"],
            "probe": {
                inp: {score: summarise(_collect(per_seed, ("probe", inp, score))) for score in scores}
                for inp, scores in first["probe"].items()
            },
        }
    return {
        "settings": {
            "image_size": image_size,
            "width": width,
            "seeds": list(range(seeds)),
            "transpose_kernel": transpose_kernel,
            "output_map": "log-odds logit[1] - logit[0] of P(abnormal)",
            "border": image_size // 8,
            "constant_level": CONSTANT_LEVEL,
            "forward": "training=False: BatchNorm at its initial statistics (identity), no dropout",
        },
        "variants": summary,
    }


def _taps(overlap: dict[str, Any]) -> str:
    """Taps per phase as one compact cell: "4,2,2,1*" (the star marks uneven overlap) or "4 each"."""
    taps = [t for row in overlap["taps_per_phase"] for t in row]
    text = f"{taps[0]} each" if len(set(taps)) == 1 else ",".join(str(t) for t in taps)
    return text + ("*" if overlap["uneven"] else "")


def format_table(result: dict[str, Any]) -> str:
    """Plain-text tables: per-variant output and probe scores, then per-layer kernel scores."""

    def ms(node: dict[str, Any]) -> str:
        return f"{node['mean']:.3f}±{node['sd']:.3f}"

    head = (
        f"{'variant':<18} {'const s=2':>13} {'const inner':>13} {'smooth s=2':>13} {'smooth inner':>13} "
        f"{'up_conv2 const':>15} {'up_conv2 smooth':>15}"
    )
    lines = [
        "Output log-odds map, phase-mean score (mean±sd over seeds): s=2 pixel checkerboard; inner = max over",
        "periods 4-32 (stride-2 layers inside the decoder). up_conv2: median per-channel score at stride 2.",
        head,
    ]
    for variant, s in result["variants"].items():
        out, probe = s["output"], s["probe"]
        cells = [
            ms(out["constant"]["phase_mean"]), ms(out["constant"]["inner_max"]),
            ms(out["smooth"]["phase_mean"]), ms(out["smooth"]["inner_max"]),
        ]
        pcells = [ms(probe[i]["phase_mean_channel_median"]) if i in probe else "-" for i in ("constant", "smooth")]
        lines.append(f"{variant:<18} " + " ".join(f"{c:>13}" for c in cells) + " " + " ".join(f"{c:>15}" for c in pcells))
    constant = [
        f"{variant} ({inp})"
        for variant, s in result["variants"].items()
        for inp, scores in s["output"].items()
        if min(scores["std"]["values"]) == 0.0
    ]
    if constant:
        lines.append("constant output map for some seed (scores 0 by default, try a larger --width): " + ", ".join(constant))
    lines += ["", "Kernel checkerboard score per transposed layer, in [0, 1] (mean±sd, median over seeds); "
                  "taps per phase, * = uneven overlap"]
    for variant, s in result["variants"].items():
        cells = [f"{layer} {ms(node)} (med {node['median']:.3f}; taps {_taps(s['overlap'][layer])})"
                 for layer, node in s["kernel"].items()]
        lines.append(f"{variant:<18} " + ("; ".join(cells) if cells else "-"))
    return "\n".join(lines)
