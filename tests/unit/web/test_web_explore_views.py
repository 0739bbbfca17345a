"""The Explore page's pure parts: the form's checks (each bad parameter named), the store's
arguments, and what a contract-shaped explore reply becomes (rates, statistics, names, links, CSV),
rendered through the real templates as well-formed XHTML."""
from __future__ import annotations

import csv
import io
from urllib.parse import parse_qs, urlparse

import pytest
from lxml import etree

from flowlens_web import explore as ex
from flowlens_web import exporterviews as ev
from flowlens_web import render
from flowlens_web.namebook import NameBook

NOW = 1_764_950_400_000  # 2025-12-05T16:00Z
NS = {"h": "http://www.w3.org/1999/xhtml", "svg": "http://www.w3.org/2000/svg"}


def reply(step_ms=60_000, n=60):
    t0 = NOW - n * step_ms
    a = [1000.0] * n
    b = [0.0] * (n - 1) + [60_000.0]
    return {"ok": True, "by": "in_if", "metric": "bytes", "step_ms": step_ms, "since": t0, "until": NOW,
            "times": [t0 + i * step_ms for i in range(n)],
            "series": [{"key": "192.0.2.1 3", "filter": {"exporter": "192.0.2.1", "input_if": 3}, "values": a,
                        "total": sum(a)},
                       {"key": "192.0.2.1 7", "filter": {"exporter": "192.0.2.1", "input_if": 7}, "values": b,
                        "total": sum(b)}],
            "other": {"values": [10.0] * n, "total": 10.0 * n},
            "totals": {"bytes": sum(a) + sum(b) + 10 * n, "packets": 99, "flows": 9}, "source": "rollups",
            "approximate": False}


NAMES = {"exporters": [{"exporter": "192.0.2.1", "name": "edge-1", "site": "par1", "dns": ""}],
         "interfaces": [{"exporter": "192.0.2.1", "ifindex": 3, "name": "Gi0/3", "description": "uplink <isp>",
                         "speed_bps": 1000, "source": "snmp"}]}


def query(**params):
    return ex.parse_query({"range": "1h", **params}, NOW)


@pytest.mark.parametrize("params, words", [
    ({"by": "colour"}, "by 'colour' is not a dimension"),
    ({"metric": "bytes"}, "metric 'bytes' is not one of bps, pps, fps"),
    ({"top": "4"}, "top '4' is not a number from 5 to 50"),
    ({"top": "51"}, "top '51'"),
    ({"top": "ten"}, "top 'ten'"),
    ({"top": "\u00b2"}, "top '\u00b2' is not a number"),  # isdigit() yet not int(): a 500 before
    ({"top": "9" * 5000}, "top '99999"),  # past int()'s 4300 digits: a ValueError of its own
    ({"input_if": "\u00b2"}, "input_if '\u00b2' is not a whole number"),
    ({"src_as": "AS\u00b9"}, "src_as 'AS\u00b9' is not a whole number"),
    ({"dscp": "64"}, "dscp 64 is above 63"),
    ({"input_if": "-1"}, "input_if '-1' is not a whole number"),
    ({"src_as": "AS4294967296"}, "src_as 4294967296 is above"),
    ({"src": "10.0.0.300"}, "src"),
    ({"protocol": "tcpx"}, "protocol 'tcpx'"),
    ({"range": "2x"}, "range '2x'"),
    ({"port": "70000"}, "port 70000 is outside"),
    ({"dst_port": "x"}, "dst_port 'x' is not a number"),
    ({"src_country": "Atlantis"}, "src_country"),
])
def test_bad_parameters_are_named(params, words):
    with pytest.raises(ex.FormError, match=None) as e:
        ex.parse_query({"range": "1h", **params}, NOW)
    assert words in str(e.value)


