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

from dataclasses import dataclass, field

import cv2
import numpy as np

from mammoseg.dataset.synthetic.plan import Abnormality, Case

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


def _mass_polygon(rng: np.random.Generator, shape: str, radius: float) -> np.ndarray:
    """Outline (N x 2, relative to the centre) following the BI-RADS shape."""
    theta = np.linspace(0, 2 * np.pi, 256, endpoint=False)
    r = np.ones_like(theta)
    aspect = 1.0
    base = shape.split("-")[0]
    if base == "ROUND":
        aspect = rng.uniform(1.0, 1.12)
        r += 0.02 * np.cos(3 * theta + rng.uniform(0, 6.3))
    elif base in ("OVAL", "LYMPH_NODE"):
        aspect = rng.uniform(1.3, 1.8)
        r += 0.03 * np.cos(2 * theta + rng.uniform(0, 6.3))
    elif base == "LOBULATED":
        aspect = rng.uniform(1.0, 1.4)
        for k in rng.choice([3, 4, 5, 6], 2, replace=False):
            r += rng.uniform(0.08, 0.16) * np.cos(k * theta + rng.uniform(0, 6.3))
    else:  # irregular, distortions, asymmetries
        aspect = rng.uniform(1.0, 1.6)
        for k in range(2, 14):
            r += rng.uniform(0.0, 0.3) / k ** 0.8 * np.cos(k * theta + rng.uniform(0, 6.3))
    r = np.clip(r, 0.35, None) * radius
    angle = rng.uniform(0, np.pi)
    px, py = r * np.cos(theta) * aspect, r * np.sin(theta)
    ca, sa = np.cos(angle), np.sin(angle)
    return np.stack([px * ca - py * sa, px * sa + py * ca], axis=1)


def _draw_mass(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, breast: np.ndarray, a: Abnormality,
               centre: tuple[float, float], radius: float) -> None:
    """Add a mass to `img` and fill its outline into `mask`; margins set the edge blur, spicules radiate.
    Outline and spicules stop at the edge of `breast` (bool, full size)."""
    h, w = img.shape
    margin = a.descriptor_b.split("-")[-1] if a.descriptor_b != "N/A" else "ILL_DEFINED"
    base = a.descriptor_a.split("-")[0]
    outline = _mass_polygon(rng, a.descriptor_a, radius)
    if margin == "MICROLOBULATED":
        theta = np.arctan2(outline[:, 1], outline[:, 0])
        outline *= (1 + 0.04 * np.cos(rng.integers(14, 22) * theta))[:, None]
    spiculated = "SPICULATED" in a.descriptor_b or "ARCHITECTURAL_DISTORTION" in a.descriptor_a
    reach = float(np.abs(outline).max()) * (2.6 if spiculated else 1.6) + 4
    cy, cx = centre
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
    pts = np.round((outline + [cx - x0, cy - y0]) * 16).astype(np.int32)
    core = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(core, [pts], 1, lineType=cv2.LINE_8, shift=4)
    within = breast[y0:y1, x0:x1]
    mask[y0:y1, x0:x1] |= core * within * np.uint8(255)
    inside = cv2.distanceTransform(core, cv2.DIST_L2, 3)
    dome = 1 - np.exp(-inside / (0.35 * radius))
    if base == "LYMPH_NODE":  # fatty hilum: a darker notch in the middle
        dome *= 1 - 0.5 * np.exp(-(inside.max() - inside) / (0.15 * radius))
    blur = {"CIRCUMSCRIBED": 0.02, "OBSCURED": 0.12, "MICROLOBULATED": 0.05, "ILL_DEFINED": 0.3,
            "SPICULATED": 0.1}.get(margin, 0.2) * radius
    body = dome.astype(np.float32)
    if blur >= 0.5:
        body = cv2.GaussianBlur(body, (0, 0), blur)
    contrast = rng.uniform(0.14, 0.28) * (0.6 + 0.1 * a.subtlety)
    if base in ("ARCHITECTURAL_DISTORTION", "ASYMMETRIC_BREAST_TISSUE", "FOCAL_ASYMMETRIC_DENSITY"):
        contrast *= 0.55
    if spiculated:
        lines = np.zeros_like(body)
        n = int(rng.integers(8, 22))
        ang = rng.uniform(0, 2 * np.pi, n)
        thick = max(1, int(round(radius * 0.05)))
        outline_angle = np.arctan2(outline[:, 1], outline[:, 0])
        for t, length in zip(ang, rng.uniform(0.6, 1.6, n) * radius):
            k = int(np.argmin(np.abs(np.angle(np.exp(1j * (outline_angle - t))))))  # spicule leaves the edge at t
            sx, sy = outline[k] * 0.8 + [cx - x0, cy - y0]
            ex, ey = sx + np.cos(t) * length, sy + np.sin(t) * length
            cv2.line(lines, (int(sx * 16), int(sy * 16)), (int(ex * 16), int(ey * 16)), 0.6, thick,
                     cv2.LINE_AA, shift=4)
        body = np.maximum(body, cv2.GaussianBlur(lines, (0, 0), max(0.6, thick * 0.5)))
    img[y0:y1, x0:x1] += contrast * body * within


