"""Pixels of a synthetic mammogram: breast, tissue, lesions, markers and the lesions' masks.

The anatomy is built so that a segmentation network has to learn shape and texture, not brightness:
dense fibroglandular tissue and unlabelled dense islands are as bright as the masses, scattered
benign specks look like calcifications, and film labels are the brightest things on the film.
Where a breast detector or a texture model would notice, it looks like digitised film (DDSM):
a black film base with a faint haze, bright scanner bands along some edges, labels beside the
breast, a dim fatty periphery with a faint skin line, and power-law texture (beta ~3.3 measured
as in `realism.py`).
Smooth components are drawn at a working resolution of at most 1024 rows and upsampled; lesions,
specks, labels and noise are drawn at the file's resolution. Anatomy and lesions are drawn with
the chest wall on the left and mirrored for right breasts; film labels after mirroring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from mammoseg.dataset.synthetic.lesions import draw_calcs, draw_mass, scattered_specks
from mammoseg.dataset.synthetic.plan import Case

WORK_ROWS = 1024
MAX_16 = 65535
# Film look, tuned with benchmarks/studies/realism.py against real DDSM scans (texture exponent and the
# windowed breast histogram): ranges drawn per image, in the working image's [0, 1] units.
PERIPHERY = (0.06, 0.11)  # fatty periphery: tissue thickness ramps up over this share of the width
GLAND = (0.22, 0.32)  # fibroglandular contrast over fat
STRANDS, STRAND_BETA = 0.05, 3.6  # curvilinear strands' contrast and their field's exponent
FINE = 0.016  # fine texture (beta ~2) that flattens the spectrum's tail
SKIN = (0.015, 0.04)  # skin line


@dataclass
class Lesion:
    """A rendered abnormality: its full-size 0/255 mask and the bounding box of its crop."""

    mask: np.ndarray
    crop_box: tuple[int, int, int, int]  # y0, y1, x0, x1


@dataclass
class Rendered:
    """A full mammogram as stored (MONOCHROME2 values, uint16) with its lesions and what truth records."""

    pixels: np.ndarray
    lesions: list[Lesion]
    breast: np.ndarray  # bool, full size: the breast outside the scanner bands
    dense_islands: list[tuple[int, int, int, int]] = field(default_factory=list)
    label_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    band_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    artefacts: dict[str, object] = field(default_factory=dict)  # a digital image's (see `digital.py`)

    @property
    def breast_box(self) -> tuple[int, int, int, int]:
        """y0, y1, x0, x1 (exclusive) of the breast."""
        ys, xs = np.nonzero(self.breast.any(axis=1))[0], np.nonzero(self.breast.any(axis=0))[0]
        return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


def powerlaw_noise(rng: np.random.Generator, shape: tuple[int, int], beta: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with power spectrum ~ 1/f^beta (mammographic texture has beta ~ 3)."""
    h, w = shape
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(w).astype(np.float32)[None, :]
    k = np.sqrt(fy * fy + fx * fx)
    k[0, 0] = 1.0
    amp = k ** np.float32(-beta / 2)
    amp[0, 0] = 0.0
    spec = rng.standard_normal((*amp.shape, 2), dtype=np.float32).view(np.complex64)[..., 0]  # complex white
    spec *= amp
    out = np.fft.irfft2(spec, s=(h, w)).astype(np.float32)
    out -= out.mean()
    out /= out.std() + 1e-12
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _breast_geometry(rng: np.random.Generator, h: int, w: int, view: str) -> tuple[np.ndarray, np.ndarray]:
    """Breast and pectoral-muscle masks (bool, chest wall at x = 0) at working resolution."""
    v = (np.arange(h, dtype=np.float32) + 0.5) / h
    depth = rng.uniform(0.45, 0.75)
    wobble = 1 + 0.025 * np.sin(2 * np.pi * (rng.uniform(1, 3) * v + rng.random()))
    if view == "CC":
        vc, half = rng.uniform(0.45, 0.55), rng.uniform(0.36, 0.46)
        t = np.clip(1 - ((v - vc) / half) ** 2, 0, None)
        edge = depth * t ** rng.uniform(0.45, 0.65)
    else:
        vc, bottom, top = rng.uniform(0.45, 0.6), rng.uniform(0.84, 0.96), rng.uniform(0.22, 0.38)
        upper = top + (depth - top) * np.sqrt(np.clip(1 - ((vc - v) / vc) ** 2, 0, None))
        lower = depth * np.clip(1 - ((v - vc) / (bottom - vc)) ** 2, 0, None) ** rng.uniform(0.45, 0.65)
        edge = np.where(v < vc, upper, lower)
    edge = edge * wobble
    u = (np.arange(w, dtype=np.float32) + 0.5) / w
    breast = u[None, :] < edge[:, None]
    pectoral = np.zeros_like(breast)
    if view == "MLO":
        pw, ph = rng.uniform(0.18, 0.36), rng.uniform(0.35, 0.6)
        curve = rng.uniform(0.7, 1.0)
        pect_edge = pw * np.clip(1 - v / ph, 0, None) ** curve
        pectoral = (u[None, :] < pect_edge[:, None]) & breast
    return breast, pectoral


