"""`mammoseg compare`: load the runs, build the arms and the one document, write every output."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from mammoseg.runs.external import split_label
from mammoseg.runs.folds import merge_folds
from mammoseg.runs.rundir import load_run
from mammoseg.core.atomic import write_bytes, write_text
from mammoseg.core.errors import MammosegError
from mammoseg.reporting import html, markdown
from mammoseg.reporting.aggregate import build_arms, exploratory_only
from mammoseg.reporting.claims import CLAIMS, Claim, claims_apply
from mammoseg.reporting.document import Document, build_document
from mammoseg.reporting.evidence import read_evidence
from mammoseg.reporting.findings import claims_section
from mammoseg.reporting.registry import check_primary
from mammoseg.reporting.report_figures import report_figures
from mammoseg.reporting.strata import CLASS_COLUMN, STRATUM_COLUMN, image_records, lesions_section, strata_section
from mammoseg.reporting.summary import summary_csv
from mammoseg.reporting.verdict import verdict

logger = logging.getLogger("mammoseg.report")


def write_report(run_dirs: list[Path], out_dir: Path, baseline: str | None = None, split: str = "test",
                 primary: Sequence[str] | None = None, data_name: str | None = None,
                 claims: Sequence[Claim] = CLAIMS) -> Path:
    """Compare the runs and write report.md, a self-contained report.html, summary.csv, figures/ and, when the
    claims apply, findings.md; returns the HTML path. `primary`: the metrics claims are made on (DEFAULT_PRIMARY when None).
    `data_name`: compare on `split` of that external dataset (external validation), as the report says.
    Evidence gathered beside the runs in `out_dir` (`reporting.evidence`) feeds the claims: the experiment's
    own (`claims`), else the article's."""
    if not run_dirs:
        raise MammosegError("no runs to compare")
    primary = check_primary(primary)
    start = time.perf_counter()
    runs = merge_folds([load_run(path, split, data_name) for path in run_dirs])
    arms, base = build_arms(runs, baseline, primary)
    confirm_claims = claims_apply(arms, claims)  # one confirmatory family: the claims, else the primary metrics
    if confirm_claims:
        exploratory_only(arms)
    section = claims_section(arms, read_evidence(out_dir), claims)
    records = image_records(runs)
    more = [lesions_section(arms, records[CLASS_COLUMN]), strata_section(arms, base, records[STRATUM_COLUMN])]
    document = build_document(arms, base, split_label(split, data_name), primary,
                              verdict(arms, base, primary, not confirm_claims), report_figures(arms), section,
                              [m for m in more if m is not None])
    out_dir = Path(out_dir)
    for figure in document.figures:
        write_bytes(out_dir / figure.path, figure.png)
    if section is not None:
        write_text(out_dir / "findings.md", markdown.render(Document("Findings", (section,))))
    write_text(out_dir / "summary.csv", summary_csv(arms, primary))
    write_text(out_dir / "report.md", markdown.render(document))
    html_path = out_dir / "report.html"
    write_text(html_path, html.render(document))
    logger.info("report of %d runs in %d arms written in %.1f s: %s", len(runs), len(arms),
                time.perf_counter() - start, html_path)
    return html_path