def _draw_calcs(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, breast: np.ndarray, a: Abnormality,
                centre: tuple[float, float], radius: float, scale: float) -> None:
    """Add a group of tiny bright specks; the mask is the region around the group, not the specks.
    Both stop at the edge of `breast` (bool, full size)."""
    h, w = img.shape
    dist = a.descriptor_b.split("-")[0]
    n = int(rng.integers(6, 40))
    if dist in ("LINEAR", "SEGMENTAL"):
        t = rng.uniform(-1, 1, n)
        ang = rng.uniform(0, np.pi)
        spread = 0.12 if dist == "LINEAR" else 0.3
        off = np.stack([t * np.cos(ang) - rng.normal(0, spread, n) * np.sin(ang),
                        t * np.sin(ang) + rng.normal(0, spread, n) * np.cos(ang)], 1) * radius
    else:
        sigma = 0.45 if dist in ("CLUSTERED", "N/A") else 0.8
        off = np.clip(rng.normal(0, sigma, (n, 2)), -1.2, 1.2) * radius
    pts = off + [centre[1], centre[0]]
    pts = pts[(pts[:, 0] >= 2) & (pts[:, 0] < w - 2) & (pts[:, 1] >= 2) & (pts[:, 1] < h - 2)]
    if len(pts) < 3:
        pts = np.array([[centre[1], centre[0]], [centre[1] + 2, centre[0]], [centre[1], centre[0] + 2]])
    pad = max(3.0, 0.25 * radius)
    x0, y0 = np.maximum(np.floor(pts.min(0) - 3 * pad), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(pts.max(0) + 3 * pad), [w, h]).astype(int)
    local = np.round((pts - [x0, y0]) * 16).astype(np.int32)
    region = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillConvexPoly(region, cv2.convexHull(local), 1, lineType=cv2.LINE_8, shift=4)
    k = 2 * int(round(pad)) + 1
    region = cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    within = breast[y0:y1, x0:x1]
    mask[y0:y1, x0:x1] |= region * within * np.uint8(255)
    specks = np.zeros(region.shape, np.float32)
    bright = rng.uniform(0.25, 0.5) * (0.7 + 0.075 * a.subtlety)
    for (px, py), r in zip(local, rng.uniform(0.5, 1.8, len(local)) * scale):
        cv2.circle(specks, (int(px), int(py)), max(1, int(round(r * 16))), float(bright * rng.uniform(0.6, 1.0)),
                   -1, cv2.LINE_AA, shift=4)
    img[y0:y1, x0:x1] += cv2.GaussianBlur(specks, (0, 0), 0.5 * scale) * within


