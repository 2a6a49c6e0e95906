"""The report layout check of report_screenshot.py in a real browser, where the machine has one."""

from __future__ import annotations

import pytest

import report_screenshot as shot
from mammoseg.reporting import write_report


@pytest.mark.machine
def test_html_report_fits_a_1400_px_browser_window(tmp_path):
    """Headless Chromium lays the report out at 1400 px: nothing runs off the window, the wide tables
    scroll inside their wrappers; the same check flags the page when the wrappers stop scrolling."""
    browser = shot.find_browser()
    if browser is None:
        pytest.skip(f"no headless Chromium or Chrome on PATH (looked for {', '.join(shot.BROWSERS)})")
    page = write_report(shot.synthetic_runs(tmp_path / "runs"), tmp_path / "report")
    layout, found = shot.check(browser, page, tmp_path / "screenshot.png")
    assert not found, found
    assert layout["innerWidth"] == 1400 and any(t["scroll"] > t["client"] for t in layout["tables"])
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text(encoding="utf-8").replace("</style>", ".scroll{overflow-x:visible}</style>"))
    _, found = shot.check(browser, broken)
    assert any("scrolls sideways" in p for p in found) and any("does not scroll" in p for p in found)
