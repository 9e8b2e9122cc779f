"""A real headless browser for the tests of pages embstore writes or serves (the map, the search page).

Debian's Chromium (``apt-get install chromium``; `.ci/run` installs it) driven by Playwright (the ``serve`` extra
brings ``playwright``; its own browser download is never used, so nothing is fetched at run time). Tests that need it
take the ``page`` fixture, which is skipped with the reason when either part is missing. Every console error and
uncaught page error is collected in ``page.errors`` so a test can assert there were none, and ``shot(page, name)``
writes a screenshot under ``EMBSTORE_TEST_ARTIFACTS`` (default: pytest's tmp folder) as a test artefact.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest


def chromium_path() -> str | None:
    return os.environ.get("EMBSTORE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")  # not session: no browser driver stays alive beside the other modules' forks
def browser() -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[serve]')")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh page with no network beyond 127.0.0.1 (a request elsewhere is aborted and counted as an error)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(f"console: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(f"pageerror: {e}"))

    def offline(route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:", "about:", "http://127.0.0.1", "http://localhost")):
            route.continue_()
        else:
            pg.errors.append(f"network: {url}")
            route.abort()

    pg.route("**/*", offline)
    try:
        yield pg
    finally:
        context.close()


def shot(pg: Any, name: str, folder: Path) -> Path:
    """Write a full-page screenshot ``name.png`` under EMBSTORE_TEST_ARTIFACTS (or ``folder``)."""
    out = Path(os.environ.get("EMBSTORE_TEST_ARTIFACTS") or folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    return path
