"""The PNG rendering every matplotlib figure of the package shares (inference's activation maps and
overlays, the report's figures): matplotlib's object API, no pyplot state, so figures draw with the Agg
canvas whatever the process's backend and never leak between calls."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100


def figure_png(fig: Figure, tight: bool = True) -> bytes:
    """PNG bytes; `tight=False` skips the extra layout pass for figures laid out by hand."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight" if tight else None)
    return buffer.getvalue()


def mark_aliasing(ax: Any, frequencies: Sequence[float]) -> None:
    """Vertical lines at the frequencies where an upsampling's checkerboard would show on a spectrum."""
    for f in frequencies:
        ax.axvline(f, color="grey", linestyle="--" if f >= 0.5 else ":", linewidth=1)
        ax.text(f, 1.0, f" {f:g}", transform=ax.get_xaxis_transform(), fontsize=7, va="top", color="grey")
