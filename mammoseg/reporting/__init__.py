"""The comparison report of evaluated runs: which upsampling design wins, on what, and how sure we are.

registry (the metrics) → aggregate (arms, intervals, differences) → claims (the article's claims, the
confirmatory family where they apply) → verdict and findings (the words) → document (one tree of
blocks) → markdown / html renderers; summary.csv beside them; figures draws the PNGs.
"""

from mammoseg.reporting.registry import DEFAULT_PRIMARY, METRIC_BY_KEY, check_primary, metrics
from mammoseg.reporting.summary import summary_columns
from mammoseg.reporting.write import write_report

__all__ = ["DEFAULT_PRIMARY", "METRIC_BY_KEY", "check_primary", "metrics", "summary_columns", "write_report"]
