"""Web access control through real processes over HTTPS: accounts written by `flowlens users add`,
the web serving TLS with a certificate this test generates (verified by httpx against that very
certificate), sign-in and sign-out, a session cookie that a tampered byte or a new password ends,
/healthz open, /metrics behind its bearer token, failed sign-ins limited per client address, and
the banner of a web listening beyond loopback without accounts."""
from __future__ import annotations

import re
import ssl

import httpx
import pytest
from lxml import etree

from browser.webstack import WebStack
from support.services import ServiceProcess, free_port, stack_config, write_config
from support.webaccess import add_user, make_certificate

NS = {"h": "http://www.w3.org/1999/xhtml"}
TOKEN = "metrics-token-for-the-test-0123456789"
PASSWORDS = {"alice": "alice pass phrase", "victor": "victor's phrase"}
PAGES = ("/", "/flows", "/advisories", "/about")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webaccess")
    cert, key = make_certificate(tmp)
    users = tmp / "users"
    add_user(users, "alice", "operator", PASSWORDS["alice"])
    add_user(users, "victor", "viewer", PASSWORDS["victor"])
    ws = WebStack(tmp, flows=100, web={"users_file": str(users), "metrics_token": TOKEN, "tls_cert": str(cert),
                                       "tls_key": str(key), "login_max_failures": 3}).start()
    ws.users, ws.cert = users, cert
    yield ws
    rcs = ws.stop()
    assert rcs["web"] == 0, ws.web.log()


def base(site) -> str:
    return "https://" + site.cfg["web"]["listen"]


def client(site, source: str = "127.0.0.1") -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(site.cert))  # trusts exactly the test's certificate
    return httpx.Client(base_url=base(site), verify=ctx, timeout=30,
                        transport=httpx.HTTPTransport(verify=ctx, local_address=source))


def sign_in(c: httpx.Client, name: str, password: str, nxt: str = "/") -> httpx.Response:
    return c.post("/login", data={"name": name, "password": password, "next": nxt})


def h1(resp) -> str:
    return etree.fromstring(resp.content).xpath("string(//h:h1)", namespaces=NS)


def test_tls_is_served_with_the_configured_certificate(site):
    with client(site) as c:
        r = c.get("/healthz")
    assert r.status_code == 200 and r.json()["ok"] is True
    assert any("scheme=https" in line and "msg=ready" in line for line in site.web.lines)
    # plain HTTP to the same port is not served
    with pytest.raises(httpx.HTTPError):
        httpx.get("http://" + site.cfg["web"]["listen"] + "/healthz", timeout=10)
    # a client that trusts only the system's CAs refuses the self-signed certificate
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(base(site) + "/healthz", timeout=10)


def test_pages_send_strangers_to_the_sign_in_form(site):
    with client(site) as c:
        for path in PAGES:
            r = c.get(path)
            assert r.status_code == 303, (path, r.status_code)
            assert r.headers["location"].startswith("/login"), r.headers["location"]
        r = c.get("/flows?src=10.0.0.1&range=1h")
        assert r.headers["location"] == "/login?next=%2Fflows%3Fsrc%3D10.0.0.1%26range%3D1h"
        form = c.get(r.headers["location"])
        assert form.status_code == 200 and h1(form) == "Sign in"
        assert 'name="next" value="/flows?src=10.0.0.1&amp;range=1h"' in form.text
        assert c.get("/static/style.css").status_code == 200
        assert c.post("/logout").status_code == 303  # harmless without a session


def test_metrics_needs_its_bearer_token(site):
    with client(site) as c:
        r = c.get("/metrics")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        # a signed-in person's cookie is no token either
        sign_in(c, "victor", PASSWORDS["victor"])
        assert c.get("/metrics").status_code == 401
        r = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and "flowlens_store_up 1" in r.text
    assert TOKEN not in "\n".join(site.web.lines)  # the config line shows it as (set)


@pytest.mark.parametrize("name,role", [("victor", "viewer"), ("alice", "operator")])
def test_sign_in_every_page_and_sign_out(site, name, role):
    with client(site) as c:
        r = sign_in(c, name, PASSWORDS[name], "/advisories")
        assert r.status_code == 303 and r.headers["location"] == "/advisories"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
        for path in PAGES:
            page = c.get(path)
            assert page.status_code == 200, (path, page.status_code)
            root = etree.fromstring(page.content)
            assert root.xpath("string(//h:span[@class='who'])", namespaces=NS) == f"{name} ({role})"
            assert not root.xpath("//h:p[@class='banner']", namespaces=NS)
        out = c.post("/logout")
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert c.get("/").status_code == 303


