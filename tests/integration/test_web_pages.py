"""The web against a real store process fed on the real bus: every page is well-formed XHTML with
the right content type, hostile strings from bus events come out escaped, the flow explorer
filters and pages, bad input is a 400 in words, and /metrics and /healthz answer."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from lxml import etree

from browser.webstack import HOSTILE, SCAN_SOURCE, TOP_TALKER_DESCRIPTION, WebStack, synthetic_flows

NS = {"h": "http://www.w3.org/1999/xhtml", "svg": "http://www.w3.org/2000/svg"}
XHTML = "application/xhtml+xml; charset=utf-8"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    ws = WebStack(tmp_path_factory.mktemp("webstack"), flows=300).start()
    yield ws
    rcs = ws.stop()
    assert rcs.get("web") == 0, ws.web.log() if ws.web else rcs


@pytest.fixture(scope="module")
def http(stack):
    with httpx.Client(base_url=stack.base_url, timeout=20) as c:
        yield c


def xhtml(resp, status=200):
    assert resp.status_code == status, resp.text[:2000]
    assert resp.headers["content-type"] == XHTML
    root = etree.fromstring(resp.content)  # any well-formedness error raises here
    assert root.tag == "{http://www.w3.org/1999/xhtml}html"
    assert resp.text.lstrip().startswith("<?xml") and "<!DOCTYPE html>" in resp.text
    assert not root.xpath("//h:script", namespaces=NS)
    return root


def texts(root, xpath):
    return ["".join(e.itertext()).strip() for e in root.xpath(xpath, namespaces=NS)]


def flow_table(root):
    return root.xpath("//h:table[@class='flows']/h:tbody/h:tr[h:td[@class='addr']]", namespaces=NS)


def test_dashboard(http, stack):
    root = xhtml(http.get("/"))
    assert texts(root, "//h:h1") == ["Dashboard"]
    meta = root.xpath("//h:meta[@http-equiv='refresh']", namespaces=NS)
    assert meta and meta[0].get("content") == str(stack.cfg["web"].get("refresh", 30))
    assert len(root.xpath("//svg:svg//svg:polyline", namespaces=NS)) == 2  # bps and pps
    assert root.xpath("//svg:text[@class='ylabel']", namespaces=NS) and root.xpath("//svg:text[@class='xlabel']", namespaces=NS)
    tops = root.xpath("//h:table[@class='top']", namespaces=NS)
    assert len(tops) == 3
    sources = texts(tops[0], ".//h:td[@class='key']")
    assert SCAN_SOURCE in sources and len(sources) == 10  # 11 sources, the top 10 shown
    assert set(texts(tops[2], ".//h:td[@class='key']")) == {"TCP", "UDP", "ICMP"}
    assert root.xpath("//h:span[@class='bar']", namespaces=NS)
    badges = {e.get("href"): "".join(e.itertext()) for e in root.xpath("//h:ul[@class='counts']//h:a", namespaces=NS)}
    assert "1 CRITICAL" in " ".join(badges["/advisories?severity=CRITICAL"].split())
    assert "1 WARNING" in " ".join(badges["/advisories?severity=WARNING"].split())
    assert "0 INFO" in " ".join(badges["/advisories?severity=INFO"].split())  # the INFO one is resolved
    assert root.xpath("//h:p[@id='collector-health']", namespaces=NS)
    # the top tables cover the last 10 minutes, and so do the flows their links open
    link = tops[0].xpath(f".//h:a[normalize-space()='{SCAN_SOURCE}']/@href", namespaces=NS)[0]
    assert parse_qs(urlparse(link).query) == {"src": [SCAN_SOURCE], "range": ["10m"]}
    linked = xhtml(http.get(link))
    assert len(flow_table(linked)) == 20
    assert texts(linked, "//h:nav[@class='range']//h:a[@class='here']") == ["10 min"]


def test_pages_say_where_their_time_went(http):
    """Server-Timing: the dashboard's store answers and its render, inside the whole request."""
    from flowlens_web.timing import parse
    parts = parse(http.get("/").headers["server-timing"])
    assert {"lane", "store", "resume", "render", "app"} <= set(parts)
    assert 0 < parts["store"] + parts["render"] <= parts["app"]
    assert "store" not in parse(http.get("/flows?protocol=bogus").headers["server-timing"])  # a 400 asks nothing
    # a history page is built on its lane's thread: its render still counts in the request's record
    flows = parse(http.get("/flows?range=24h").headers["server-timing"])
    assert flows["render"] > 0 and flows["store"] > 0 and flows["render"] + flows["store"] <= flows["app"]


