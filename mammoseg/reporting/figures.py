"""The report's figures, as PNG bytes the caller embeds or writes atomically (rendered as
`core.png.figure_png` renders every figure of the package)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mammoseg.core.png import figure_png, mark_aliasing
from mammoseg.metrics.stats import Interval


def _colours(names: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def learning_curves(curves: dict[str, pd.DataFrame]) -> bytes:
    """Training and validation loss per epoch, one line per arm."""
    colours = _colours(list(curves))
    fig = Figure(figsize=(11, 4))
    for ax, column, title in zip(fig.subplots(1, 2), ("loss", "val_loss"), ("Training loss", "Validation loss")):
        for name, frame in curves.items():
            if column in frame:
                ax.plot(frame["epoch"], frame[column], marker="o", ms=3, color=colours[name], label=name)
        ax.set(title=title, xlabel="epoch", ylabel="loss")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    return figure_png(fig)


def metric_bars(panels: list[tuple[str, str, dict[str, Interval]]]) -> bytes:
    """One bar panel per metric: point estimate per arm with its interval as an error bar."""
    cols = 3
    rows = math.ceil(len(panels) / cols)
    names = list(panels[0][2]) if panels else []
    colours = _colours(names)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (label, better, intervals) in zip(axes, panels):
        x = np.arange(len(names))
        est = np.array([intervals[n].estimate for n in names])
        low = np.array([intervals[n].low if intervals[n].defined else intervals[n].estimate for n in names])
        high = np.array([intervals[n].high if intervals[n].defined else intervals[n].estimate for n in names])
        heights = np.nan_to_num(est)
        ax.bar(x, heights, color=[colours[n] for n in names])
        err = np.vstack([np.nan_to_num(est - low), np.nan_to_num(high - est)]).clip(min=0)
        ax.errorbar(x, heights, yerr=err, fmt="none", ecolor="black", capsize=4)
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{label} ({'↑' if better == 'higher' else '↓'} better)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return figure_png(fig)


def example_grid(examples: list[dict]) -> bytes:
    """The article's figure grid: per example, input and truth, then soft and hard output per arm."""
    names = list(examples[0]["probs"])
    cols = 2 + len(names)
    fig = Figure(figsize=(2.1 * cols + 0.8, 4.4 * len(examples)))
    axes = np.asarray(fig.subplots(2 * len(examples), cols, squeeze=False,
                                   gridspec_kw={"left": 0.02, "right": 0.9, "top": 0.97, "bottom": 0.01,
                                                "wspace": 0.08, "hspace": 0.35}))
    soft_image = None
    for e, example in enumerate(examples):
        top, bottom = axes[2 * e], axes[2 * e + 1]
        kind = "positive" if np.asarray(example["mask"]).any() else "negative"
        top[0].imshow(example["image"], cmap="gray")
        top[0].set_title(f"{example['example_id']}\n({kind}) input", fontsize=8)
        top[1].imshow(np.asarray(example["mask"]) > 0, cmap="gray", vmin=0, vmax=1)
        top[1].set_title("truth", fontsize=8)
        bottom[0].imshow(example["image"], cmap="gray")
        if kind == "positive":
            bottom[0].contour(np.asarray(example["mask"]) > 0, levels=[0.5], colors="lime", linewidths=0.8)
        bottom[0].set_title("input + truth outline", fontsize=8)
        bottom[1].set_visible(False)
        for c, name in enumerate(names, start=2):
            prob = example["probs"][name]
            soft_image = top[c].imshow(prob, cmap="inferno", vmin=0.0, vmax=1.0)
            top[c].set_title(f"{name}\nsoft P(abnormal)", fontsize=8)
            bottom[c].imshow(prob > 0.5, cmap="gray", vmin=0, vmax=1)
            bottom[c].set_title(f"{name}\nhard (P > 0.5)", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if soft_image is not None:
        fig.colorbar(soft_image, cax=fig.add_axes((0.92, 0.3, 0.015, 0.4)), label="P(abnormal)")
    return figure_png(fig, tight=False)


def power_spectra(spectra: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], frequencies: Sequence[float]) -> bytes:
    """Radially averaged power spectra (log scale), one panel per image group, aliasing frequencies marked."""
    names = list(dict.fromkeys(name for group in spectra.values() for name in group))
    colours = _colours(names)
    titles = {"all": "all test images", "negatives": "negative images"}
    fig = Figure(figsize=(7 * len(spectra), 4.5))
    for ax, (group, curves) in zip(np.atleast_1d(fig.subplots(1, len(spectra))), spectra.items()):
        for name, (freqs, power) in curves.items():
            keep = (freqs > 0) & (power > 0)
            ax.semilogy(freqs[keep], power[keep], color=colours[name], label=name)
        mark_aliasing(ax, frequencies)
        ax.set(xlabel="spatial frequency (cycles / pixel)", ylabel="power",
               title=f"Output P(abnormal), {titles.get(group, group)}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return figure_png(fig)


def checkerboard_bars(pairs: list[tuple[str, dict[str, tuple[Interval, Interval]]]]) -> bytes:
    """Per arm, a score at initialisation beside the same score after training, one panel per score."""
    fig = Figure(figsize=(6 * len(pairs), 3.8), layout="constrained")
    for ax, (label, values) in zip(np.atleast_1d(fig.subplots(1, len(pairs))), pairs):
        names = list(values)
        x = np.arange(len(names))
        for offset, which, colour, title in ((-0.2, 0, "#d62728", "at init"), (0.2, 1, "#1f77b4", "trained")):
            ivs = [values[n][which] for n in names]
            est = np.nan_to_num([iv.estimate for iv in ivs])
            err = np.array([[iv.estimate - iv.low, iv.high - iv.estimate] if iv.defined else [0.0, 0.0] for iv in ivs]).T
            ax.bar(x + offset, est, width=0.4, color=colour, label=title)
            ax.errorbar(x + offset, est, yerr=np.nan_to_num(err).clip(min=0), fmt="none", ecolor="black", capsize=3)
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    return figure_png(fig)


def article_grid(panels: list[tuple[str, np.ndarray, int, int]], positive: dict, negative: dict) -> bytes:
    """The article's figures side by side: the input and truth of one image with and one without an
    abnormality in the top row, then each figure's map (title, map, row, column) below its image."""
    rows = 1 + max(row for _, _, row, _ in panels)
    fig = Figure(figsize=(6.4, 2.6 * rows))
    axes = np.asarray(fig.subplots(rows, 2, squeeze=False, gridspec_kw={"hspace": 0.3, "wspace": 0.05}))
    for ax, example, kind in ((axes[0, 0], positive, "with"), (axes[0, 1], negative, "without")):
        ax.imshow(example["image"], cmap="gray")
        if np.asarray(example["mask"]).any():
            ax.contour(np.asarray(example["mask"]) > 0, levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(f"input {kind} an abnormality\n{example['example_id']}", fontsize=8)
    for title, map2d, row, column in panels:
        axes[row, column].imshow(map2d, cmap="inferno", vmin=0.0, vmax=1.0)
        axes[row, column].set_title(title, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.set_visible(False)
    return figure_png(fig)


def froc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                marks: Sequence[float]) -> bytes:
    """Lesion sensitivity against mean false positives per image (log scale), one line per arm (mean over
    its seeds) with the band the seeds span; dotted lines at the rates `marks` (the CPM's)."""
    colours = _colours(list(curves))
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for name, (rates, mean, low, high) in curves.items():
        ax.step(rates, mean, where="post", color=colours[name], label=name)
        if np.any(high > low):
            ax.fill_between(rates, low, high, step="post", color=colours[name], alpha=0.2, linewidth=0)
    for rate in marks:
        ax.axvline(rate, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="mean false positives per image", ylabel="lesion sensitivity", ylim=(0, 1.02),
           title="FROC over every test image")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return figure_png(fig)
