"""The pictures inference draws: a layer's activations with their spectrum (`visualize-layer`) and the
probability overlay of a scan (`predict`), as PNG bytes (`mammoseg.core.png`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from mammoseg.core.png import figure_png, mark_aliasing


def activation_figure(
    channels: np.ndarray,
    mean_map: np.ndarray,
    freqs: np.ndarray,
    power: np.ndarray,
    frequencies: Sequence[float],
    title: str,
    scores_text: str,
) -> bytes:
    """A layer's activations: a channel grid, the mean map, and the mean map's spectrum."""
    n = channels.shape[-1]
    grid = math.ceil(math.sqrt(n))
    fig = Figure(figsize=(15, 7.5), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.0])
    left.suptitle(f"{title}: {n} channel{'s' if n != 1 else ''}", fontsize=10)
    axes = np.atleast_1d(left.subplots(grid, grid)).ravel()
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < n:
            ax.imshow(channels[..., i], cmap="viridis")
            ax.set_title(str(i), fontsize=6, pad=1)
        else:
            ax.set_visible(False)
    top, bottom = right.subplots(2, 1, height_ratios=[1.3, 1.0])
    image = top.imshow(mean_map, cmap="viridis")
    top.set_title(f"mean activation\n{scores_text}", fontsize=9)
    top.set_xticks([])
    top.set_yticks([])
    right.colorbar(image, ax=top, shrink=0.8)
    keep = (freqs > 0) & (power > 0)
    bottom.semilogy(freqs[keep], power[keep], color="black")
    mark_aliasing(bottom, frequencies)
    bottom.set(xlabel="spatial frequency (cycles / pixel)", ylabel="power", title="radially averaged spectrum")
    bottom.grid(alpha=0.3, which="both")
    return figure_png(fig)


def probability_overlay(image: np.ndarray, prob: np.ndarray, title: str) -> bytes:
    """The soft heatmap over the mammogram with a colour bar: what a radiologist would read."""
    height, width = image.shape[:2]
    scale = 9.0 / max(height, width)
    fig = Figure(figsize=(max(width * scale, 2.5) + 1.5, max(height * scale, 2.5)))
    ax = fig.subplots()
    ax.imshow(image, cmap="gray")
    alpha = np.clip(prob * 1.5, 0.0, 0.75)
    heat = ax.imshow(prob, cmap="inferno", vmin=0.0, vmax=1.0, alpha=alpha)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(heat, ax=ax, shrink=0.8, label="P(abnormal)")
    return figure_png(fig)
