"""Hostile input on every page of the web, through real processes: a store and a collector fed
with a replayed IPFIX capture (its exporter an IPv6 address), known flows and an advisory on the
real bus, and the web. Every route gets each of its query parameters with hostile values (empty,
10,000 characters, %ff, NUL, huge and non-finite numbers, '²' that isdigit() takes and int() does
not, IPv4-mapped and scoped IPv6 addresses, CIDRs with bad prefixes, years 1969 and 10000, ...), path
parameters with dots, slashes and escapes, and the POST forms garbage bodies and wrong content
types; with accounts on, the sign-in form, session cookies, the /metrics token and an operator's
forms get the same. Every answer is below 500, a 400 names the parameter in words, and the web
keeps serving (and exits 0 when stopped)."""
from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from browser.webstack import BusPublisher, WebStack, advisory, synthetic_flows
from flowmodel import bus
from flowmodel.replay import main as replay_main
from support.services import ServiceProcess, ServiceStack, wait_until
from support.webaccess import add_user

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "pmacct-ta_ipfix_cisco-v6exporter-mpls-501.pcap"
RANGE = ("range", "from", "to", "since", "until")
FLOW_FILTERS = ("src", "dst", "addr", "port", "protocol", "exporter", "input_if", "output_if", "src_as", "dst_as",
                "as", "dscp")
EXPLORE_FILTERS = FLOW_FILTERS + ("src_port", "dst_port", "src_country", "dst_country", "country")
# route -> (the query it needs to be a normal page, the parameters it reads)
GET_ROUTES = {
    "/": ("", RANGE),
    "/flows": ("", FLOW_FILTERS + ("order", "cursor", "dir") + RANGE),
    "/flows.csv": ("", FLOW_FILTERS + ("order", "cursor", "dir", "scope") + RANGE),
    "/top.csv": ("by=src", ("by", "metric", "limit") + RANGE),
    "/advisories": ("", ("severity", "state", "resolved") + RANGE),
    "/explore": ("", ("format", "by", "metric", "top", "sankey_from", "sankey_to") + EXPLORE_FILTERS + RANGE),
    "/explore.csv": ("", ("by", "metric", "top") + EXPLORE_FILTERS + RANGE),
    "/report": ("", ("day",)),
    "/exporters/127.0.0.1": ("", RANGE),
    "/exporters/127.0.0.1/if/1": ("", RANGE),
    "/login": ("", ("next",)),
    "/about": ("", ()), "/metrics": ("", ()), "/healthz": ("", ()), "/exporters": ("", ()),
}
# query values, percent-encoded as sent
VALUES = ("", quote("x" * 10_000), "%ff", "a%00b", "-1", "1e309", "99999999999999999999", "9" * 5000, "NaN",
          "-inf", "%C2%B2", "%EF%BC%93", "::ffff:10.0.0.1", "fe80::1%25eth0", "10.0.0.0/33", "2001:db8::/-1",
          "65536", "1969-12-31", "10000-01-01T00:00", "0-65535", "%2F..%2F..%2Fetc%2Fpasswd", "%0d%0aX-A:1")
RANGES = ("from=2026-12-06T03:00Z&to=2026-12-06T01:00Z", "from=1969-01-01&to=1970-01-02",
          "from=9999-12-30&to=10000-01-01", "range=custom&since=1e309", "range=24h&from=1h", "from=nan&to=inf",
          "range=custom&since=-1&until=99999999999999999999", "from=%C2%B2&to=%C2%B9")
PATH_VALUES = ("..", "%2e%2e", "1.2.3.4%2F24", "::ffff:127.0.0.1", "fe80::1%25eth0", "%ff", "%00", "x" * 5000,
               "999.1.1.1", "-1", "%C2%B2", "4294967296", "99999999999999999999")
FORM = "application/x-www-form-urlencoded"
PASSWORD = "correct horse battery"
POST_ROUTES = {"/advisories/ack": ("key", "episode", "comment"),
               "/silences": ("analyzer", "subject", "address", "network", "duration", "comment"),
               "/silences/remove": ("id",), "/login": ("name", "password", "next"), "/logout": ()}