def test_store_arguments():
    q = query(by="out_if", metric="pps", top="25", exporter="192.0.2.1", output_if="7", src_as="AS65000", dscp="46",
              protocol="udp", port="53", src_port="1024", dst_port="53")
    args = q.store_args()
    assert args == {"by": "out_if", "metric": "packets", "limit": 25, "step": 0, "scaled": True,
                    "since": NOW - 3_600_000, "until": NOW, "exporter": "192.0.2.1", "output_if": 7,
                    "src_as": 65000, "dscp": 46, "protocol": 17, "port": 53, "src_port": 1024, "dst_port": 53}
    assert q.params()["range"] == "1h" and q.params()["src_as"] == "AS65000"
    assert query(by="dst_country", country="FR").store_args()["country"] == "FR"


def test_view_rates_stats_names_and_links():
    q = query(by="in_if", exporter="192.0.2.1")
    view = ex.explore_view(q, reply(), NameBook.from_reply(NAMES))
    r3, r7 = view["rows"]
    assert r3["key"] == "edge-1 (192.0.2.1) Gi0/3 (ifIndex 3)"
    assert r7["key"] == "edge-1 (192.0.2.1) ifIndex 7"
    short = ex.explore_view(q, reply(), NameBook.from_reply(NAMES), with_exporter=False)
    assert [r["key"] for r in short["rows"]] == ["Gi0/3 (ifIndex 3)", "ifIndex 7"]
    # 1000 bytes per 60 s step = 133.33 bit/s, flat
    assert r3["stats"].average == pytest.approx(1000 * 8 / 60) and r3["stats"].p95 == pytest.approx(1000 * 8 / 60)
    assert r3["average"] == "133 bps"
    assert r7["stats"].maximum == pytest.approx(60_000 * 8 / 60) and r7["stats"].p95 == 0
    # utilisation only where the speed is known: 133.33 of 1000 bit/s
    assert r3["util"]["p95"] == "13.3 %" and r7["util"] is None
    link = urlparse(r3["href"])
    assert link.path == "/explore" and parse_qs(link.query) == {
        "by": ["in_if"], "metric": ["bps"], "top": ["10"], "exporter": ["192.0.2.1"], "input_if": ["3"], "range": ["1h"]}
    flows = urlparse(r3["flows_href"])
    assert flows.path == "/flows" and parse_qs(flows.query) == {"exporter": ["192.0.2.1"], "input_if": ["3"], "range": ["1h"]}
    assert view["other"]["stats"].total == 600 and view["total"]["stats"].total == 60 * 1000 + 60_000 + 600
    bands = view["chart"].bands
    assert [b.label for b in bands][-1] == "Other" and len(bands) == 3
    assert view["source"] == "rollups" and view["step"] == "1 min"


def test_port_series_link_to_the_flow_explorers_port_filter():
    q = query(by="dst_port")
    r = {**reply(n=3), "series": [{"key": "443", "filter": {"dst_port": 443}, "values": [1, 2, 3], "total": 6}],
         "other": {"values": [0, 0, 0], "total": 0}}
    view = ex.explore_view(q, r, NameBook())
    assert parse_qs(urlparse(view["rows"][0]["flows_href"]).query) == {"port": ["443"], "range": ["1h"]}
    assert parse_qs(urlparse(view["rows"][0]["href"]).query)["dst_port"] == ["443"]
    assert view["rows"][0]["key"] == "443 (https)"
    assert view["other"] is None and [b.label for b in view["chart"].bands] == ["443 (https)"]


@pytest.mark.parametrize("by, flt, label", [
    ("protocol", {"protocol": 17}, "UDP"), ("dscp", {"dscp": 46}, "46 (EF)"), ("dscp", {"dscp": 7}, "7"),
    ("pair", {"src": "10.0.0.1", "dst": "2001:db8::1"}, "10.0.0.1 \u2192 2001:db8::1"),
    ("src_as", {"src_as": 64500}, "AS64500"), ("src", {"src": "10.0.0.1"}, "key from the op"),
    ("exporter", {"exporter": "192.0.2.1"}, "edge-1 (192.0.2.1)"), ("exporter", {"exporter": "192.0.2.9"}, "192.0.2.9"),
])
def test_series_labels(by, flt, label):
    assert ex.series_label(by, "key from the op", flt, NameBook.from_reply(NAMES)) == label


