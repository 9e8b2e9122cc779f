"""The page-test harness itself: a real Chromium renders a local page, events run, and a request that leaves the
machine is refused and reported (so the map and search page tests can assert that their pages work offline)."""
from __future__ import annotations

from browser import shot


def test_page_runs_script_and_reports_requests_off_the_machine(page, tmp_path):
    html = tmp_path / "p.html"
    html.write_text("<html><body><input id=q><div id=o></div><script>"
                    "document.getElementById('q').oninput = e => document.getElementById('o').textContent = e.target.value;"
                    "</script><img src='https://cdn.example.invalid/x.png'></body></html>")
    page.goto(html.as_uri())
    page.fill("#q", "hello")
    assert page.text_content("#o") == "hello"
    assert any(e.startswith("network: https://cdn.example.invalid") for e in page.errors), page.errors
    assert shot(page, "harness", tmp_path).stat().st_size > 0
