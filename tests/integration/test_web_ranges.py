"""Time ranges, CSV downloads and the flow explorer's new columns against real services: a store and
a collector as processes, real exports replayed over UDP (pmacct's v9 DNS capture: 409 flows; a
Cisco router's IPFIX with interfaces, AS, DSCP and next hop), the web as a process, pages over HTTP.
The captures keep their own times (days to years back), so the pages are asked for from/to ranges
around them."""
from __future__ import annotations

import csv
import io
import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from lxml import etree

from browser.webstack import DATA
from flowmodel.pcap import read_datagrams
from flowlens_web.timerange import url_time
from support.services import ServiceProcess, ServiceStack, send_udp, wait_until, write_config

NS = {"h": "http://www.w3.org/1999/xhtml", "svg": "http://www.w3.org/2000/svg"}
DNS_CAPTURE, DNS_FLOWS = "pmacct_v9_dns.pcap", 409
ROUTER_CAPTURE, ROUTER_FLOWS = "pmacct-ta_ipfix_cisco-100.pcap", 12
ROUTER = "127.0.0.2"  # the router capture is sent from here, the DNS one from 127.0.0.1
CSV_MAX_ROWS = 150
# the router named in the config (the store's names op gives these to the pages); ifIndex 810 unnamed
ROUTER_NAMES = [{"address": ROUTER, "name": "edge-zrh", "site": "zurich",
                 "interfaces": {995: {"name": "Te0/0/0/5", "description": "transit"}, 841: "Hu0/1/0/1",
                                1003: "BE100"}}]