def test_csv_has_a_row_per_series_and_other():
    q = query(by="in_if", exporter="192.0.2.1")
    view = ex.explore_view(q, reply(), NameBook.from_reply(NAMES))
    rows = list(csv.reader(io.StringIO(ex.explore_csv(view, q))))
    assert rows[0] == ["key", "filter", "total_bytes", "average_bps", "p95_bps", "max_bps", "utilisation_p95_pct"]
    assert [r[0] for r in rows[1:]] == ["edge-1 (192.0.2.1) Gi0/3 (ifIndex 3)", "edge-1 (192.0.2.1) ifIndex 7", "Other"]
    assert rows[1][1] == "exporter=192.0.2.1&input_if=3" and rows[1][2] == "60000" and rows[1][6] == "13.33"
    assert rows[3][1] == "" and rows[3][2] == "600"


def base_ctx(**ctx):
    return {"refresh": 0, "version": "t", "account": None, "banner": None, **ctx}


def parse(html):
    root = etree.fromstring(html.encode())
    assert not root.xpath("//h:script", namespaces=NS)
    return root


def test_explore_page_renders(tmp_path):
    q = query(by="in_if", exporter="192.0.2.1")
    view = ex.explore_view(q, reply(), NameBook.from_reply(NAMES))
    html = render.Renderer().page("explore.xhtml", **base_ctx(
        title="Explore", nav="explore", form={**{k: "" for k in (*ex.FILTERS, "sankey_from", "sankey_to")}, **q.form},
        dimensions=ex.DIMENSIONS, sankey_dimensions=ex.SANKEY_DIMENSIONS, metrics=ex.METRICS, range_bar=q.range.bar("/explore", q.form), range_hidden=q.range.query(), error=None,
        view=view, top="10", csv_href=ex.url("/explore.csv", q.params())))
    root = parse(html)
    assert root.xpath("//h:select[@name='by']/h:option[@selected]/@value", namespaces=NS) == ["in_if"]
    keys = ["".join(e.itertext()) for e in root.xpath("//h:table[@class='explore']//h:td[@class='key']", namespaces=NS)]
    assert keys == ["edge-1 (192.0.2.1) Gi0/3 (ifIndex 3)", "edge-1 (192.0.2.1) ifIndex 7", "Other"]
    assert len(root.xpath("//svg:path[@class='band']", namespaces=NS)) == 3
    assert root.xpath("//h:a[@class='csv']/@href", namespaces=NS)[0].startswith("/explore.csv?")


