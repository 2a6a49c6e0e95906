"""Abnormalities drawn into a synthetic mammogram: masses by BI-RADS shape and margin, groups of
calcifications, and the scattered benign specks that no mask covers. Each lesion's mask stops at
the edge of the breast it is given."""

from __future__ import annotations

import cv2
import numpy as np

from mammoseg.dataset.synthetic.plan import Abnormality


def mass_polygon(rng: np.random.Generator, shape: str, radius: float) -> np.ndarray:
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


def draw_mass(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, breast: np.ndarray, a: Abnormality,
               centre: tuple[float, float], radius: float) -> None:
    """Add a mass to `img` and fill its outline into `mask`; margins set the edge blur, spicules radiate.
    Outline and spicules stop at the edge of `breast` (bool, full size)."""
    h, w = img.shape
    margin = a.descriptor_b.split("-")[-1] if a.descriptor_b != "N/A" else "ILL_DEFINED"
    base = a.descriptor_a.split("-")[0]
    outline = mass_polygon(rng, a.descriptor_a, radius)
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


def draw_calcs(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, breast: np.ndarray, a: Abnormality,
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


def scattered_specks(rng: np.random.Generator, img: np.ndarray, breast_full: np.ndarray, scale: float) -> None:
    """Isolated benign calcifications: calc-like specks that no mask covers."""
    ys, xs = np.nonzero(breast_full[::8, ::8])
    if ys.size == 0:
        return
    for i in rng.integers(0, ys.size, int(rng.integers(0, 7))):
        y, x = int(ys[i]) * 8, int(xs[i]) * 8
        r = max(1, int(round(rng.uniform(0.6, 2.0) * scale)))
        cv2.circle(img, (x, y), r, float(img[y, x] + rng.uniform(0.2, 0.45)), -1, cv2.LINE_AA)