def test_wrong_password_and_forged_cookies_are_refused(site):
    with client(site) as c:
        r = sign_in(c, "alice", "not her password")
        assert r.status_code == 401 and "Wrong name or password." in r.text and "set-cookie" not in r.headers
        r = sign_in(c, "nobody", "whatever")
        assert r.status_code == 401 and "Wrong name or password." in r.text
        r = sign_in(c, "alice", PASSWORDS["alice"])
        value = r.cookies["flowlens_session"]
    payload, mac = value.split(".")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    for forged in (flipped + "." + mac, payload + "." + mac[::-1], "", "x.y", value + "x"):
        with client(site) as c:
            c.cookies.set("flowlens_session", forged)
            assert c.get("/").status_code == 303, forged
    with client(site) as c:
        c.cookies.set("flowlens_session", value)
        assert c.get("/").status_code == 200  # the genuine one still works


def test_a_new_password_ends_the_old_sessions(site):
    with client(site) as old:
        assert sign_in(old, "victor", PASSWORDS["victor"]).status_code == 303
        assert old.get("/about").status_code == 200
        add_user(site.users, "victor", "viewer", "a brand new phrase")
        try:
            # the web reads the file again within a second: the old cookie stops working
            from support.services import wait_until
            wait_until(lambda: old.get("/about").status_code == 303, timeout_s=10, interval_s=0.2)
            with client(site) as new:
                assert sign_in(new, "victor", PASSWORDS["victor"]).status_code == 401
                assert sign_in(new, "victor", "a brand new phrase").status_code == 303
        finally:
            add_user(site.users, "victor", "viewer", PASSWORDS["victor"])


def test_failed_sign_ins_are_limited_per_address(site):
    # from 127.0.0.2: the limit (3 in 5 min here) stops that address, not 127.0.0.1
    with client(site, "127.0.0.2") as c:
        codes = [sign_in(c, "alice", f"guess {i}").status_code for i in range(3)]
        assert codes == [401, 401, 401]
        r = sign_in(c, "alice", PASSWORDS["alice"])  # even the right password waits now
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "Too many failed sign-ins from your address (127.0.0.2)" in r.text
        # an untrusted peer's X-Forwarded-For is ignored: still 127.0.0.2
        assert c.post("/login", data={"name": "alice", "password": PASSWORDS["alice"]},
                      headers={"X-Forwarded-For": "127.0.0.9"}).status_code == 429
    with client(site) as c:
        # a proxy on 127.0.0.1 (trusted, uvicorn's proxy headers) speaking for 127.0.0.2: the same limit
        r = c.post("/login", data={"name": "alice", "password": PASSWORDS["alice"]},
                   headers={"X-Forwarded-For": "127.0.0.2"})
        assert r.status_code == 429, r.status_code
        assert sign_in(c, "alice", PASSWORDS["alice"]).status_code == 303
        body = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    failed = re.search(r"^flowlens_web_login_failures_total (\d+)$", body, re.M)
    refused = re.search(r"^flowlens_web_login_limited_total (\d+)$", body, re.M)
    assert failed and int(failed.group(1)) >= 3 and refused and int(refused.group(1)) >= 1, body[:3000]


def test_beyond_loopback_without_accounts_warns_and_shows_a_banner(tmp_path):
    port = free_port()
    cfg = stack_config(tmp_path, web={"listen": f"0.0.0.0:{port}"})
    web = ServiceProcess("web", write_config(tmp_path / "flowlens.yaml", cfg)).start()
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/about", timeout=30)  # 503: no store; the banner still shows
        banner = etree.fromstring(r.content).xpath("string(//h:p[@class='banner'])", namespaces=NS)
        assert "listens on 0.0.0.0:" in banner and "web.users_file" in banner, r.text[:2000]
        assert any("without accounts" in line and "level=warning" in line for line in web.lines), web.log()
    finally:
        assert web.stop() == 0