POST_VALUES = ("", "%ff", "a%00b", "-1", "1e309", "99999999999999999999", "9" * 400 + "d", "%C2%B2",
               "10.0.0.0/33", "fe80::1%25eth0", quote("x" * 3000))
# a silence's free text takes any value, and each silence kept costs the store's confirmation (0.4 s)
SILENCE_TEXT = ("analyzer", "subject", "comment")
TEXT_VALUES = ("a%00b", "%ff", quote("x" * 3000))


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    stack = ServiceStack(tmp_path_factory.mktemp("hostile"), ["store", "collector"], web={"page_size": 20},
                         store={"sqlite_retention": "3650d", "rollup_retention": "3650d"})
    stack.start()
    now = int(time.time() * 1000)
    publisher = BusPublisher(stack.cfg["bus"]["publish_endpoint"])
    client = stack.client()
    proc = None
    try:
        def advisory_arrived():  # the PUB delivers once the store's subscription reached it
            publisher.event(bus.TOPIC_ADVISORY, advisory(now))
            return client.advisories(include_resolved=True)
        wait_until(advisory_arrived, timeout_s=15, interval_s=0.2)
        publisher.flows(synthetic_flows(now, 300))
        assert replay_main([str(CAPTURE), "--to", f"127.0.0.1:{stack.ipfix_port}", "--speed", "max",
                            "--no-progress"]) == 0
        wait_until(lambda: client.status()["ring"]["fill"] > 300, timeout_s=15)
        proc = ServiceProcess("web", stack.config_path).start()
        with httpx.Client(base_url="http://" + stack.cfg["web"]["listen"], timeout=30) as http:
            yield http
            assert http.get("/healthz").status_code == 200  # still serving, the store still answering
    finally:
        client.close()
        publisher.close()
        rc = proc.stop() if proc else 0
        stack.stop()
    assert rc == 0, proc.log()


def answered(resp: httpx.Response, *names: str) -> None:
    """Below 500; a 400 says which parameter (one of ``names``) was wrong."""
    where = f"{resp.request.method} {str(resp.request.url)[:300]}"
    assert resp.status_code < 500, f"{where}: {resp.status_code}\n{resp.text[-1500:]}"
    if resp.status_code == 400 and names:
        assert any(n in resp.text for n in names), f"{where}: 400 naming none of {names}\n{resp.text[-1500:]}"


def query(base: str, name: str, value: str) -> str:
    kept = [p for p in base.split("&") if p and p.split("=")[0] != name]
    return "&".join([*kept, f"{name}={value}"])


@pytest.mark.parametrize("path", list(GET_ROUTES))
def test_every_parameter_with_hostile_values(web, path):
    base, params = GET_ROUTES[path]
    answered(web.get(f"{path}?{base}&unknown=1&unknown=2&%ff=%ff&%00="))
    for name in params:
        for value in VALUES:
            answered(web.get(f"{path}?{query(base, name, value)}"), name)
        answered(web.get(f"{path}?{base}&{name}=1&{name}=bogus&{name}="), name)  # repeated


@pytest.mark.parametrize("path", [p for p, (_b, params) in GET_ROUTES.items() if "range" in params])
def test_ranges_backwards_before_1970_and_past_9999(web, path):
    base = GET_ROUTES[path][0]
    for rng in RANGES:
        answered(web.get(f"{path}?{base}&{rng}"), "range", "from", "to", "since", "until")


def test_path_parameters(web):
    for value in PATH_VALUES:
        answered(web.get(f"/exporters/{value}"), "exporter")
        answered(web.get(f"/exporters/{value}/if/1"), "exporter")
        answered(web.get(f"/exporters/127.0.0.1/if/{value}"), "ifIndex")
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/%ff", "/static/%00",
                 "/%ff", "/%00", "/x" * 2000, "//", "/flows/", "/flows/../about"):
        answered(web.get(path))


