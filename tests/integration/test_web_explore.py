"""Explore, exporter and interface pages against a real store and web as processes, fed on the real
bus: every dimension's table totals equal `flowlens query top` over the same window, a row's links
narrow the view and open the flow explorer on that key only, the CSV is the table, interface names
and speeds come from the store's names (config and options data), and bad parameters are 400s."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest
from lxml import etree

from browser.explorestack import EDGE, explore_stack

NS = {"h": "http://www.w3.org/1999/xhtml", "svg": "http://www.w3.org/2000/svg"}
DIMENSIONS = ("src", "dst", "pair", "port", "src_port", "dst_port", "protocol", "exporter", "in_if", "out_if",
              "src_as", "dst_as", "dscp", "src_country", "dst_country")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    ws = explore_stack(tmp_path_factory.mktemp("explore"))
    yield ws
    rcs = ws.stop()
    assert rcs.get("web") == 0, ws.web.log() if ws.web else rcs


@pytest.fixture(scope="module")
def http(stack):
    with httpx.Client(base_url=stack.base_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def window(stack):
    """A fixed window holding every flow: from/to on whole minutes."""
    since = (stack.now_ms - 3_600_000) // 60_000 * 60_000
    until = (stack.now_ms // 60_000 + 2) * 60_000
    iso = lambda ms: np.datetime_as_string(np.datetime64(ms, "ms"), unit="m") + "Z"  # noqa: E731
    return {"since": since, "until": until, "from": iso(since), "to": iso(until)}


def page(resp, status=200):
    assert resp.status_code == status, resp.text[:3000]
    root = etree.fromstring(resp.content)
    assert not root.xpath("//h:script", namespaces=NS)
    return root


def text(e) -> str:
    return " ".join("".join(e.itertext()).split())


def table_rows(root):
    """(key, exact total, row element) of the Explore table's series rows (not Other, not the total)."""
    out = []
    for tr in root.xpath("//h:table[contains(@class, 'explore')]/h:tbody/h:tr[not(@class)]", namespaces=NS):
        key = tr.xpath("h:td[@class='key']", namespaces=NS)
        if key:
            total = tr.xpath("h:td[@class='num'][1]/@title", namespaces=NS)[0]
            out.append((text(key[0]), int(total.replace(",", "")), tr))
    return out


