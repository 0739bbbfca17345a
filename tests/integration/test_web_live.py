"""The web over the whole real chain: a real exporter capture (softflowd NetFlow v9, five telnet
sessions) replayed to a real collector, stored by the real store, analysed by the real analyzer.
/metrics reports the collector's per-exporter counters, kernel drops and the SQLite size; About lists
every service's process; the advisory the analyzer raised links to exactly its flows."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from lxml import etree

from browser.webstack import DATA, TELNET_CAPTURE as CAPTURE, LiveStack
from support.services import wait_until

NS = {"h": "http://www.w3.org/1999/xhtml"}


def metric(body: str, name: str, **labels) -> float | None:
    """The value of one sample of the exposition text, or None when there is no such sample."""
    want = {k: str(v) for k, v in labels.items()}
    for line in body.splitlines():
        m = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in want.items()):
            return float(m.group(3))
    return None


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    ls = LiveStack(tmp_path_factory.mktemp("weblive"))
    try:
        yield ls.start()
    finally:
        rcs = ls.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


@pytest.fixture(scope="module")
def http(live):
    with httpx.Client(base_url=live.base_url, timeout=20) as c:
        yield c


def page(resp):
    assert resp.status_code == 200, resp.text[:2000]
    return etree.fromstring(resp.content)


def test_metrics_per_exporter_from_a_real_collector(http):
    totals = json.loads((DATA / CAPTURE.replace(".pcap", ".totals.json")).read_text())
    body = wait_until(lambda: (b := http.get("/metrics").text) and
                      metric(b, "flowlens_exporter_flows_decoded_total", exporter="127.0.0.1") == totals["flow_records"]
                      and b, 15)
    exporter = {"exporter": "127.0.0.1", "observation_domain": 0}
    assert metric(body, "flowlens_exporter_flows_decoded_total", **exporter) == totals["flow_records"]
    assert metric(body, "flowlens_exporter_packets_received_total", **exporter) == totals["export_packets"]
    assert metric(body, "flowlens_exporter_flows_lost_total", **exporter) == 0
    # every data set found its template (softflowd sends templates first) and none were refused
    assert metric(body, "flowlens_exporter_pending_data_sets", **exporter) == 0
    assert metric(body, "flowlens_exporter_data_sets_expired_total", **exporter) == 0
    assert "flowlens_exporter_data_sets_dropped_total{" not in body
    assert metric(body, "flowlens_store_flows_out_of_range_total") == 0
    stored = wait_until(lambda: metric(http.get("/metrics").text, "flowlens_exporter_flows_stored_total",
                                       exporter="127.0.0.1") == totals["flow_records"], 10)
    assert stored
    drops = [line for line in body.splitlines() if line.startswith("flowlens_collector_kernel_drops_total{")]
    assert drops and all(line.endswith(" 0") for line in drops), drops
    assert metric(body, "flowlens_sqlite_size_bytes") > 0
    assert metric(body, "flowlens_store_up") == 1


def test_about_lists_every_service(http):
    root = page(http.get("/about"))
    names = ["".join(td.itertext()) for td in root.xpath("//h:table[@class='procs']/h:tbody/h:tr/h:td[1]", namespaces=NS)]
    for service in ("store", "collector", "analyzer", "web"):
        assert any(n.startswith(service + "@") for n in names), names


def test_the_analyzers_advisory_links_to_its_flows(http, live):
    root = page(http.get("/advisories", params={"severity": "WARNING"}))
    items = root.xpath("//h:li[contains(@class,'advisory')]", namespaces=NS)
    telnet = [li for li in items if "Telnet" in "".join(li.xpath(".//h:p[@class='description']//text()", namespaces=NS))]
    assert len(telnet) == 1, [etree.tostring(li) for li in items]
    href = telnet[0].xpath(".//h:a[@class='flows-link']/@href", namespaces=NS)[0]
    q = parse_qs(urlparse(href).query)
    assert q["addr"] == ["127.0.0.1"] and q["port"] == ["23"] and "from" in q and "to" in q
    seen, pages = [], 0
    while href and pages < 10:
        flows = page(http.get(href))
        pages += 1
        for r in flows.xpath("//h:table[@class='flows']/h:tbody/h:tr[h:td[@class='addr']]", namespaces=NS):
            ends = [r.xpath("string(h:td[3])", namespaces=NS), r.xpath("string(h:td[4])", namespaces=NS)]
            assert "127.0.0.1:23" in ends, ends
            seen.append(r.xpath("string(h:td[1]/@title)", namespaces=NS) + " ".join(ends))
        nxt = flows.xpath("//h:a[@class='next']/@href", namespaces=NS)
        href = nxt[0] if nxt else None
    # Telnet flows of the advisory's window, each once, across the pages. The advisory counts 10 (the
    # five sessions, both ways); its filter (addr, port 23, window) also takes in the SYN -> RST attempts
    # on the closed port that the analyzer leaves out, so the explorer shows more than 10 (48 of the
    # capture's 50 when written): the link can show no fewer flows than the advisory counted.
    assert len(seen) == len(set(seen)) and 10 <= len(seen) <= 50 and pages >= 2, (len(seen), pages)
    assert live.advisory["evidence"]["flows"] == 10
