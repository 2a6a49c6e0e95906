"""The comparison report of evaluated runs."""

from mammoseg.reporting.aggregate import DEFAULT_PRIMARY, check_primary, summary_columns, write_report

__all__ = ["DEFAULT_PRIMARY", "check_primary", "summary_columns", "write_report"]
