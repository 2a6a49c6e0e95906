"""Which figures a report shows, from the arms' runs: the data behind each, its caption, and the PNG
that `figures` draws. A figure the runs hold no data for is left out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mammoseg.core.conventions import ALIASING_FREQUENCIES
from mammoseg.evaluation.detections import detections_from_arrays
from mammoseg.metrics.detection import CPM_RATES, froc
from mammoseg.reporting import figures
from mammoseg.reporting.aggregate import Arm
from mammoseg.reporting.document import Figure
from mammoseg.reporting.registry import BAR_KEYS, METRIC_BY_KEY


CURVES = "Training and validation loss per epoch, mean over seeds."
METRIC_BARS = ("Main metrics per arm with 95% intervals: Student t over the arm's seeds; for an arm with one seed, "
               "a bootstrap over that run's test images (descriptive only). An arm that did not learn is shown with "
               "the numbers of its runs. The arrow in each title says which direction is better.")
EXAMPLES = ("The same positive and negative test images through every arm (first seed of each): input, truth, "
            "soft P(abnormal), hard prediction (P > 0.5).")
SPECTRA = ("Radially averaged power spectrum of the output probability maps (mean over test images and seeds), over "
           "{groups}. Dashed and dotted lines: aliasing frequencies of stride-2 upsampling (0.5 cycles/pixel on the "
           "axes, 0.707 on the diagonal) and of stacked stride-2 transposes (0.25, 0.125).")
FROC = ("FROC: lesion sensitivity against mean false positives per image over every test image (abnormal images, "
        "negative tiles and normal mammograms), mean over each arm's seeds, the shaded band spanning its seeds; "
        "dotted: the rates the CPM averages (1/8 to 8). Hit rule in the Conventions.")
FROC_RATES_DRAWN = np.geomspace(CPM_RATES[0], CPM_RATES[-1], 61)
CHECKERBOARD = ("Phase-mean checkerboard score of the output logit margin (l1 − l0, a monotone map of P(abnormal) "
                "that does not saturate) before training (the constant and smooth probe images, checkerboard_init.json) and "
                "after training (test images, mean over images); lower is better, 0 = no phase pattern.")


def report_figures(arms: list[Arm]) -> list[Figure]:
    """Every figure the data allows, in the report's order."""
    out: list[Figure] = []
    curves = _learning_curves(arms)
    if curves:
        out.append(Figure("learning_curves", CURVES, figures.learning_curves(curves)))
    bars = [(METRIC_BY_KEY[k].label, METRIC_BY_KEY[k].better, {a.name: a.cells[k].interval for a in arms})
            for k in BAR_KEYS]
    out.append(Figure("metrics", METRIC_BARS, figures.metric_bars(bars)))
    examples = shared_examples(arms)
    if examples:
        out.append(Figure("examples", EXAMPLES, figures.example_grid(examples)))
    spectra = _spectra(arms)
    if spectra:
        groups = ("all images" if "all" in spectra else "") + (
            " and over the negative images alone" if "negatives" in spectra else "")
        out.append(Figure("spectra", SPECTRA.format(groups=groups),
                          figures.power_spectra(spectra, ALIASING_FREQUENCIES)))
    froc_figure = froc_curves(arms)
    if froc_figure is not None:
        out.append(froc_figure)
    init, trained = METRIC_BY_KEY["phase_mean_init"], METRIC_BY_KEY["phase_mean_margin_trained"]
    pairs = {a.name: (a.cells[init.key].interval, a.cells[trained.key].interval) for a in arms}
    if any(math.isfinite(i.estimate) or math.isfinite(t.estimate) for i, t in pairs.values()):
        out.append(Figure("checkerboard", CHECKERBOARD,
                          figures.checkerboard_bars([(init.label.replace(" at init", ""), pairs)])))
    return out


def froc_curves(arms: list[Arm]) -> Figure | None:
    """The FROC curve of each arm from its runs' detections.npz; None when no run holds one."""
    curves = {}
    for arm in arms:
        per_run = []
        for run in arm.counted:
            if run.detections is not None:
                curve = froc(detections_from_arrays(run.detections))
                per_run.append([curve.sensitivity_at(rate) for rate in FROC_RATES_DRAWN])
        values = np.array(per_run, dtype=float)
        if values.size and np.isfinite(values).any():
            curves[arm.name] = (FROC_RATES_DRAWN, np.nanmean(values, axis=0), np.nanmin(values, axis=0),
                                np.nanmax(values, axis=0))
    return Figure("froc", FROC, figures.froc_curves(curves, CPM_RATES)) if curves else None


def _learning_curves(arms: list[Arm]) -> dict[str, pd.DataFrame]:
    """Per arm, the loss columns every counted run logged, averaged over seeds per epoch."""
    curves = {}
    for arm in arms:
        histories = [r.history for r in arm.counted if r.history is not None and "epoch" in r.history]
        if histories:
            cols = [c for c in ("loss", "val_loss") if all(c in h for h in histories)]
            curves[arm.name] = pd.concat(histories).groupby("epoch")[cols].mean().reset_index()
    return curves


def _spectra(arms: list[Arm]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per image group and arm, the power spectrum averaged over seeds on the first seed's frequencies."""
    spectra: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for group in ("all", "negatives"):
        for arm in arms:
            found = [r.spectra[group] for r in arm.counted if group in r.spectra]
            if found:
                freqs = found[0][0]
                power = np.nanmean([np.interp(freqs, f, p) for f, p in found], axis=0)
                spectra.setdefault(group, {})[arm.name] = (freqs, power)
    return spectra


def shared_examples(arms: list[Arm], per_kind: int = 2) -> list[dict]:
    """Up to `per_kind` positive and negative examples whose ids every arm's first run saved."""
    sources = []
    for arm in arms:
        run = next((r for r in arm.counted if r.examples is not None and "example_id" in r.examples), None)
        if run is None:
            return []
        ids = [str(i) for i in run.examples["example_id"]]  # type: ignore[index]
        sources.append((arm.name, run.examples, {i: n for n, i in enumerate(ids)}))
    common = [i for i in sources[0][2] if all(i in s[2] for s in sources)]
    first = sources[0][1]
    chosen: list[str] = []
    for want_positive in (True, False):
        picked = [i for i in common if bool(np.asarray(first["mask"][sources[0][2][i]]).any()) == want_positive]
        chosen += picked[:per_kind]
    examples = []
    for example_id in chosen:
        index = sources[0][2][example_id]
        examples.append({
            "example_id": example_id,
            "image": np.squeeze(first["image"][index]),
            "mask": np.squeeze(first["mask"][index]),
            "probs": {name: np.squeeze(data["prob"][pos[example_id]]).astype(np.float32) for name, data, pos in sources},
        })
    return examples