@pytest.mark.parametrize("path", list(POST_ROUTES))
def test_forms_with_garbage(web, path):
    for headers, body in (({}, b""), ({"content-type": FORM}, b""),
                          ({"content-type": FORM}, b"%ff=%ff&\xff\xfe=\x00"),
                          ({"content-type": "application/json"}, b'{"key": 1}'),
                          ({"content-type": "multipart/form-data; boundary=x"}, b"--x--"),
                          ({"content-type": FORM}, b"comment=" + b"x" * 20_000),
                          ({"content-type": FORM}, b"&".join(b"k%d=1" % i for i in range(100))),
                          ({"content-type": FORM, "origin": "http://elsewhere.example"}, b"id=1")):
        answered(web.post(path, content=body, headers=headers))
    for name in POST_ROUTES[path]:
        for value in TEXT_VALUES if path == "/silences" and name in SILENCE_TEXT else POST_VALUES:
            body = f"analyzer=scan&{name}={value}" if path == "/silences" and name != "analyzer" else f"{name}={value}"
            answered(web.post(path, content=body.encode(), headers={"content-type": FORM}))
    for method in ("PUT", "DELETE", "PATCH"):
        answered(web.request(method, path))


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """A web with accounts (an operator signed in) and a /metrics token, on a store fed known flows."""
    tmp = tmp_path_factory.mktemp("hostile-accounts")
    add_user(tmp / "users", "op", "operator", PASSWORD)
    stack = WebStack(tmp, flows=100, web={"users_file": str(tmp / "users"), "metrics_token": "t" * 40,
                                          "login_max_failures": 1000}).start()
    try:
        with httpx.Client(base_url=stack.base_url, timeout=30) as anon, \
                httpx.Client(base_url=stack.base_url, timeout=30) as operator:
            assert operator.post("/login", data={"name": "op", "password": PASSWORD}).status_code == 303
            yield anon, operator
            assert anon.get("/healthz").status_code == 200
    finally:
        rcs = stack.stop()
    assert rcs.get("web") == 0, stack.web.log()


def test_sign_in_sessions_and_token_with_garbage(signed):
    anon, _operator = signed
    for name in ("name", "password", "next"):
        for value in POST_VALUES + ("//elsewhere.example", "/%5celsewhere", "%0d%0aSet-Cookie:x=1"):
            answered(anon.post("/login", content=f"name=op&password=wrong&{name}={value}".encode(),
                               headers={"content-type": FORM}))
            answered(anon.get(f"/login?{name}={value}"))
    for body in (b"%ff=%ff&\xff\xfe=\x00", b"&".join(b"k%d=1" % i for i in range(100)), b"password=" + b"x" * 9000):
        answered(anon.post("/login", content=body, headers={"content-type": FORM}))
    answered(anon.post("/login", content=b'{"name": "op"}', headers={"content-type": "application/json"}))
    for cookie in (b"flowlens_session=", b"flowlens_session=%ff", b"flowlens_session=a.b.c", b"flowlens_session=\xff.\xfe",
                   b"flowlens_session=" + b"x" * 6000, b"=;;;=", b"flowlens_session"):
        for path in ("/", "/flows", "/metrics", "/silences"):
            answered(anon.get(path, headers={"cookie": cookie}))
    for token in (b"Bearer", b"Bearer \xff", b"Basic eA==", b"Bearer " + b"x" * 8000):
        answered(anon.get("/metrics", headers={"authorization": token}))


def test_operator_forms_with_garbage(signed):
    _anon, operator = signed
    for path in ("/advisories/ack", "/silences", "/silences/remove"):
        for headers, body in (({"content-type": FORM}, b"&".join(b"k%d=1" % i for i in range(100))),
                              ({"content-type": FORM}, b"id=" + b"x" * 9000),
                              ({"content-type": "text/plain"}, b"id=1"),
                              ({"content-type": FORM, "origin": "null"}, b"id=1"),
                              ({"content-type": FORM, "sec-fetch-site": "cross-site"}, b"id=1")):
            answered(operator.post(path, content=body, headers=headers))
    for name, value in (("episode", "1e309"), ("episode", "%C2%B2"), ("key", "%ff"), ("duration", "9" * 400 + "d"),
                        ("network", "10.0.0.0/33"), ("address", "fe80::1%25eth0"), ("id", "a%00b")):
        body = f"analyzer=scan&key=x&{name}={value}"
        for path in ("/advisories/ack", "/silences", "/silences/remove"):
            answered(operator.post(path, content=body.encode(), headers={"content-type": FORM}))
