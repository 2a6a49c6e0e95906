"""Checkerboard artifacts before any training (Odena et al.'s claim), for every variant over seeds.

Each variant is built at random initialisation and scored on the probe images by the one measure
(`mammoseg.models.probes.checkerboard_scores`, which says what is scored and how); this module repeats
it over seeds and variants and prints the table.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def measure_variant(variant: str, seed: int, *, image_size: int, width: float,
                    transpose_kernel: int | None = None) -> dict[str, Any]:
    """All at-init scores of one variant for one seed."""
    import keras

    from mammoseg.models import build_model, get_spec
    from mammoseg.models.probes import checkerboard_scores

    keras.utils.set_random_seed(seed)
    model = build_model(variant, image_size=image_size, width=width, transpose_kernel=transpose_kernel)
    result = checkerboard_scores(model, get_spec(variant).probe_step)
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
    transpose_kernel: int | None = None,
) -> dict[str, Any]:
    """Measure every variant at initialisation over `seeds` seeds (0..seeds-1); mean ± sd per score."""
    from mammoseg.core.progress import track
    from mammoseg.models import check_image_size, variant_names
    from mammoseg.models.probes import CONSTANT_LEVEL, MAP_OF

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
            "upsampling": {key: summarise(_collect(per_seed, ("upsampling", key)))
                           for key in ("decoder", "output") if key in first["upsampling"]},
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
            "output_map": MAP_OF,
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
        f"{'variant':<26} {'const s=2':>13} {'const inner':>13} {'smooth s=2':>13} {'smooth inner':>13} "
        f"{'probe const':>15} {'probe smooth':>15}"
    )
    lines = [
        "Output log-odds map, phase-mean score (mean±sd over seeds): s=2 pixel checkerboard; inner = max over",
        "periods 4-32 (stride-2 layers inside the decoder). probe: median per-channel score at stride 2 after the",
        "step that follows the first upsampling (up_conv2).",
        head,
    ]
    for variant, s in result["variants"].items():
        out, probe = s["output"], s["probe"]
        cells = [
            ms(out["constant"]["phase_mean"]), ms(out["constant"]["inner_max"]),
            ms(out["smooth"]["phase_mean"]), ms(out["smooth"]["inner_max"]),
        ]
        pcells = [ms(probe[i]["phase_mean_channel_median"]) if i in probe else "-" for i in ("constant", "smooth")]
        lines.append(f"{variant:<26} " + " ".join(f"{c:>13}" for c in cells) + " " + " ".join(f"{c:>15}" for c in pcells))
    constant = [
        f"{variant} ({inp})"
        for variant, s in result["variants"].items()
        for inp, scores in s["output"].items()
        if min(scores["std"]["values"]) == 0.0
    ]
    if constant:
        lines.append("constant output map for some seed (scores 0 by default, try a larger --width): " + ", ".join(constant))
    lines += ["", "Kernel checkerboard score per transposed or sub-pixel layer, in [0, 1] (mean±sd, median over seeds); "
                  "taps per phase, * = uneven overlap"]
    for variant, s in result["variants"].items():
        cells = [f"{layer} {ms(node)} (med {node['median']:.3f}; taps {_taps(s['overlap'][layer])})"
                 for layer, node in s["kernel"].items()]
        lines.append(f"{variant:<26} " + ("; ".join(cells) if cells else "-"))
    return "\n".join(lines)