def test_head_answers_like_get(http):
    for path in ("/", "/flows", "/advisories", "/about", "/healthz", "/metrics"):
        resp = http.head(path)
        assert resp.status_code == 200, path
        assert resp.content == b""
    assert http.head("/").headers["content-type"] == XHTML


def test_advisories_escape_hostile_text(http):
    resp = http.get("/advisories")
    root = xhtml(resp)
    assert "<script>" not in resp.text
    titles = texts(root, "//h:strong[@class='title']")
    assert titles[0] == "Port scan " + HOSTILE  # CRITICAL first, the text intact after parsing
    assert titles[1] == "10.0.0.1 sends most bytes"
    assert len(titles) == 2  # the resolved one only on request
    descriptions = texts(root, "//h:p[@class='description']")
    assert HOSTILE in descriptions[0]
    assert descriptions[1] == TOP_TALKER_DESCRIPTION  # each advisory in its own analyzer's words
    assert "top_talkers" in texts(root, "//h:p[@class='meta']")[1]
    resolved = xhtml(http.get("/advisories", params={"resolved": "1"}))
    assert "Exporter came back" in texts(resolved, "//h:strong[@class='title']")
    only_warn = xhtml(http.get("/advisories", params={"severity": "WARNING"}))
    assert texts(only_warn, "//h:strong[@class='title']") == ["10.0.0.1 sends most bytes"]
    xhtml(http.get("/advisories", params={"severity": "LOUD"}), 400)


def test_advisory_link_shows_its_flows(http):
    root = xhtml(http.get("/advisories"))
    href = root.xpath("//h:a[@class='flows-link']", namespaces=NS)[0].get("href")
    assert parse_qs(urlparse(href).query)["src"] == [SCAN_SOURCE]
    flows = xhtml(http.get(href))
    rows = flow_table(flows)
    assert len(rows) == 20  # page_size; the scanner has 30 flows
    assert all(r.xpath("h:td[@class='addr'][1]", namespaces=NS)[0].xpath("string()").startswith(SCAN_SOURCE + ":") for r in rows)


def test_flow_filters_narrow_the_table(http):
    everything = flow_table(xhtml(http.get("/flows")))
    assert len(everything) == 20
    udp = xhtml(http.get("/flows", params={"protocol": "udp", "port": "53", "dst": "10.1.0.0/24"}))
    rows = flow_table(udp)
    assert rows and all("".join(r.xpath("h:td[5]//text()", namespaces=NS)) == "UDP" for r in rows)
    assert all(r.xpath("string(h:td[6])", namespaces=NS) == "dns" for r in rows)
    none = flow_table(xhtml(http.get("/flows", params={"addr": "192.168.99.0/24"})))
    assert none == []
    bytes_cell = udp.xpath("//h:table[@class='flows']//h:td[@class='num'][1]", namespaces=NS)[0]
    assert bytes_cell.get("title").endswith("bytes")  # exact value on hover


def test_next_and_previous_keep_filters(http, stack):
    seen = []
    root = xhtml(http.get("/flows", params={"protocol": "tcp", "range": "1h"}))
    pages = 0
    while True:
        pages += 1
        rows = flow_table(root)
        seen += [r.xpath("string(h:td[1]/@title)", namespaces=NS) + r.xpath("string(h:td[3])", namespaces=NS)
                 + r.xpath("string(h:td[4])", namespaces=NS) for r in rows]
        nxt = root.xpath("//h:a[@class='next']/@href", namespaces=NS)
        if not nxt:
            break
        q = parse_qs(urlparse(nxt[0]).query)
        assert q["protocol"] == ["tcp"] and q["range"] == ["1h"] and q["dir"] == ["next"]
        last_root = root
        root = xhtml(http.get(nxt[0]))
        assert pages < 20
    assert pages >= 2
    tcp = int((synthetic_flows(stack.now_ms, stack.n_flows)["protocol"] == 6).sum())
    assert len(seen) == len(set(seen)) == tcp  # every TCP flow once, across the pages
    prev = root.xpath("//h:a[@class='prev']/@href", namespaces=NS)
    assert prev
    back = xhtml(http.get(prev[0]))
    assert [r.xpath("string(h:td[3])", namespaces=NS) for r in flow_table(back)] == \
           [r.xpath("string(h:td[3])", namespaces=NS) for r in flow_table(last_root)]


