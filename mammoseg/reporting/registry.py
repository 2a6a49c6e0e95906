"""The reported metrics, as declared once in `metrics/catalog.py` (tables, verdict, figures, summary.csv
and the claims all read that declaration), and the report's choices among them: which are compared
against the baseline, which the verdict speaks of, which are drawn as bars, which are primary."""

from __future__ import annotations

from collections.abc import Sequence

from mammoseg.core.errors import MammosegError
from mammoseg.metrics.catalog import METRIC_BY_KEY, Metric, hard_map, metrics
from mammoseg.runs.rundir import Run, flat_metrics, lookup

__all__ = ["METRIC_BY_KEY", "Metric", "hard_map", "metrics", "run_value", "check_primary", "compared_keys"]


def run_value(metric: Metric, run: Run) -> float:
    """One run's value of a run or exact metric: its declared source, read at exactly that key (a run file
    without the key: NaN, not measured), or its own function of the run."""
    if metric.value is not None:
        return metric.value(run)
    file, key = metric.run_file
    data = {"metrics": run.metrics, "config": run.config, "timing": run.timing,
            "checkerboard_init": run.checkerboard_init}[file]
    return lookup(flat_metrics(data), key) / metric.scale


PAIRED_KEYS = ("dice_per_image", "dice_pooled", "dice_pooled_all", "neg_fp_rate", "neg_mean_prob",
               "phase_mean_margin_trained", "phase_mean_trained")
VERDICT_KEYS = ("dice_per_image", "dice_pooled", "dice_pooled_all", "neg_fp_rate", "neg_mean_prob", "pr_auc", "ece",
                "phase_mean_margin_trained", "phase_mean_trained", "kernel_init", "params_m", "gflops", "sec_per_epoch")
BAR_KEYS = ("dice_per_image", "dice_pooled", "neg_fp_rate", "neg_mean_prob", "pr_auc", "ece")
DEFAULT_PRIMARY = ("neg_fp_rate", "dice_per_image", "phase_mean_trained")  # the article's three questions
for _key in (*PAIRED_KEYS, *VERDICT_KEYS, *BAR_KEYS, *DEFAULT_PRIMARY):
    METRIC_BY_KEY[_key]  # a misspelt key fails on import, naming the declared ones nearest to it


def check_primary(keys: Sequence[str] | None) -> tuple[str, ...]:
    """The primary metrics an experiment names (DEFAULT_PRIMARY when it names none): known, varying metrics."""
    if keys is None:
        return DEFAULT_PRIMARY
    keys = tuple(keys)
    unknown = [k for k in keys if k not in METRIC_BY_KEY]
    if unknown:
        raise MammosegError(f"unknown primary metric {', '.join(map(repr, unknown))}; known: {', '.join(METRIC_BY_KEY)}")
    fixed = [k for k in keys if METRIC_BY_KEY[k].source == "exact"]
    if fixed:
        raise MammosegError(f"primary metric {', '.join(map(repr, fixed))} does not vary between seeds; "
                            "nothing to test")
    if not keys:
        raise MammosegError("primary_metrics is empty: name at least one metric")
    return keys


def compared_keys(primary: Sequence[str]) -> tuple[str, ...]:
    """Metrics whose difference against the baseline is computed: the primary ones, then the usual paired set."""
    return tuple(dict.fromkeys([*primary, *PAIRED_KEYS]))