def _scattered_specks(rng: np.random.Generator, img: np.ndarray, breast_full: np.ndarray, scale: float) -> None:
    """Isolated benign calcifications: calc-like specks that no mask covers."""
    ys, xs = np.nonzero(breast_full[::8, ::8])
    if ys.size == 0:
        return
    for i in rng.integers(0, ys.size, int(rng.integers(0, 7))):
        y, x = int(ys[i]) * 8, int(xs[i]) * 8
        r = max(1, int(round(rng.uniform(0.6, 2.0) * scale)))
        cv2.circle(img, (x, y), r, float(img[y, x] + rng.uniform(0.2, 0.45)), -1, cv2.LINE_AA)


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
        print_ = np.zeros((bh, bw), np.uint8)  # putText draws on 8-bit images only
        for j, line in enumerate([f"{case.side[0]}{case.view}", text]):
            fs = bh / 2.6 / 22.0
            cv2.putText(print_, line, (int(0.05 * bw), int((j + 0.85) * bh / 2.2)),
                        cv2.FONT_HERSHEY_SIMPLEX, fs, 255, max(1, int(round(fs * 2))), cv2.LINE_AA)
        alpha = print_.astype(np.float32) / 255
        img[y0:y0 + bh, x0:x0 + bw] = img[y0:y0 + bh, x0:x0 + bw] * (1 - alpha) + ink * alpha
        taken[y0:y0 + bh, x0:x0 + bw] = True
        boxes.append((y0, y0 + bh, x0, x0 + bw))
    return boxes


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


def render_case(case: Case) -> Rendered:
    """Draw one full mammogram with all its abnormalities; deterministic per `case.render_seed`."""
    rng = np.random.default_rng(case.render_seed)
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
    # Scanner bands are chosen first (in the mirrored film's coordinates) so lesions keep clear of them.
    bands = _scanner_bands(rng, h, w)
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
            _draw_mass(rng, img, mask, inside, a, (cy * f, cx * f), radius_w * f)
        else:
            radius_w = rng.uniform(0.012, 0.04) * wh
            cy, cx = _place(rng, inner, radius_w * 1.5, avoid)
            _draw_calcs(rng, img, mask, inside, a, (cy * f, cx * f), radius_w * f, scale)
        cv2.circle(avoid.view(np.uint8), (int(cx), int(cy)), int(radius_w * 1.5), 1, -1)  # keep lesions apart
        lesions.append(Lesion(mask=mask, crop_box=(0, 0, 0, 0)))
    _scattered_specks(rng, img, breast, scale)
    islands = [(int(y0 * f), int(y1 * f), int(x0 * f), int(x1 * f)) for y0, y1, x0, x1 in islands_w]
    if case.side == "RIGHT":
        img, breast, inside = np.ascontiguousarray(img[:, ::-1]), breast[:, ::-1], inside[:, ::-1]
        for lesion in lesions:
            lesion.mask = np.ascontiguousarray(lesion.mask[:, ::-1])
        islands = [(y0, y1, w - x1, w - x0) for y0, y1, x0, x1 in islands]
    labels = _film_labels(rng, img, breast, case)  # after mirroring: print reads left to right
    # Film base: dark, mostly clipped to zero by the digitiser, with a faint uneven haze; scanner
    # noise; the bands; quantisation.
    ramp = np.linspace(-1, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
    haze = rng.uniform(0, 0.015) * (ramp[None, :] if ramp.size == w else ramp[:, None])
    img += rng.uniform(-0.012, 0.006) + haze
    img += rng.normal(0, rng.uniform(0.003, 0.006), img.shape).astype(np.float32)
    _draw_bands(rng, img, bands)
    pixels = (np.clip(img, 0, 1) * MAX_16 + 0.5).astype(np.uint16)
    for lesion in lesions:
        ys, xs = np.nonzero(lesion.mask.any(axis=1))[0], np.nonzero(lesion.mask.any(axis=0))[0]
        pad_y, pad_x = int(0.15 * (ys[-1] - ys[0]) + 8 * scale), int(0.15 * (xs[-1] - xs[0]) + 8 * scale)
        lesion.crop_box = (max(0, int(ys[0]) - pad_y), min(h, int(ys[-1]) + pad_y + 1),
                           max(0, int(xs[0]) - pad_x), min(w, int(xs[-1]) + pad_x + 1))
    return Rendered(pixels=pixels, lesions=lesions, breast=np.ascontiguousarray(inside), dense_islands=islands,
                    label_boxes=labels, band_boxes=bands)
