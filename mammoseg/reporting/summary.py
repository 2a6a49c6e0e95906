"""summary.csv: every arm's numbers, one row per arm, for analysis outside the report."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

from mammoseg.metrics.stats import NAN_INTERVAL
from mammoseg.reporting.aggregate import Arm
from mammoseg.reporting.registry import DEFAULT_PRIMARY, compared_keys, metrics


def summary_columns(primary: Sequence[str] = DEFAULT_PRIMARY) -> list[str]:
    """Every column of summary.csv, in order."""
    columns = ["arm", "variant", "transpose_kernel", "n_seeds", "seeds", "seeds_not_learned", "n_images"]
    for metric in metrics():
        columns += [f"{metric.key}_mean", f"{metric.key}_sd", f"{metric.key}_ci_low", f"{metric.key}_ci_high"]
    for key in compared_keys(primary):
        columns += [f"{key}_diff", f"{key}_diff_ci_low", f"{key}_diff_ci_high", f"{key}_diff_p"]
        columns += [f"{key}_diff_p_holm"] if key in primary else []
    return columns


def summary_csv(arms: list[Arm], primary: Sequence[str]) -> str:
    """The CSV text: empty cells where a number is not measured."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(summary_columns(primary))
    for arm in arms:
        row: list[object] = [arm.name, arm.variant, arm.runs[0].transpose_kernel, len(arm.counted),
                             " ".join(str(r.seed) for r in arm.counted), " ".join(str(r.seed) for r in arm.failed),
                             len(arm.ids)]
        for metric in metrics():
            cell = arm.cells[metric.key]
            row += [cell.mean, cell.sd, cell.interval.low, cell.interval.high]
        for key in compared_keys(primary):
            diff = arm.paired.get(key, NAN_INTERVAL)
            row += [diff.estimate, diff.low, diff.high, diff.p_value]
            row += [arm.adjusted.get(key, math.nan)] if key in primary else []
        writer.writerow(["" if isinstance(v, float) and not math.isfinite(v) else v for v in row])
    return buffer.getvalue()
