"""Pixels of a synthetic full-field digital mammogram (FFDM): the same anatomy and lesions as the
film (`render.draw_breast`), on what a digital system writes instead of a film base.

What a breast detector meets there and not on film, each drawn at random per image:
- the background: the detector's direct exposure, near black, or one constant padding value outside
  the breast that displays white (MONOCHROME1 files store either inverted: `plan.DIGITAL_MONOCHROME1`);
- burnt-in text: exposure and study lines in a corner away from the breast, and a view marker;
- the compression paddle's edge: a thin bright line across the image near its top or bottom;
- line artefacts: detector columns with an offset, bright or dark, over the whole height;
- 12, 14 or 16 bits stored (`plan.DIGITAL_BITS`), the breast well inside the range.
Processing for presentation lifts the thin periphery, so the skin edge shows more than on film,
by a random amount that sometimes leaves it as faint.
"""

from __future__ import annotations

import cv2
import numpy as np

from mammoseg.dataset.synthetic.plan import Case
from mammoseg.dataset.synthetic.render import Rendered, draw_breast, print_alpha

WHITE_BACKGROUND = 0.3
"""Share of digital images whose background is the constant padding that displays white."""

BREAST_TOP = 0.97
"""Breast values stay below this share of the range: the top is the padding's and the print's."""

PERIPHERY_LIFT = (0.0, 0.12)
"""Presentation processing's lift of the breast's thin periphery, in [0, 1] units of the range."""

LINE_OFFSET = (0.01, 0.05)
"""Offset of a line artefact's columns (either sign), in [0, 1] units of the range."""


def _no_borders(rng: np.random.Generator, h: int, w: int) -> list[tuple[int, int, int, int]]:
    """A digital image has no scanner bands along its edges."""
    return []


def render_digital_case(case: Case) -> Rendered:
    """Draw one digital mammogram with all its abnormalities, values in [0, 2^bits_stored - 1] as
    displayed (MONOCHROME2); deterministic per `case.render_seed`."""
    rng = np.random.default_rng(case.render_seed)
    drawn = draw_breast(rng, case, _no_borders)
    img, breast = drawn.img, drawn.breast
    img += rng.uniform(*PERIPHERY_LIFT) * cv2.GaussianBlur(breast.astype(np.float32), (0, 0), 0.8)
    paddle = _paddle_edge(rng, img, case.rows)
    img += rng.uniform(0.0, 0.02) + rng.normal(0, rng.uniform(0.0, 0.004), img.shape).astype(np.float32)
    lines = _line_artefacts(rng, img)
    np.clip(img, 0, BREAST_TOP, out=img)
    white = bool(rng.random() < WHITE_BACKGROUND)
    if white:
        img[~breast] = 1.0
    labels = _burnt_in_text(rng, img, breast, case, ink=0.0 if white else 1.0)
    top = (1 << case.bits_stored) - 1
    rendered = drawn.finish((img * top + 0.5).astype(np.uint16), labels)
    rendered.artefacts = {"background": "white" if white else "black", "paddle_rows": list(paddle),
                          "line_columns": lines}
    return rendered


def _paddle_edge(rng: np.random.Generator, img: np.ndarray, h: int) -> tuple[int, int]:
    """A compression paddle's edge: a bright line 0.2-0.5% of the rows thick (2 px at least) across
    the whole width, near the top or the bottom (over the breast too); its rows."""
    thick = max(2, round(rng.uniform(0.002, 0.005) * h))
    y0 = int(rng.uniform(0.02, 0.12) * h)
    if rng.random() < 0.5:
        y0 = h - y0 - thick
    img[y0:y0 + thick] += rng.uniform(0.08, 0.3)
    return y0, y0 + thick


def _line_artefacts(rng: np.random.Generator, img: np.ndarray) -> list[list[int]]:
    """Up to three detector columns 1-3 px wide with a constant offset over the whole height; their
    [first, last + 1] columns."""
    w = img.shape[1]
    lines = []
    for _ in range(int(rng.integers(0, 4))):
        width = int(rng.integers(1, 4))
        x0 = int(rng.integers(0, w - width))
        img[:, x0:x0 + width] += rng.choice([-1, 1]) * rng.uniform(*LINE_OFFSET)
        lines.append([x0, x0 + width])
    return lines


def _burnt_in_text(rng: np.random.Generator, img: np.ndarray, breast: np.ndarray, case: Case,
                   ink: float) -> list[tuple[int, int, int, int]]:
    """Exposure and study lines in a corner, and a view marker (`R MLO`) near the top edge, in
    `ink` straight on the background, wherever they keep clear of the breast; their boxes."""
    h, w = img.shape
    taken = cv2.dilate(breast.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    exposure = f"{int(rng.integers(25, 35))}kV {int(rng.integers(40, 200))}mAs"
    study = "".join(rng.choice(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"), int(rng.integers(6, 10))))
    texts = [([exposure, study, case.patient_id], rng.uniform(0.06, 0.1), rng.uniform(0.25, 0.4)),
             ([f"{case.side[0]} {case.view}"], rng.uniform(0.03, 0.05), rng.uniform(0.12, 0.2))]
    boxes = []
    for lines, height, width in texts:
        bh, bw = max(8, int(height * h)), max(16, int(width * w))
        for _ in range(8):  # a few places, corners first, then anywhere
            y0 = int(rng.choice([0.02 * h, h - bh - 0.02 * h]) if not boxes else rng.uniform(0.02, 0.2) * h)
            x0 = int(rng.choice([0.02 * w, w - bw - 0.02 * w]) if rng.random() < 0.7 else rng.uniform(0, w - bw))
            if y0 >= 0 and x0 >= 0 and not taken[max(0, y0 - 2):y0 + bh + 2, max(0, x0 - 2):x0 + bw + 2].any():
                alpha = print_alpha(lines, bh, bw)
                region = img[y0:y0 + bh, x0:x0 + bw]
                region[...] = region * (1 - alpha) + ink * alpha
                taken[y0:y0 + bh, x0:x0 + bw] = True
                boxes.append((y0, y0 + bh, x0, x0 + bw))
                break
    return boxes
