"""The domain's rules, each written once (docs/design.md §1.3, §2, §4, §5).

Every layer above reads these names from here: what the splits and example kinds are called, which
dtype policies a run may use, the frequencies where stride-2
upsampling aliases, how P(abnormal) and the logit margin come from the network's two logits, and the
author's image-level rule. numpy only: the training loss applies the same rule to tensors through
`author_pixel_threshold`.
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")
"""Dataset splits, in the order they are listed and searched."""

KINDS = ("whole", "positive", "negative", "normal")
"""Example kinds: a whole mammogram, a tile on an abnormality, a tile away from every abnormality, a
whole mammogram without abnormality from another collection."""

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
"""Keras dtype policies a model may train or be timed under."""

ALIASING_FREQUENCIES = (0.5, 0.707, 0.25, 0.125)
"""Cycles per pixel where stride-2 upsampling aliases, marked on spectra: (π, 0) and (π, π), then 1/4
and 1/8 from stacked stride-2 steps."""

AUTHOR_PIXEL_DIVISOR = 750
"""The author's image-level rule: an image is predicted positive when more than H·W/750 of its pixels
(S²/750, 546 at 640x640) have P(abnormal) > 0.5."""


def author_pixel_threshold(height: int, width: int) -> float:
    """Pixels above 0.5 an image needs *more than* to count as predicted positive (S²/750)."""
    return height * width / AUTHOR_PIXEL_DIVISOR


def predicted_positive(pixels_above: int | np.ndarray, height: int, width: int) -> bool | np.ndarray:
    """The author's image-level call from the count of pixels with P(abnormal) > 0.5 (element-wise on arrays)."""
    return pixels_above > author_pixel_threshold(height, width)


def logit_margin(logits: np.ndarray) -> np.ndarray:
    """l1 − l0 of [..., 2] logits in float64: the log-odds of P(abnormal). It ranks pixels as P does, and
    keeps resolving where float32 probabilities round to 0, 1 or exactly 0.5 (tiny logits at initialisation)."""
    logits = np.asarray(logits, dtype=np.float64)
    return logits[..., 1] - logits[..., 0]


def abnormal_probability(margin: np.ndarray) -> np.ndarray:
    """P(abnormal) = softmax(logits)[..., 1] = sigmoid(l1 − l0), in float64."""
    with np.errstate(over="ignore"):  # exp(-margin) overflows to inf for margin < -709: P is then exactly 0
        return 1.0 / (1.0 + np.exp(-np.asarray(margin, dtype=np.float64)))