@pytest.mark.parametrize("refused", ["", "the query took longer than 4 s; narrow the time range or add filters"])
def test_explore_page_shows_a_sankey_of_two_dimensions_or_why_not(refused):
    from flowlens_web import sankeyview as sv

    q = query(by="in_if", exporter="192.0.2.1", sankey_from="in_if", sankey_to="out_if")
    view = ex.explore_view(q, reply(), NameBook.from_reply(NAMES))
    top = {"rows": [{"key": "192.0.2.1 if 3 -> 192.0.2.1 if 7", "bytes": 900, "packets": 9, "flows": 3,
                     "filter": {"exporter": "192.0.2.1", "input_if": 3, "output_if": 7}}]}
    view["sankey"] = None if refused else sv.pair_sankey(q, top, NameBook.from_reply(NAMES))
    view["sankey_caption"], view["sankey_error"] = sv.caption(q), refused
    html = render.Renderer().page("explore.xhtml", **base_ctx(
        title="Explore", nav="explore", form={**{k: "" for k in ex.FILTERS}, **q.form}, dimensions=ex.DIMENSIONS,
        sankey_dimensions=ex.SANKEY_DIMENSIONS, metrics=ex.METRICS, range_bar=q.range.bar("/explore", q.form),
        range_hidden=q.range.query(), error=None, view=view, top="10", csv_href=ex.url("/explore.csv", q.params())))
    root = parse(html)
    assert root.xpath("//h:select[@name='sankey_from']/h:option[@selected]/@value", namespaces=NS) == ["in_if"]
    assert root.xpath("//h:select[@name='sankey_to']/h:option[@selected]/@value", namespaces=NS) == ["out_if"]
    assert len(root.xpath("//svg:path[@class='band']", namespaces=NS)) == 3  # the chart stands either way
    links = root.xpath("//h:figure[@class='sankey']//svg:path[@class='link']", namespaces=NS)
    note = root.xpath("//h:p[contains(@class, 'sankey-error')]", namespaces=NS)
    if refused:
        assert not links and refused in "".join(note[0].itertext())
    else:
        assert len(links) == 1 and not note
        assert "Gi0/3" in "".join(root.xpath("//h:figure[@class='sankey']", namespaces=NS)[0].itertext())


def test_exporter_rows_sum_domains_and_add_named_ones():
    health = {"exporters": [
        {"exporter": "192.0.2.1", "observation_domain": 0, "version": 9, "packets": 10, "flows": 100,
         "decode_errors": {"short": 2}, "sequence_lost": 1, "templates": 3, "last_seen": NOW - 5000},
        {"exporter": "192.0.2.1", "observation_domain": 1, "version": 10, "packets": 5, "flows": 50,
         "decode_errors": {}, "sequence_lost": 0, "templates": 2, "last_seen": NOW - 1000},
        {"exporter": "other", "observation_domain": 0, "overflow": True, "packets": 1}]}
    names = NameBook.from_reply({**NAMES, "exporters": NAMES["exporters"] + [{"exporter": "198.51.100.9", "name": "core", "site": "", "dns": ""}]})
    rows = ev.exporter_rows(health, names, NOW)
    assert [r["exporter"] for r in rows] == ["192.0.2.1", "198.51.100.9"]
    r = rows[0]
    assert (r["packets"], r["flows"], r["decode_errors"], r["sequence_lost"], r["templates"], r["domains"]) == (15, 150, 2, 1, 5, 2)
    assert r["versions"] == "10, 9" and r["name"] == "edge-1" and r["site"] == "par1" and r["interfaces"] == 1
    assert rows[1]["health"] is False and rows[1]["name"] == "core"


@pytest.mark.parametrize("text, words", [("999.1.1.1", "is not an IP address"), ("x", "is not an IP address")])
def test_bad_exporter_path(text, words):
    with pytest.raises(ev.PathError, match=words):
        ev.exporter_address(text)


def test_exporter_path_forms():
    assert ev.exporter_address("::ffff:192.0.2.1") == "192.0.2.1"
    assert ev.exporter_address("2001:DB8::1") == "2001:db8::1"
    assert ev.ifindex_of("42") == 42
    for bad in ("-1", "4294967296", "3a", "", "\u00b2"):
        with pytest.raises(ev.PathError, match="ifIndex"):
            ev.ifindex_of(bad)


def test_average_is_over_the_window_not_the_steps_span():
    # 5-minute steps from 15:55 for a window 16:00-17:00 ending in the 13th step: 60 min asked, 65 spanned
    r = reply(step_ms=300_000, n=13)
    r["times"] = [NOW - 3_600_000 - 300_000 + i * 300_000 for i in range(13)]
    r["since"], r["until"] = NOW - 3_600_000, NOW
    view = ex.explore_view(query(by="in_if", exporter="192.0.2.1"), r, NameBook.from_reply(NAMES))
    s = view["rows"][0]["stats"]
    assert s.total == 13 * 1000 and s.average == pytest.approx(13 * 1000 * 8 / 3600)
    assert s.maximum == pytest.approx(1000 * 8 / 300)  # a step's rate is its sum over the whole step


