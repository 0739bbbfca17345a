"""Debian's chromium driven by Playwright, for the browser tests (tests/browser): where it is, how it
starts, a page of its own on a web's base URL, and screenshots under tests/artifacts/ (look at them)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = "/usr/bin/chromium"
NO_CHROMIUM = "Debian's chromium is not installed at /usr/bin/chromium (make debs installs it)"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# headless, and nothing the browser would fetch for itself on the side (updates, sync, QUIC probes)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic"]
VIEWPORT = {"width": 1360, "height": 900}


def chromium_installed() -> bool:
    return os.access(CHROMIUM, os.X_OK)


@contextmanager
def launched_chromium() -> Iterator:
    """A Playwright Browser on Debian's chromium, closed on the way out."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def opened_page(browser, base_url: str, **options) -> Iterator:
    """A page in a context of its own (no cookies from another test) on ``base_url``; ``options`` go
    to new_context (a viewport, ignore_https_errors)."""
    ctx = browser.new_context(**{"viewport": VIEWPORT, "base_url": base_url, **options})
    try:
        yield ctx.new_page()
    finally:
        ctx.close()


def well_formed(page) -> None:
    """The page parsed as XHTML (a parse error shows as a parsererror element, not as an exception)."""
    assert page.locator("parsererror").count() == 0, page.content()[:2000]


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
