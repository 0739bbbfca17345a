"""The browser tests' chromium (one per module) and a fresh page on the module's ``stack`` fixture's
web; without Debian's chromium every test here is skipped, saying so.

Not one for the session: Playwright's sync API keeps an asyncio loop running in the main thread
while it is open, and every later test that calls asyncio.run() (the web's unit tests) then fails
with "cannot be called from a running event loop"."""
from __future__ import annotations

import pytest

from support.browser import NO_CHROMIUM, chromium_installed, launched_chromium, opened_page


@pytest.fixture(scope="module")
def browser():
    if not chromium_installed():
        pytest.skip(NO_CHROMIUM)
    with launched_chromium() as b:
        yield b


@pytest.fixture
def page(browser, stack):
    """A page on ``stack.base_url``; a module whose web is elsewhere (HTTPS) defines its own."""
    with opened_page(browser, stack.base_url) as pg:
        yield pg