def test_sampling_from_scaled_and_unscaled_packets():
    scaled = {"rows": [{"key": "192.0.2.1", "filter": {"exporter": "192.0.2.1"}, "packets": 1000},
                       {"key": "192.0.2.2", "filter": {"exporter": "192.0.2.2"}, "packets": 50},
                       {"key": "192.0.2.3", "filter": {"exporter": "192.0.2.3"}, "packets": 370}]}
    unscaled = {"rows": [{"key": "192.0.2.1", "filter": {"exporter": "192.0.2.1"}, "packets": 10},
                         {"key": "192.0.2.2", "filter": {"exporter": "192.0.2.2"}, "packets": 50},
                         {"key": "192.0.2.3", "filter": {"exporter": "192.0.2.3"}, "packets": 11}]}
    assert ev.sampling_by_exporter(scaled, unscaled) == {"192.0.2.1": "1 in 100", "192.0.2.2": "unsampled",
                                                         "192.0.2.3": "1 in ~34"}
    rows = ev.exporter_rows({"exporters": [{"exporter": "192.0.2.1", "observation_domain": 0}]}, NameBook(), NOW,
                            {"192.0.2.1": "1 in 100"})
    assert rows[0]["sampling"] == "1 in 100"


@pytest.mark.parametrize("with_views", [True, False])
def test_exporter_and_interface_pages_render(with_views):
    """Both pages render as XHTML with their charts, and without them (a store with no explore op:
    the reason in words, health and names still shown)."""
    from flowlens_web.timerange import TimeRange

    names = NameBook.from_reply(NAMES)
    trange = TimeRange.last("1h", NOW)
    health = ev.health_rows({"exporters": [{"exporter": "192.0.2.1", "observation_domain": 0, "version": 10,
                                            "packets": 5, "flows": 7, "templates": 2, "last_seen": NOW}]}, NOW,
                            only="192.0.2.1")
    q = query(by="in_if", exporter="192.0.2.1")
    view = ex.explore_view(q, reply(), names) if with_views else None
    error = None if with_views else "this store does not answer the explore op yet"
    ctx = ev.exporter_context("192.0.2.1", names, health, trange, view, view, "1 in 100" if with_views else "", error)
    root = parse(render.Renderer().page("exporter.xhtml", **base_ctx(**ctx)))
    assert "edge-1 (192.0.2.1)" in "".join(root.xpath("//h:h1//text()", namespaces=NS))
    assert len(root.xpath("//h:figure[@class='stack']", namespaces=NS)) == (2 if with_views else 0)
    assert bool(root.xpath("//h:p[@class='error']", namespaces=NS)) is not with_views
    ifcells = root.xpath("//h:table[contains(@class, 'interfaces')]/h:tbody/h:tr/h:td[2]", namespaces=NS)
    assert ["".join(td.itertext()) for td in ifcells] == (["Gi0/3", "-"] if with_views else ["Gi0/3"])
    ictx = ev.interface_context("192.0.2.1", 3, names, trange, "/explore?a=1", "/explore?a=2", view, view, error)
    iroot = parse(render.Renderer().page("interface.xhtml", **base_ctx(**ictx)))
    assert "Gi0/3" in "".join(iroot.xpath("//h:h1//text()", namespaces=NS))
    facts = ["".join(dd.itertext()) for dd in iroot.xpath("//h:dl[@class='facts']/h:dd", namespaces=NS)]
    assert facts == ["3", "uplink <isp>", "1 kbps", "snmp"]  # ifIndex, description (escaped), speed, named by
    assert len(iroot.xpath("//h:table[contains(@class, 'explore')]", namespaces=NS)) == (2 if with_views else 0)
