"""The HTML report in a real browser: does anything run off a 1400 px wide window?

Wide tables (the checkerboard group, the differences) once ran past the right edge and their last
columns could not be read. This renders a report, opens it in headless Chromium at 1400 px, saves
a screenshot, and checks, in the browser's own layout:

- the page does not scroll sideways (document scrollWidth <= window innerWidth);
- every table sits in a wrapper that ends inside the window, and every element outside such a
  wrapper ends inside the window (a wide table scrolls inside its wrapper instead);
- the right-most columns of the screenshot are page background (nothing is drawn at the edge).

The report comes from run folders (`--runs`), or by default from a built-in synthetic set of arms
(the five article variants x 2 seeds, written as evaluated run folders and compared by
`write_report`, so it is the real report of real numbers with tables as wide as an ablation's).

    PYTHONPATH=. python benchmarks/studies/report_screenshot.py --out /tmp/report_shot
    PYTHONPATH=. python benchmarks/studies/report_screenshot.py --runs experiments/runs/demo/* --out /tmp/shot
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mammoseg.evaluation.evaluate import GATE_KEY  # noqa: E402
from mammoseg.models.registry import article_variant_names  # noqa: E402
from mammoseg.runs.rundir import per_image_columns  # noqa: E402
from mammoseg.reporting import write_report  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the record every benchmark writes
from record import write_record  # noqa: E402

WIDTH, HEIGHT = 1400, 2200
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
VARIANTS = tuple(article_variant_names())
EDGE_PX = 8  # right-most screenshot columns that must be page background
RESULT_ID = "layout-check"

# Runs in the page after it is laid out; writes its findings into the DOM, which --dump-dom prints.
MEASURE = """<script>
(function () {
  const width = window.innerWidth, slack = 0.5;
  const wrappers = Array.from(document.querySelectorAll("table")).map(t => t.parentElement);
  const inWrapper = el => wrappers.some(w => w !== el && w.contains(el) && getComputedStyle(w).overflowX !== "visible");
  const over = Array.from(document.body.querySelectorAll("*"))
    .filter(el => !inWrapper(el) && el.getBoundingClientRect().right > width + slack)
    .map(el => el.tagName.toLowerCase() + (el.className ? "." + el.className : ""));
  const tables = wrappers.map(w => ({table: w.querySelector("table").offsetWidth,
                                     right: w.getBoundingClientRect().right,
                                     client: w.clientWidth, scroll: w.scrollWidth,
                                     clips: getComputedStyle(w).overflowX !== "visible"}));
  const out = document.createElement("pre");
  out.id = "%s";
  out.textContent = JSON.stringify({innerWidth: width, scrollWidth: document.documentElement.scrollWidth,
                                    overflowing: over, tables: tables});
  document.body.appendChild(out);
})();
</script>""" % RESULT_ID


def find_browser() -> str | None:
    """A Chromium or Chrome binary on PATH that renders a page headless, or None: the check needs one
    and never assumes it."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            try:
                if "<body>" in _chromium(path, "--dump-dom", "data:text/html,<p>probe</p>", timeout=60).stdout:
                    return path
            except (OSError, subprocess.TimeoutExpired):
                pass
    return None


def _write_run(folder: Path, variant: str, seed: int, rng: np.random.Generator, n_images: int = 24) -> Path:
    """An evaluated run folder with evaluate's per-image columns and the run-level files a report reads."""
    eval_dir = folder / "eval" / "test"
    eval_dir.mkdir(parents=True, exist_ok=True)
    quality = 0.5 + 0.08 * VARIANTS.index(variant) + 0.03 * rng.standard_normal()
    negative = np.arange(n_images) % 2 == 1
    truth = np.where(negative, 0, rng.integers(20, 80, n_images))
    tp = np.round(truth * np.clip(quality + 0.1 * rng.standard_normal(n_images), 0, 1))
    fp = np.round(np.clip((1.2 - quality) * 8 + rng.normal(0, 2, n_images), 0, None))
    fn = truth - tp
    area = 32 * 32
    mean_prob = np.clip(0.3 - 0.2 * quality + 0.02 * rng.standard_normal(n_images), 0, 1)
    columns = {
        "example_id": [f"ex{i:03d}" for i in range(n_images)], "kind": np.where(negative, "negative", "positive"),
        "patient_id": [f"p{i:03d}" for i in range(n_images)], "positive_fraction": truth / area,
        "dice": np.where(tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan),
        "iou": np.where(tp + fp + fn > 0, tp / np.maximum(tp + fp + fn, 1), np.nan), "tp": tp, "fp": fp, "fn": fn,
        "tn": area - tp - fp - fn, "max_prob": np.clip(3 * mean_prob, 0, 1), "mean_prob": mean_prob,
        "frac_above_05": (tp + fp) / area, "predicted_positive": ((tp + fp) > area / 750).astype(int),
        "phase_mean": np.clip(0.2 + 0.05 * rng.standard_normal(n_images), 0, 1),
        "aliasing_fraction": np.clip(0.01 + 0.002 * rng.standard_normal(n_images), 0, 1),
        "phase_mean_margin": np.clip(0.3 + 0.05 * rng.standard_normal(n_images), 0, 1),
        "bright_corr": np.clip(0.3 + 0.1 * rng.standard_normal(n_images), -1, 1),
    }
    import pandas as pd

    pd.DataFrame(columns).reindex(columns=list(per_image_columns())).to_csv(eval_dir / "per_image.csv", index=False)
    metrics = {"pixel_pr_auc": float(np.clip(0.8 * quality, 0, 1)), "pixel_roc_auc": 0.9, "ece": 0.05 * (1.2 - quality),
               GATE_KEY: {"learned": True, "rule": "synthetic"}, "inference": {"images_per_second": 50.0 + seed}}
    (eval_dir / "metrics.json").write_text(json.dumps(metrics))
    config = {"variant": variant, "seed": seed, "image_size": 32, "params": 1_000_000 + 1000 * VARIANTS.index(variant),
              "flops": 2e9}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "timing.json").write_text(json.dumps({"mean_seconds_per_epoch": 10.0 + seed,
                                                    "train_images_per_second": 30.0 + seed}))
    kernel = {"up_conv1": 0.1 + 0.01 * seed} if "transpose" in variant or variant == "fcn_skips" else {}
    (folder / "checkerboard_init.json").write_text(json.dumps(
        {"kernel": kernel, "map": {"phase_mean": 0.3 + 0.01 * seed, "aliasing_fraction": 0.02}}))
    return folder


