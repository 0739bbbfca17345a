"""Headless Chromium (Playwright, Debian's chromium) against the real store and web processes over
HTTPS with a certificate the test makes: a stranger is sent to the sign-in form and back to the
page asked for once signed in, a wrong password is refused in words, the header names the account
and its role, Log out ends the session, and a web listening beyond loopback without accounts shows
its banner. Screenshots go to tests/artifacts/."""
from __future__ import annotations

import pytest

from browser.webstack import WebStack
from support.browser import opened_page, screenshot, well_formed
from support.services import ServiceProcess, free_port, stack_config, write_config
from support.webaccess import add_user, make_certificate

PASSWORDS = {"olga": "operator's phrase", "vera": "viewer's phrase"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browseraccess")
    cert, key = make_certificate(tmp)
    users = tmp / "users"
    add_user(users, "olga", "operator", PASSWORDS["olga"])
    add_user(users, "vera", "viewer", PASSWORDS["vera"])
    ws = WebStack(tmp, flows=100, web={"users_file": str(users), "tls_cert": str(cert), "tls_key": str(key)}).start()
    yield ws
    assert ws.stop()["web"] == 0


@pytest.fixture
def page(browser, site):
    # the certificate is the test's own, not one a CA signed: httpx checks it for real in
    # tests/integration/test_web_access.py; here the browser is told to accept it
    with opened_page(browser, "https://" + site.cfg["web"]["listen"], ignore_https_errors=True) as pg:
        yield pg


def sign_in(page, name: str, password: str):
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("form.login button[type=submit]")


@pytest.mark.parametrize("name,role", [("vera", "viewer"), ("olga", "operator")])
def test_sign_in_lands_on_the_page_asked_for_and_sign_out(page, name, role):
    resp = page.goto("/flows?range=1h&protocol=tcp")
    assert resp.url.endswith("/login?next=%2Fflows%3Frange%3D1h%26protocol%3Dtcp")
    well_formed(page)
    assert page.locator("h1").inner_text() == "Sign in"
    sign_in(page, name, "not the password")
    assert page.locator("p.error").inner_text() == "Wrong name or password."
    assert page.locator("input[name=name]").evaluate("e => e.value") == name
    screenshot(page, "login-refused.png")
    sign_in(page, name, PASSWORDS[name])
    assert page.url.endswith("/flows?range=1h&protocol=tcp")
    assert page.locator("h1").inner_text() == "Flow explorer"
    assert page.locator("span.who").inner_text() == f"{name} ({role})"
    assert page.locator("table.flows tbody tr:has(td.addr)").count() > 0
    screenshot(page, f"signed-in-{role}.png")
    for path, heading in (("/", "Dashboard"), ("/advisories", "Advisories"), ("/about", "About this FlowLens")):
        page.goto(path)
        assert page.locator("h1").first.inner_text() == heading
        assert page.locator("span.who").inner_text() == f"{name} ({role})"
    with page.expect_navigation():
        page.click("form.account button")
    assert page.url.endswith("/login") and page.locator("h1").inner_text() == "Sign in"
    page.goto("/")
    assert page.locator("h1").inner_text() == "Sign in"  # the session is gone


def test_banner_beyond_loopback_without_accounts(browser, tmp_path):
    port = free_port()
    cfg = stack_config(tmp_path, web={"listen": f"0.0.0.0:{port}"})
    web = ServiceProcess("web", write_config(tmp_path / "flowlens.yaml", cfg)).start()
    try:
        with opened_page(browser, f"http://127.0.0.1:{port}", viewport={"width": 1360, "height": 700}) as pg:
            for path in ("/", "/about", "/no-such-page"):
                pg.goto(path)
                banner = pg.locator("p.banner")
                assert banner.count() == 1 and "web.users_file" in banner.inner_text(), path
                assert pg.locator("form.account").count() == 0
            screenshot(pg, "banner-no-accounts.png")
    finally:
        assert web.stop() == 0