def query_top(stack, by: str, window, limit: int = 50) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "flowmodel.cli", "query", "top", "--by", by, "--metric", "bytes",
                          "--scaled", "--limit", str(limit), "--since", window["from"], "--until", window["to"],
                          "--format", "json", "--config", str(stack.stack.config_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("by", DIMENSIONS)
def test_each_dimension_totals_match_flowlens_query_top(http, stack, window, by):
    root = page(http.get("/explore", params={"by": by, "metric": "bps", "top": "50", "from": window["from"],
                                             "to": window["to"]}))
    assert root.xpath("//h:select[@name='by']/h:option[@selected]/@value", namespaces=NS) == [by]
    rows = table_rows(root)
    top = query_top(stack, by, window)
    assert rows, f"no rows for {by}"
    assert sorted((t for _k, t, _r in rows), reverse=True) == sorted((int(r["bytes"]) for r in top), reverse=True)
    # the stack draws one band per row (plus Other when there is any)
    bands = root.xpath("//svg:path[@class='band']", namespaces=NS)
    assert len(bands) in (len(rows), len(rows) + 1)
    # the page's grand total is all the window's bytes: 300 synthetic flows and the edge's
    grand = root.xpath("//h:tr[@class='total']/h:td[@class='num'][1]/@title", namespaces=NS)[0]
    assert int(grand.replace(",", "")) == sum(int(r["bytes"]) for r in query_top(stack, "exporter", window))
    # the first row's link narrows the view to exactly that row
    key, total, tr = rows[0]
    narrowed = page(http.get(tr.xpath("h:td[@class='key']/h:a/@href", namespaces=NS)[0]))
    assert [(k, t) for k, t, _ in table_rows(narrowed)] == [(key, total)]


def test_row_links_narrow_the_view_and_open_its_flows(http, window):
    root = page(http.get("/explore", params={"by": "src", "from": window["from"], "to": window["to"]}))
    key, total, tr = table_rows(root)[0]
    narrow = tr.xpath("h:td[@class='key']/h:a/@href", namespaces=NS)[0]
    assert parse_qs(urlparse(narrow).query)["src"] == [key]
    narrowed = page(http.get(narrow))
    assert [(k, t) for k, t, _ in table_rows(narrowed)] == [(key, total)]
    assert not narrowed.xpath("//h:tr[@class='other']", namespaces=NS)
    flows_link = tr.xpath("h:td[@class='links']/h:a[@class='flows']/@href", namespaces=NS)[0]
    q = parse_qs(urlparse(flows_link).query)
    assert q["src"] == [key] and q["from"] == [window["from"]] and q["to"] == [window["to"]]
    flows = page(http.get(flows_link))
    cells = flows.xpath("//h:table[@class='flows']/h:tbody/h:tr/h:td[@class='addr'][1]", namespaces=NS)
    assert cells and all(text(c).split(":")[0] == key for c in cells)


def test_csv_is_the_table(http, window):
    params = {"by": "dst_port", "metric": "pps", "top": "5", "from": window["from"], "to": window["to"]}
    root = page(http.get("/explore", params=params))
    href = root.xpath("//h:a[@class='csv']/@href", namespaces=NS)[0]
    resp = http.get(href)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    series = [r for r in rows if r["key"] != "Other"]
    assert [(r["key"], int(r["total_packets"])) for r in series] == [(k, t) for k, t, _ in table_rows(root)]
    assert http.get("/explore", params={**params, "format": "csv"}).text == resp.text


def test_interfaces_by_name_with_utilisation(http, window):
    root = page(http.get("/explore", params={"by": "in_if", "exporter": EDGE, "from": window["from"], "to": window["to"]}))
    keys = {k: tr for k, _t, tr in table_rows(root)}
    assert set(keys) == {"edge-2 (192.0.2.20) Gi0/1 (ifIndex 1)", "edge-2 (192.0.2.20) xe-0/0/2 (ifIndex 2)",
                         "edge-2 (192.0.2.20) Gi0/3 (ifIndex 3)", "edge-2 (192.0.2.20) ifIndex 4"}
    util = {k: text(tr.xpath("h:td[@class='num'][5]", namespaces=NS)[0]) for k, tr in keys.items()}
    assert util["edge-2 (192.0.2.20) ifIndex 4"] == "" and util["edge-2 (192.0.2.20) xe-0/0/2 (ifIndex 2)"] == ""
    assert util["edge-2 (192.0.2.20) Gi0/3 (ifIndex 3)"].endswith("%")
    # the slow interface's 95th percentile over its 100 kbit/s
    p95 = text(keys["edge-2 (192.0.2.20) Gi0/3 (ifIndex 3)"].xpath("h:td[@class='num'][4]", namespaces=NS)[0])
    assert p95.endswith("bps")


def test_exporters_list_and_pages(http, window):
    root = page(http.get("/exporters"))
    rows = {text(tr.xpath("h:td[1]", namespaces=NS)[0]): tr
            for tr in root.xpath("//h:table[@class='exporters']/h:tbody/h:tr", namespaces=NS)}
    assert {"192.0.2.10", EDGE} <= set(rows)
    assert text(rows[EDGE].xpath("h:td[2]", namespaces=NS)[0]) == "edge-2"
    assert text(rows[EDGE].xpath("h:td[3]", namespaces=NS)[0]) == "lab"
    assert text(rows["192.0.2.10"].xpath("h:td[9]", namespaces=NS)[0]) == "300"  # flows the store counted
    assert text(rows["192.0.2.10"].xpath("h:td[6]", namespaces=NS)[0]) == "unsampled"
    assert text(rows[EDGE].xpath("h:td[6]", namespaces=NS)[0]) == "1 in 100"
    link = rows[EDGE].xpath("h:td[1]/h:a/@href", namespaces=NS)[0]
    one = page(http.get(link, params={"from": window["from"], "to": window["to"]}))
    assert "edge-2" in text(one.xpath("//h:h1", namespaces=NS)[0])
    assert len(one.xpath("//h:figure[@class='stack']", namespaces=NS)) == 2  # in and out
    ifrows = one.xpath("//h:table[contains(@class, 'interfaces')]/h:tbody/h:tr", namespaces=NS)
    by_index = {int(text(tr.xpath("h:td[1]", namespaces=NS)[0])): tr for tr in ifrows}
    assert set(by_index) == {1, 2, 3, 4, 5, 6}
    assert text(by_index[1].xpath("h:td[2]", namespaces=NS)[0]) == "Gi0/1"
    assert text(by_index[1].xpath("h:td[3]", namespaces=NS)[0]) == "uplink <isp>"
    assert text(by_index[1].xpath("h:td[4]", namespaces=NS)[0]) == "10 Gbps"
    assert text(by_index[5].xpath("h:td[7]", namespaces=NS)[0]).endswith("bps")  # out average
    assert one.xpath("//h:dd[normalize-space()='1 in 100']", namespaces=NS)
    # the interface page: sources arriving on ifIndex 1 and destinations leaving by it (none: 1 is input only)
    if_link = by_index[1].xpath("h:td[1]/h:a/@href", namespaces=NS)[0]
    ifpage = page(http.get(if_link))
    assert "Gi0/1" in text(ifpage.xpath("//h:h1", namespaces=NS)[0])
    tables = ifpage.xpath("//h:table[contains(@class, 'explore')]", namespaces=NS)
    assert len(tables) == 2
    sources = [text(td) for td in tables[0].xpath("h:tbody/h:tr[not(@class)]/h:td[@class='key']", namespaces=NS)]
    assert sorted(sources) == [f"10.20.0.{k}" for k in range(1, 8)]  # flows i % 4 == 0: every i % 7
    assert not tables[1].xpath("h:tbody/h:tr[not(@class)]/h:td[@class='key']", namespaces=NS)
    # its flows: the flow explorer filtered to the exporter and ifIndex 1, every row in on Gi0/1
    flows_in = ifpage.xpath("//h:a[normalize-space()='its flows']/@href", namespaces=NS)[0]
    assert parse_qs(urlparse(flows_in).query) == {"exporter": [EDGE], "input_if": ["1"], "from": [window["from"]],
                                                  "to": [window["to"]]}  # the range the exporter page had
    flows = page(http.get(flows_in))
    in_ifs = [text(tr.xpath("h:td[@class='if'][1]", namespaces=NS)[0])
              for tr in flows.xpath("//h:table[@class='flows']/h:tbody/h:tr[h:td[@class='addr']]", namespaces=NS)]
    assert in_ifs and set(in_ifs) == {"Gi0/1"}


@pytest.mark.parametrize("path, params, words", [
    ("/explore", {"by": "colour"}, "by 'colour' is not a dimension"),
    ("/explore", {"top": "99"}, "top '99' is not a number from 5 to 50"),
    ("/explore", {"dscp": "64"}, "dscp 64 is above 63"),
    ("/explore", {"range": "3x"}, "range '3x'"),
    ("/explore", {"format": "pdf"}, "format 'pdf' is not html or csv"),
    ("/explore", {"sankey_from": "in_if", "sankey_to": "in_if"}, "sankey_to 'in_if' is the same as sankey_from"),
    ("/explore", {"sankey_from": "pair", "sankey_to": "dst"}, "sankey_from 'pair' is not a dimension"),
    ("/explore", {"sankey_from": "exporter"}, "sankey_to is missing"),
    ("/exporters/999.0.0.1", {}, "exporter '999.0.0.1' is not an IP address"),
    ("/exporters/192.0.2.20/if/x", {}, "ifIndex 'x' is not a whole number"),
    ("/exporters/192.0.2.20", {"from": "yesterday"}, "from 'yesterday' is not a time"),
])
def test_bad_parameters_are_400_in_words(http, path, params, words):
    resp = http.get(path, params=params)
    root = page(resp, 400)
    assert words in text(root.xpath("//h:main", namespaces=NS)[0])


def test_bad_csv_parameter_is_a_400_in_words(http):
    resp = http.get("/explore.csv", params={"metric": "bytes"})
    assert resp.status_code == 400 and "metric 'bytes' is not one of" in resp.text


def test_pages_have_their_own_latency_series(http, window):
    for path in ("/explore", "/explore.csv", "/exporters"):
        assert http.get(path, params={"range": "1h"} if path != "/exporters" else {}).status_code == 200
    metrics = http.get("/metrics").text
    for path in ("/explore", "/explore.csv", "/exporters"):
        assert f'flowlens_web_request_duration_seconds_count{{route="{path}",status="2xx"}}' in metrics


def test_the_sankey_picker_suggests_a_rollup_pair_and_says_which_are_slow(http, window):
    """Without sankey_from/sankey_to in the URL the picker shows input -> output interface (a pair the
    store answers from rollups) and draws nothing yet; (none) sent as empty values stays none; the
    form says which pairs come from rollups and which are summed from the flows."""
    rng = {"from": window["from"], "to": window["to"]}
    root = page(http.get("/explore", params={"by": "src", **rng}))
    picked = [root.xpath(f"//h:select[@name='{n}']/h:option[@selected]/@value", namespaces=NS)
              for n in ("sankey_from", "sankey_to")]
    assert picked == [["in_if"], ["out_if"]] and not root.xpath("//h:figure[@class='sankey']", namespaces=NS)
    note = text(root.xpath("//h:span[contains(@class, 'sankey-pairs')]", namespaces=NS)[0])
    assert "Input to output interface and source to destination AS" in note and "summed from the flows" in note
    root = page(http.get("/explore", params={"by": "src", "sankey_from": "", "sankey_to": "", **rng}))
    assert [root.xpath(f"//h:select[@name='{n}']/h:option[@selected]/@value", namespaces=NS)
            for n in ("sankey_from", "sankey_to")] == [[], []]  # so the first, (none), shows
    assert not root.xpath("//h:figure[@class='sankey']", namespaces=NS)
    # the suggested pair, sent, is drawn
    root = page(http.get("/explore", params={"by": "src", "sankey_from": "in_if", "sankey_to": "out_if", **rng}))
    assert root.xpath("//h:figure[@class='sankey']//svg:path[@class='link']", namespaces=NS)