def _anatomy(rng: np.random.Generator, h: int, w: int, case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Working-resolution image in [0, 1], breast and pectoral masks, and the dense islands' boxes."""
    breast, pectoral = _breast_geometry(rng, h, w, case.view)
    b8 = breast.astype(np.uint8)
    dist = cv2.distanceTransform(b8, cv2.DIST_L2, 3)
    scale = h / 1024.0
    # Compressed breast: thinner (darker) over a wide fatty periphery, as on film, where the
    # tissue fades into the background; only a faint skin line marks the edge.
    thickness = 1 - np.exp(-dist / (rng.uniform(PERIPHERY[0], PERIPHERY[1]) * w))
    skin_w = 2.0 * scale
    skin = np.exp(-((dist - skin_w) / skin_w) ** 2) * breast
    # Fibroglandular tissue: thresholded power-law noise, concentrated behind the nipple,
    # more of it the denser the breast; curvilinear strands (ligaments, ducts) from the
    # zero crossings of a second power-law field.
    coarse = powerlaw_noise(rng, (h, w), rng.uniform(2.8, 3.4))
    fine = powerlaw_noise(rng, (h, w), rng.uniform(1.8, 2.4))
    y, x = np.ogrid[:h, :w]
    cy, cx = rng.uniform(0.4, 0.6) * h, rng.uniform(0.15, 0.35) * w
    envelope = np.exp(-(((y - cy) / (0.35 * h)) ** 2 + ((x - cx) / (0.4 * w)) ** 2)).astype(np.float32)
    threshold = {1: 1.3, 2: 0.7, 3: 0.15, 4: -0.4}[case.density]
    gland = _sigmoid((coarse + 1.2 * envelope - 0.6 - threshold) / 0.35) * (dist > 4 * scale)
    gland = cv2.GaussianBlur(gland.astype(np.float32), (0, 0), 1.5 * scale)
    # (drawn at half resolution: they are blurred to about that anyway, and it costs a quarter)
    strands = np.exp(-(powerlaw_noise(rng, (max(8, h // 2), max(8, w // 2)), STRAND_BETA) / 0.12) ** 2)
    strands = cv2.GaussianBlur(strands, (0, 0), 0.6 * scale)
    strands = cv2.resize(strands, (w, h), interpolation=cv2.INTER_LINEAR) * (0.4 + envelope)
    fat = rng.uniform(0.26, 0.34)
    img = (fat + rng.uniform(GLAND[0], GLAND[1]) * gland + STRANDS * strands + FINE * fine).astype(np.float32)
    # Dense islands: smooth, mass-sized, mass-bright, and never in a mask.
    islands = []
    inner = np.flatnonzero((dist > 0.06 * w).ravel() & ~pectoral.ravel())
    for _ in range(int(rng.integers(1, 5)) if inner.size else 0):
        iy, ix = divmod(int(inner[rng.integers(inner.size)]), w)
        ry, rx = rng.uniform(0.025, 0.07) * h, rng.uniform(0.025, 0.07) * h
        y0, y1 = max(0, int(iy - 3 * ry)), min(h, int(iy + 3 * ry) + 1)
        x0, x1 = max(0, int(ix - 3 * rx)), min(w, int(ix + 3 * rx) + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        blob = np.exp(-(((yy - iy) / ry) ** 2 + ((xx - ix) / rx) ** 2) ** rng.uniform(1.0, 2.0))
        lumpy = 0.7 + 0.3 * _sigmoid(2 * coarse[y0:y1, x0:x1])
        img[y0:y1, x0:x1] += rng.uniform(0.12, 0.24) * blob * lumpy
        islands.append((int(iy - ry), int(iy + ry), int(ix - rx), int(ix + rx)))
    # Pectoral muscle: a bright, smoothly textured triangle.
    if pectoral.any():
        pect = cv2.GaussianBlur(pectoral.astype(np.float32), (0, 0), 2 * scale)
        img = img * (1 - pect) + pect * (rng.uniform(0.5, 0.62) + 0.03 * coarse)
    img = img * thickness + rng.uniform(SKIN[0], SKIN[1]) * skin
    # A soft edge, so the outline stays smooth when upsampled to the file's resolution.
    img = (img * cv2.GaussianBlur(breast.astype(np.float32), (0, 0), 0.8)).astype(np.float32)
    return img, breast, pectoral, islands


def _place(rng: np.random.Generator, dist: np.ndarray, margin: float, avoid: np.ndarray) -> tuple[int, int]:
    """A random point at least `margin` (working px) inside the breast and the film, preferably `margin`
    away from everything in `avoid` (pectoral muscle, dense islands)."""
    ok = dist > margin
    near = cv2.distanceTransform((~avoid).astype(np.uint8), cv2.DIST_L2, 3) <= margin
    if (ok & ~near).any():
        ok &= ~near
    if not ok.any():
        ok = dist >= dist.max() * 0.8
    idx = np.flatnonzero(ok.ravel())
    return divmod(int(idx[rng.integers(idx.size)]), dist.shape[1])


def _film_labels(rng: np.random.Generator, img: np.ndarray, breast_full: np.ndarray, case: Case) -> list:
    """Film labels and view markers on the film outside the breast, in corners or beside the breast:
    bright print straight on the film, bright print on a grey tab, or a white tab with dark print.
    They are the brightest, unlabelled things on the film."""
    h, w = img.shape
    boxes: list[tuple[int, int, int, int]] = []
    taken = breast_full.copy()
    for _ in range(int(rng.integers(1, 4))):
        bh, bw = int(rng.uniform(0.04, 0.08) * h), int(rng.uniform(0.15, 0.3) * w)
        if rng.random() < 0.5:  # a corner
            corner = int(rng.integers(4))
            y0 = int(rng.uniform(0.02, 0.05) * h) if corner % 2 == 0 else h - bh - int(rng.uniform(0.02, 0.05) * h)
            x0 = int(rng.uniform(0.02, 0.05) * w) if corner < 2 else w - bw - int(rng.uniform(0.02, 0.05) * w)
        else:  # anywhere on the film, often close to the breast
            y0, x0 = int(rng.uniform(0.02, 0.98) * (h - bh)), int(rng.uniform(0.02, 0.98) * (w - bw))
        if taken[max(0, y0 - 2):y0 + bh + 2, max(0, x0 - 2):x0 + bw + 2].any():
            continue
        level = rng.uniform(0.8, 1.0)
        style = rng.random()
        if style < 0.25:  # white tab, dark print
            img[y0:y0 + bh, x0:x0 + bw] = level
            ink = 0.15
        elif style < 0.5:  # grey tab, bright print
            img[y0:y0 + bh, x0:x0 + bw] = rng.uniform(0.2, 0.45)
            ink = level
        else:  # bright print straight on the film
            ink = level
        text = "".join(rng.choice(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"), int(rng.integers(4, 9))))
        alpha = print_alpha([f"{case.side[0]}{case.view}", text], bh, bw)
        img[y0:y0 + bh, x0:x0 + bw] = img[y0:y0 + bh, x0:x0 + bw] * (1 - alpha) + ink * alpha
        taken[y0:y0 + bh, x0:x0 + bw] = True
        boxes.append((y0, y0 + bh, x0, x0 + bw))
    return boxes


def print_alpha(lines: list[str], bh: int, bw: int) -> np.ndarray:
    """Antialiased print of `lines` filling a `bh` x `bw` box, as coverage in [0, 1]."""
    print_ = np.zeros((bh, bw), np.uint8)  # putText draws on 8-bit images only
    fs = bh / (len(lines) + 0.6) / 22.0
    for j, line in enumerate(lines):
        cv2.putText(print_, line, (int(0.05 * bw), int((j + 0.85) * bh / (len(lines) + 0.2))),
                    cv2.FONT_HERSHEY_SIMPLEX, fs, 255, max(1, int(round(fs * 2))), cv2.LINE_AA)
    return print_.astype(np.float32) / 255


def _scanner_bands(rng: np.random.Generator, h: int, w: int) -> list[tuple[int, int, int, int]]:
    """Boxes of the bright bands a film digitiser leaves along one to three image edges (the film's
    unexposed margin and the scanner's frame), over breast and background alike."""
    edges = [e for e in range(4) if rng.random() < 0.4] or [int(rng.integers(4))]
    boxes = []
    for edge in edges:  # top, bottom, left, right
        if edge < 2:
            n = max(2, int(rng.uniform(0.003, 0.02) * h))
            boxes.append((0, n, 0, w) if edge == 0 else (h - n, h, 0, w))
        else:
            n = max(2, int(rng.uniform(0.003, 0.02) * w))
            boxes.append((0, h, 0, n) if edge == 2 else (0, h, w - n, w))
    return boxes


def _draw_bands(rng: np.random.Generator, img: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> None:
    """Fill the bands: bright, slowly varying along their length, with the scanner's noise."""
    for y0, y1, x0, x1 in boxes:
        length = max(y1 - y0, x1 - x0)
        along = np.cumsum(rng.normal(0, 1, length)).astype(np.float32)
        along = 0.04 * (along - along.mean()) / (along.std() + 1e-6)
        level = rng.uniform(0.5, 0.9) + (along[:, None] if y1 - y0 == length else along[None, :])
        region = img[y0:y1, x0:x1]
        region[...] = level + rng.normal(0, 0.01, region.shape).astype(np.float32)


@dataclass
class Drawn:
    """A breast with its lesions drawn, before the medium's background, labels and quantisation:
    working values in [0, 1] (chest wall on the side the case names), the breast, the breast outside
    the border boxes (where lesions lie), the border boxes themselves, and the scale (rows / 1024)."""

    img: np.ndarray
    breast: np.ndarray
    inside: np.ndarray
    lesions: list[Lesion]
    islands: list[tuple[int, int, int, int]]
    borders: list[tuple[int, int, int, int]]
    scale: float

    def finish(self, pixels: np.ndarray, labels: list[tuple[int, int, int, int]]) -> Rendered:
        """The stored image, with each lesion's crop box: its mask's box padded by 15% and 8 px."""
        h, w = pixels.shape
        for lesion in self.lesions:
            ys, xs = np.nonzero(lesion.mask.any(axis=1))[0], np.nonzero(lesion.mask.any(axis=0))[0]
            pad_y = int(0.15 * (ys[-1] - ys[0]) + 8 * self.scale)
            pad_x = int(0.15 * (xs[-1] - xs[0]) + 8 * self.scale)
            lesion.crop_box = (max(0, int(ys[0]) - pad_y), min(h, int(ys[-1]) + pad_y + 1),
                               max(0, int(xs[0]) - pad_x), min(w, int(xs[-1]) + pad_x + 1))
        return Rendered(pixels=pixels, lesions=self.lesions, breast=np.ascontiguousarray(self.inside),
                        dense_islands=self.islands, label_boxes=labels, band_boxes=self.borders)


def render_case(case: Case) -> Rendered:
    """Draw one digitised film with all its abnormalities; deterministic per `case.render_seed`."""
    rng = np.random.default_rng(case.render_seed)
    drawn = draw_breast(rng, case, _scanner_bands)
    img, h, w = drawn.img, case.rows, case.cols
    labels = _film_labels(rng, img, drawn.breast, case)  # after mirroring: print reads left to right
    # Film base: dark, mostly clipped to zero by the digitiser, with a faint uneven haze; scanner
    # noise; the bands; quantisation.
    ramp = np.linspace(-1, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
    haze = rng.uniform(0, 0.015) * (ramp[None, :] if ramp.size == w else ramp[:, None])
    img += rng.uniform(-0.012, 0.006) + haze
    img += rng.normal(0, rng.uniform(0.003, 0.006), img.shape).astype(np.float32)
    _draw_bands(rng, img, drawn.borders)
    return drawn.finish((np.clip(img, 0, 1) * MAX_16 + 0.5).astype(np.uint16), labels)


def draw_breast(rng: np.random.Generator, case: Case,
                border_boxes: Callable[[np.random.Generator, int, int], list[tuple[int, int, int, int]]]) -> Drawn:
    """The anatomy and the abnormalities of `case` at the file's resolution, mirrored for right
    breasts. `border_boxes` (rng, rows, cols) are the medium's strips along the edges (in the
    mirrored image's coordinates), chosen before the lesions so that lesions keep clear of them."""
    h, w = case.rows, case.cols
    wh = min(h, WORK_ROWS)
    ww = max(8, int(round(w * wh / h)))
    work, breast_w, pectoral_w, islands_w = _anatomy(rng, wh, ww, case)
    f = h / wh
    if f != 1:
        img = cv2.resize(work, (w, h), interpolation=cv2.INTER_LINEAR)
        breast = cv2.resize(breast_w.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    else:
        img, breast = work, breast_w
    scale = h / 1024.0
    bands = border_boxes(rng, h, w)
    inside = breast.copy()
    for y0, y1, x0, x1 in bands:
        if case.side == "RIGHT":
            x0, x1 = w - x1, w - x0
        inside[y0:y1, x0:x1] = False
    inside_w = inside if f == 1 else cv2.resize(inside.astype(np.uint8), (ww, wh),
                                                interpolation=cv2.INTER_NEAREST).astype(bool)
    # Distances that also count the film's edges, so lesions stay whole on the film.
    inner = cv2.distanceTransform(np.pad(inside_w.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    avoid = pectoral_w.copy()
    for y0, y1, x0, x1 in islands_w:
        avoid[max(0, y0):y1, max(0, x0):x1] = True
    lesions = []
    for a in case.abnormalities:
        mask = np.zeros((h, w), np.uint8)
        if a.kind == "mass":
            radius_w = rng.uniform(0.02, 0.065) * wh
            cy, cx = _place(rng, inner, radius_w * 1.3, avoid)
            draw_mass(rng, img, mask, inside, a, (cy * f, cx * f), radius_w * f)
        else:
            radius_w = rng.uniform(0.012, 0.04) * wh
            cy, cx = _place(rng, inner, radius_w * 1.5, avoid)
            draw_calcs(rng, img, mask, inside, a, (cy * f, cx * f), radius_w * f, scale)
        cv2.circle(avoid.view(np.uint8), (int(cx), int(cy)), int(radius_w * 1.5), 1, -1)  # keep lesions apart
        lesions.append(Lesion(mask=mask, crop_box=(0, 0, 0, 0)))
    scattered_specks(rng, img, breast, scale)
    islands = [(int(y0 * f), int(y1 * f), int(x0 * f), int(x1 * f)) for y0, y1, x0, x1 in islands_w]
    if case.side == "RIGHT":
        img, breast, inside = np.ascontiguousarray(img[:, ::-1]), breast[:, ::-1], inside[:, ::-1]
        for lesion in lesions:
            lesion.mask = np.ascontiguousarray(lesion.mask[:, ::-1])
        islands = [(y0, y1, w - x1, w - x0) for y0, y1, x0, x1 in islands]
    return Drawn(img=img, breast=breast, inside=inside, lesions=lesions, islands=islands, borders=bands, scale=scale)