@pytest.mark.parametrize("params,words", [
    ({"src": "10.0.0.300"}, "is not an IPv4/IPv6 address"), ({"port": "http"}, "not a number"),
    ({"protocol": "<b>&amp;"}, "not a protocol name"), ({"range": "custom", "since": "yesterday"}, "is not a time"),
    ({"range": "forever"}, "range 'forever' is not a span"),
    # out-of-range times once overflowed further on (msgpack, timestamp arithmetic) and gave a 500
    ({"range": "custom", "since": "99999999999999999999"}, "too far in the future"),
    ({"range": "custom", "since": "999999999999d"}, "before 1970"),
    ({"range": "custom", "since": "-9223372036854775809"}, "before 1970"),
    ({"range": "custom", "since": "1h", "until": "99999999999999999999"}, "too far in the future"),
    ({"range": "custom", "since": "9" * 400 + "h"}, "before 1970"),
    ({"range": "custom", "since": "9" * 400}, "too many digits"),
])
def test_bad_filter_is_400_in_words(http, params, words):
    root = xhtml(http.get("/flows", params=params), 400)
    assert words in texts(root, "//h:p[@class='error']")[0]
    assert root.xpath("//h:form[@action='/flows']", namespaces=NS)  # the form is shown again


def test_about(http):
    root = xhtml(http.get("/about"))
    names = texts(root, "//h:table[@class='procs']/h:tbody/h:tr/h:td[1]")
    assert any(n.startswith("web@") for n in names) and len(names) >= 2
    keys = texts(root, "//h:table[contains(@class,'config')]//h:code")
    assert "collector.netflow_port" in keys and "storage.sqlite_retention" in keys and "analysis.scan_threshold" in keys
    status = dict(zip(texts(root, "//h:table[@class='kv']/h:tbody/h:tr/h:th"),
                      texts(root, "//h:table[@class='kv']/h:tbody/h:tr/h:td")))
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    assert iso.match(status["ring.newest_time"]) and iso.match(status["ring.oldest_time"]), status
    assert status["ring.duration_s"] == "10 min" and status["sqlite.retention_s"] == "3 d", status
    assert not [v for v in status.values() if v == "None" or re.search(r"\d T$", v)], status


def test_metrics_and_healthz(http):
    http.get("/")
    resp = http.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    body = resp.text
    assert 'flowlens_web_request_duration_seconds_count{route="/",status="2xx"}' in body
    assert "flowlens_store_up 1" in body
    assert "flowlens_bus_gaps_total 0" in body and "flowlens_ring_fill_ratio " in body
    # per-exporter samples come from a collector's counters (test_web_live has one); here only the families
    assert "# TYPE flowlens_exporter_flows_decoded_total counter" in body
    assert not [l for l in body.splitlines() if l.startswith("flowlens_exporter_flows_decoded_total{")]
    assert 'flowlens_exporter_flows_stored_total{exporter="192.0.2.10"} 300' in body  # the bus-fed flows
    size = [l for l in body.splitlines() if l.startswith("flowlens_sqlite_size_bytes ")]
    assert len(size) == 1 and int(size[0].split()[1]) > 0, size
    for line in body.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2
    h = http.get("/healthz")
    assert h.status_code == 200 and h.json()["ok"] is True


def test_not_found_is_xhtml(http):
    root = xhtml(http.get("/no/such/page"), 404)
    assert texts(root, "//h:h1") == ["Page not found"]