def synthetic_runs(root: Path, seeds: int = 2) -> list[Path]:
    """The five article variants x `seeds` seeds as evaluated run folders under `root`."""
    rng = np.random.default_rng(0)
    return [_write_run(root / f"{variant}-seed{seed}", variant, seed, rng) for variant in VARIANTS
            for seed in range(seeds)]


def _chromium(browser: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--window-size={WIDTH},{HEIGHT}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def measure(browser: str, page: Path) -> dict:
    """The browser's layout of `page` at WIDTH px: widths, overflowing elements, each table's wrapper."""
    probe = page.with_name(page.stem + ".measure.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    result = _chromium(browser, "--dump-dom", probe.resolve().as_uri())
    found = re.search(rf'<pre id="{RESULT_ID}">(.*?)</pre>', result.stdout, re.S)
    if not found:
        raise RuntimeError(f"{browser} gave no layout for {page} (exit {result.returncode}): {result.stderr[-500:]}")
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))


def screenshot(browser: str, page: Path, png: Path) -> np.ndarray:
    """The top WIDTH x HEIGHT px of the page as an RGB array, also saved to `png`."""
    from matplotlib.image import imread

    png.unlink(missing_ok=True)
    result = _chromium(browser, f"--screenshot={png.resolve()}", page.resolve().as_uri())
    if not png.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot of {page} (exit {result.returncode}): "
                           f"{result.stderr[-500:]}")
    return imread(png)[..., :3]


def problems(layout: dict, image: np.ndarray | None = None) -> list[str]:
    """What runs off the window, in words; empty when the page fits."""
    found = []
    if layout["scrollWidth"] > layout["innerWidth"]:
        found.append(f"the page scrolls sideways: {layout['scrollWidth']} px wide in a "
                     f"{layout['innerWidth']} px window")
    found += [f"{name} ends past the window's right edge" for name in dict.fromkeys(layout["overflowing"])]
    for n, table in enumerate(layout["tables"], 1):
        if not table["clips"] and table["scroll"] > table["client"]:
            found.append(f"table {n} ({table['scroll']} px) is wider than its wrapper ({table['client']} px), "
                         "which does not scroll")
    if image is not None:
        edge = image[:, -EDGE_PX:]
        if np.ptp(edge.reshape(-1, 3), axis=0).max() > 0.02:
            found.append(f"something is drawn in the screenshot's right-most {EDGE_PX} px")
    return found


def check(browser: str, page: Path, png: Path | None = None) -> tuple[dict, list[str]]:
    """The layout and its problems; with `png`, the screenshot is taken and checked too."""
    layout = measure(browser, page)
    return layout, problems(layout, screenshot(browser, page, png) if png is not None else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", type=Path, help="Evaluated run folders [default: a synthetic set].")
    parser.add_argument("--out", type=Path, required=True, help="Folder for the report and screenshot.png.")
    parser.add_argument("--json", type=Path, help="write the figures here (benchmarks/record.py)")
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        print(f"no working headless browser (looked for {', '.join(BROWSERS)} on PATH): nothing checked")
        return 2
    runs = args.runs or synthetic_runs(args.out / "runs")
    start = time.perf_counter()
    page = write_report(runs, args.out / "report")
    rendered = time.perf_counter()
    layout, found = check(browser, page, args.out / "screenshot.png")
    done = time.perf_counter()
    print(f"{browser}: {len(runs)} runs, report in {rendered - start:.1f} s, browser checks in {done - rendered:.1f} s")
    print(f"window {layout['innerWidth']} px, page {layout['scrollWidth']} px wide")
    for n, table in enumerate(layout["tables"], 1):
        state = "scrolls" if table["scroll"] > table["client"] else "fits"
        print(f"  table {n}: {table['table']} px in a {table['client']} px wrapper ending at "
              f"{table['right']:.0f} px ({state})")
    print(f"screenshot: {args.out / 'screenshot.png'}")
    print("\n".join(f"PROBLEM: {p}" for p in found) or "nothing runs off the window")
    write_record(args.json, {"browser": browser, "runs": len(runs), "report_seconds": rendered - start,
                             "browser_seconds": done - rendered, "layout": layout, "problems": found})
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