IF_NAMES = {"995": "Te0/0/0/5", "841": "Hu0/1/0/1", "1003": "BE100"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    st = ServiceStack(tmp_path_factory.mktemp("ranges"), ["store", "collector"],
                      storage={"sqlite_retention": "4000d"},  # the router capture's flows are from 2023
                      web={"page_size": 5, "csv_max_rows": CSV_MAX_ROWS})
    st.cfg["exporters"] = ROUTER_NAMES  # a top-level list: stack_config only merges sections
    write_config(st.config_path, st.cfg)
    st.start()
    web = None
    client = st.client()
    try:
        send_udp(st.netflow_port, [d.payload for d in read_datagrams(str(DATA / DNS_CAPTURE))])
        send_udp(st.ipfix_port, [d.payload for d in read_datagrams(str(DATA / ROUTER_CAPTURE))], source=(ROUTER, 0))
        everything = {"since": 0, "until": 2**62}
        wait_until(lambda: len(client.flows(limit=1000, **everything)) >= DNS_FLOWS + ROUTER_FLOWS, timeout_s=30)
        web = ServiceProcess("web", st.config_path).start()
        st.web = web
        st.flows_of = {"dns": client.flows(limit=1000, exporter="127.0.0.1", **everything).rows(),
                       "router": client.flows(limit=1000, exporter=ROUTER, **everything).rows()}
        yield st
    finally:
        client.close()
        rc = web.stop() if web else 0
        st.stop()
        assert rc == 0


@pytest.fixture(scope="module")
def http(stack):
    with httpx.Client(base_url="http://" + stack.cfg["web"]["listen"], timeout=20) as c:
        yield c


def window(rows) -> dict:
    """from/to around the rows' ends, on whole minutes (as the range form gives them)."""
    lo = min(r["time_end"] for r in rows) // 60_000 * 60_000
    hi = (max(r["time_end"] for r in rows) // 60_000 + 1) * 60_000
    return {"from": url_time(lo), "to": url_time(hi)}


def page(resp, status=200):
    assert resp.status_code == status, resp.text[:2000]
    return etree.fromstring(resp.content)  # well-formed XHTML or this raises


def texts(root, xpath):
    return [" ".join("".join(e.itertext()).split()) for e in root.xpath(xpath, namespaces=NS)]


def link(root, cls):
    hrefs = root.xpath(f"//h:nav[@class='range']//h:a[@class='{cls}']/@href", namespaces=NS)
    return hrefs[0] if hrefs else None


def cli(stack, *args) -> str:
    out = subprocess.run([sys.executable, "-m", "flowmodel.cli", "query", *args, "--format", "csv",
                          "--endpoint", stack.cfg["query"]["endpoint"]], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_range_links_move_and_come_back(http):
    root = page(http.get("/"))
    assert texts(root, "//h:strong[@id='range-label']") == ["last 10 min"]
    one_hour = root.xpath("//h:nav[@class='range']//h:a[normalize-space()='1 h']/@href", namespaces=NS)[0]
    root = page(http.get(one_hour))
    assert texts(root, "//h:strong[@id='range-label']") == ["last 1 h"]
    assert texts(root, "//h:nav[@class='range']//h:a[@class='here']") == ["1 h"]
    assert link(root, "later") is None  # it ends now
    earlier = page(http.get(link(root, "earlier")))
    q = parse_qs(urlparse(link(root, "earlier")).query)
    assert set(q) == {"from", "to"} and "UTC" in texts(earlier, "//h:strong[@id='range-label']")[0]
    assert not earlier.xpath("//h:meta[@http-equiv='refresh']", namespaces=NS)  # a past range does not reload
    back = link(earlier, "later")
    assert parse_qs(urlparse(back).query) == {"range": ["1h"]}  # the hour after it is the live last hour again
    zoomed = page(http.get(link(root, "zoom-out")))
    assert texts(zoomed, "//h:strong[@id='range-label']") == ["last 6 h"]


def test_dashboard_over_the_captures_day(http, stack):
    rng = window(stack.flows_of["dns"])
    root = page(http.get("/", params=rng))
    assert texts(root, "//h:strong[@id='range-label']")[0].endswith("UTC")
    assert len(root.xpath("//svg:polyline", namespaces=NS)) == 2  # the chart has the capture's traffic
    client = stack.client()
    try:
        expected = client.top(by="src", limit=10, scaled=True, since=rng["from"], until=rng["to"])["rows"]
    finally:
        client.close()
    shown = texts(root, "(//h:table[@class='top'])[1]//h:td[@class='key']")
    assert shown == [r["key"] for r in expected] and shown
    # each top row opens the flow explorer on the same range
    href = root.xpath("(//h:table[@class='top'])[1]//h:a/@href", namespaces=NS)[0]
    assert parse_qs(urlparse(href).query)["from"] == [rng["from"]]


@pytest.mark.parametrize("path", ["/", "/flows", "/advisories", "/flows.csv", "/top.csv?by=src"])
@pytest.mark.parametrize("params, words", [
    ({"range": "forever"}, "range 'forever' is not a span"),
    ({"from": "2025-12-01T10:00", "to": "2025-12-01T09:00"}, "must be before to"),
    ({"from": "last tuesday"}, "from 'last tuesday' is not a time"),
])
def test_a_bad_range_is_400_with_the_reason(http, path, params, words):
    root = page(http.get(path, params=params), 400)
    assert any(words in t for t in texts(root, "//h:main//h:p")), texts(root, "//h:main//h:p")


def test_csv_of_a_filtered_list_equals_flowlens_query(http, stack):
    rng = window(stack.flows_of["router"])
    flt = {"exporter": ROUTER, "protocol": "udp"}
    resp = http.get("/flows.csv", params={**flt, **rng})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert f"max{CSV_MAX_ROWS}" in resp.headers["content-disposition"]
    expected = cli(stack, "flows", "--exporter", ROUTER, "--protocol", "udp", "--since", rng["from"], "--until",
                   rng["to"], "--limit", "1000")
    assert resp.text == expected  # row for row, column for column
    assert len(expected.splitlines()) == ROUTER_FLOWS + 1


@pytest.mark.parametrize("web_args, cli_args", [
    ({"input_if": "995", "dscp": "46"}, ["--input-if", "995", "--dscp", "46"]),
    ({"output_if": "1003", "order": "bytes"}, ["--output-if", "1003", "--order", "bytes"]),
    ({"as": "6837", "order": "packets"}, ["--as", "6837", "--order", "packets"]),
])
def test_csv_with_the_new_filters_and_orders_equals_flowlens_query(http, stack, web_args, cli_args):
    rng = window(stack.flows_of["router"])
    resp = http.get("/flows.csv", params={"exporter": ROUTER, **web_args, **rng})
    assert resp.status_code == 200, resp.text[:500]
    expected = cli(stack, "flows", "--exporter", ROUTER, *cli_args, "--since", rng["from"], "--until", rng["to"],
                   "--limit", "1000")
    assert resp.text == expected and len(expected.splitlines()) > 2


def test_csv_row_limit_is_named(http, stack):
    rng = window(stack.flows_of["dns"])
    resp = http.get("/flows.csv", params=rng)
    lines = resp.text.splitlines()
    assert lines[-1].startswith(f"# cut at {CSV_MAX_ROWS} rows (web.csv_max_rows)")
    assert f"-max{CSV_MAX_ROWS}.csv" in resp.headers["content-disposition"]
    body = "\n".join(lines[:-1]) + "\n"
    assert body == cli(stack, "flows", "--since", rng["from"], "--until", rng["to"], "--limit", str(CSV_MAX_ROWS))


def test_page_csv_is_the_page_shown(http, stack):
    rng = window(stack.flows_of["dns"])
    root = page(http.get("/flows", params={"protocol": "udp", **rng}))
    nxt = root.xpath("//h:a[@class='next']/@href", namespaces=NS)[0]
    second = page(http.get(nxt))
    csv_href = second.xpath("//h:a[@id='csv-page']/@href", namespaces=NS)[0]
    rows = list(csv.DictReader(io.StringIO(http.get(csv_href).text)))
    table = second.xpath("//h:table[@class='flows']/h:tbody/h:tr[h:td[@class='addr']]", namespaces=NS)
    assert len(rows) == len(table) == 5
    assert [f"{r['src_addr']}:{r['src_port']}" for r in rows] == \
           [t.xpath("string(h:td[3])", namespaces=NS) for t in table]


def test_top_csv_equals_flowlens_query_top(http, stack):
    rng = window(stack.flows_of["dns"])
    resp = http.get("/top.csv", params={"by": "dst", **rng})
    assert resp.status_code == 200 and "top-dst" in resp.headers["content-disposition"]
    expected = cli(stack, "top", "--by", "dst", "--scaled", "--limit", "100", "--since", rng["from"],
                   "--until", rng["to"])
    assert resp.text == expected and len(expected.splitlines()) > 1


def table_cells(root) -> list[dict]:
    heads = texts(root, "//h:table[@class='flows']/h:thead//h:th")
    rows = root.xpath("//h:table[@class='flows']/h:tbody/h:tr[h:td[@class='addr']]", namespaces=NS)
    return [dict(zip(heads, (" ".join("".join(td.itertext()).split()) for td in r.xpath("h:td", namespaces=NS))))
            for r in rows]


def test_flow_table_shows_interfaces_as_dscp_and_next_hop(http, stack):
    rng = window(stack.flows_of["router"])
    href, cells, first = "/flows?" + httpx.QueryParams({"exporter": ROUTER, **rng}).__str__(), [], None
    while href:  # every page of the router's flows
        root = page(http.get(href))
        first = first if first is not None else root
        cells += table_cells(root)
        nxt = root.xpath("//h:a[@class='next']/@href", namespaces=NS)
        href = nxt[0] if nxt else None
    shown = sorted((c["In"], c["Out"], c["DSCP"], c["Src AS"], c["Dst AS"], c["Next hop"]) for c in cells)

    def named(ifindex) -> str:  # a config name where there is one, else the ifIndex
        return IF_NAMES.get(str(ifindex), str(ifindex))
    want = sorted((named(f["input_if"]), named(f["output_if"]), str(f["tos"] >> 2), str(f["src_as"]), str(f["dst_as"]),
                   f["next_hop"]) for f in stack.flows_of["router"])
    assert shown == want and len(shown) == ROUTER_FLOWS
    assert {c["In"] for c in cells} == {"Te0/0/0/5", "810"}  # 810 has no name: its ifIndex
    assert {c["Exporter"] for c in cells} == {"edge-zrh"}
    assert {c["DSCP"] for c in cells} == {"0", "46"}  # EF (ToS 0xb8) and best effort
    # an interface cell opens the flows of that exporter's interface, on the same range
    link = first.xpath("//h:table[@class='flows']/h:tbody/h:tr[1]/h:td[@class='if'][1]/h:a/@href", namespaces=NS)[0]
    q = parse_qs(urlparse(link).query)
    first_in = {v: k for k, v in IF_NAMES.items()}.get(table_cells(first)[0]["In"], table_cells(first)[0]["In"])
    assert q["exporter"] == [ROUTER] and q["input_if"] == [first_in] and q["from"] == [rng["from"]]


def test_new_filters_reach_the_store(http, stack):
    """input_if: the store filters by it, or (before it knows the filter) the page says it refused it."""
    rng = window(stack.flows_of["router"])
    ifindex = stack.flows_of["router"][0]["input_if"]
    resp = http.get("/flows", params={"exporter": ROUTER, "input_if": str(ifindex), **rng})
    root = page(resp, resp.status_code)
    if resp.status_code == 400:
        assert "the store refused this filter" in texts(root, "//h:p[@class='error']")[0]
        assert "input_if" in texts(root, "//h:p[@class='error']")[0]
    else:
        ins = texts(root, "//h:table[@class='flows']/h:tbody/h:tr/h:td[@class='if'][1]")
        assert ins and set(ins) == {IF_NAMES.get(str(ifindex), str(ifindex))}
    bad = page(http.get("/flows", params={"dscp": "99"}), 400)
    assert "dscp '99' is not a DSCP value" in texts(bad, "//h:p[@class='error']")[0]


def test_sort_links_only_when_the_store_sorts(http, stack):
    rng = window(stack.flows_of["dns"])
    client = stack.client()
    try:
        client.request("flows", limit=1, order="bytes", since=0, until=1)
        sorts = True
    except Exception:
        sorts = False
    finally:
        client.close()
    root = page(http.get("/flows", params=rng))
    links = root.xpath("//h:p[@class='summary']/h:a[@class='sort']/@href", namespaces=NS)
    if not sorts:
        assert links == []
        return
    href, values, pages = [h for h in links if "order=bytes" in h][0], [], 0
    while href and pages < 4:  # the keyset pages go on in bytes order
        sorted_page = page(http.get(href))
        values += [int(v.replace(",", "").split()[0]) for v in
                   sorted_page.xpath("//h:table[@class='flows']/h:tbody/h:tr/h:td[7]/@title", namespaces=NS)]
        nxt = sorted_page.xpath("//h:a[@class='next']/@href", namespaces=NS)
        assert not nxt or parse_qs(urlparse(nxt[0]).query)["order"] == ["bytes"]
        href, pages = (nxt[0] if nxt else None), pages + 1
    assert pages == 4 and len(values) == 20 and values == sorted(values, reverse=True)


def test_advisories_page_has_a_range(http):
    root = page(http.get("/advisories"))
    assert texts(root, "//h:strong[@id='range-label']") == ["any time"]
    ranged = page(http.get("/advisories", params={"range": "7d", "severity": "WARNING"}))
    assert texts(ranged, "//h:nav[@class='range']//h:a[@class='here']") == ["7 d"]
    preset = ranged.xpath("//h:nav[@class='range']//h:a[normalize-space()='24 h']/@href", namespaces=NS)[0]
    assert parse_qs(urlparse(preset).query) == {"severity": ["WARNING"], "range": ["24h"]}
