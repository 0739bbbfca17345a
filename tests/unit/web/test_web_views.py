"""Page contexts and templates from crafted store replies (pure; the real store is in the
integration tests): well-formed XHTML, hostile strings escaped, filters validated."""
import pytest
from lxml import etree

from flowlens_web import flowtable, views
from flowlens_web.namebook import NameBook
from flowlens_web.timerange import TimeRange
from flowlens_web.app import config_groups
from flowlens_web.render import Renderer
from flowmodel.config import load_config

XHTML_NS = "{http://www.w3.org/1999/xhtml}"
NOW = 1_764_000_600_000
HOSTILE = "<script>alert('x')</script> & \"quoted\" \x00 ]]>"


def parse(text: str):
    assert text.startswith("<?xml") and "<!DOCTYPE html>" in text
    root = etree.fromstring(text.encode("utf-8"))  # raises on any well-formedness error
    assert root.tag == XHTML_NS + "html"
    assert not root.findall(f".//{XHTML_NS}script")
    return root


def page(name, **ctx):
    ctx.setdefault("refresh", 0)
    ctx.setdefault("version", "t")
    return Renderer().page(name, **ctx)


def test_series_rates_fill_gaps_and_skip_the_partial_step():
    since = NOW - 600_000
    reply = {"step_ms": 10_000, "points": [[since, 1250, 10, 2], [since + 30_000, 2500, 20, 4], [NOW - 5_000, 9999, 9, 9]]}
    times, bps, pps, fps = views.series_rates(reply, since, NOW, 10)
    assert len(times) == 60  # 10 minutes of complete 10 s steps; the step still filling is left out
    assert bps[0] == 1000.0 and pps[0] == 1.0 and fps[0] == 0.2
    assert bps[1] == 0.0 and bps[3] == 2000.0


def test_top_rows_share_and_bar():
    reply = {"rows": [{"key": "10.0.0.1", "bytes": 750, "packets": 5, "flows": 1},
                      {"key": "10.0.0.2", "bytes": 250, "packets": 1, "flows": 1}], "totals": {"bytes": 2000}}
    rows = views.top_rows(reply, "src")
    assert [r["key"] for r in rows] == ["10.0.0.1", "10.0.0.2"]
    assert rows[0]["share"] == "37.5 %" and rows[0]["bar"] == 100.0 and rows[1]["bar"] == pytest.approx(33.3, abs=0.1)
    protos = views.top_rows({"rows": [{"key": 6, "bytes": 1}, {"key": 17, "bytes": 1}]}, "protocol")
    assert [r["key"] for r in protos] == ["TCP", "UDP"]


def test_dashboard_renders_with_hostile_keys():
    ctx = views.dashboard(TimeRange.last("10m", NOW), {"step_ms": 10_000, "points": [[NOW - 60_000, 10_000, 10, 1]]},
                          {"rows": [{"key": HOSTILE, "bytes": 5}]}, {"rows": []}, {"rows": [{"key": 6, "bytes": 5}]},
                          {"CRITICAL": 126, "WARNING": 6},
                          {"exporters": [{"exporter": HOSTILE, "observation_domain": 0, "sequence_lost": 3,
                                          "decode_errors": {"short": 2}}]}, 30)
    root = parse(page("dashboard.xhtml", **ctx))
    text = "".join(root.itertext())
    assert "<script>alert('x')</script> & \"quoted\"" in text
    refresh = root.find(f".//{XHTML_NS}meta[@http-equiv='refresh']")
    assert refresh is not None and refresh.get("content") == "30"
    assert root.find(".//{http://www.w3.org/2000/svg}polyline") is not None
    links = [a.get("href") for a in root.iter(XHTML_NS + "a")]
    assert "/advisories?severity=CRITICAL" in links
    assert ctx["health"]["losses"] == 5 and ctx["health"]["exporters"] == 1
    counts = {c["severity"]: c["count"] for c in ctx["advisory_counts"]}
    assert counts == {"CRITICAL": 126, "WARNING": 6, "INFO": 0}
    badges = [" ".join("".join(a.itertext()).split()) for a in root.iter(XHTML_NS + "a") if "badge" in (a.get("class") or "")]
    assert badges == ["126 CRITICAL", "6 WARNING", "0 INFO"]


@pytest.mark.parametrize("shown,total,limit,text", [
    (1000, 1234, 1000, "showing 1,000 of 1,234"), (3, 3, 1000, None), (3, None, 1000, None),
    (1000, None, 1000, "showing the first 1,000; there may be more"), (0, 0, 1000, None),
])
def test_shown_of_says_when_the_list_is_cut(shown, total, limit, text):
    assert views.shown_of(shown, total, limit) == text


@pytest.mark.parametrize("params,error", [
    ({"src": "10.0.0.300"}, "src"), ({"port": "70000"}, "port"), ({"protocol": "tcpx"}, "protocol"),
    ({"range": "2y"}, "range '2y'"), ({"range": "custom"}, "since"),
    ({"range": "custom", "since": "2h", "until": "3h"}, "must be before to"),
    ({"dst": "10.0.0.1/8"}, "host bits"), ({"dscp": "64"}, "dscp '64' is not a DSCP value"),
    ({"input_if": "eth0"}, "input_if 'eth0' is not an ifIndex"), ({"as": "AS-X"}, "as 'AS-X'"),
    ({"order": "size"}, "order 'size'"),
])
def test_flow_query_rejects_bad_input_in_words(params, error):
    with pytest.raises(flowtable.FormError, match=error):
        flowtable.flow_query(params, NOW)


def test_flow_query_builds_store_arguments():
    form, args, tr = flowtable.flow_query({"src": " 10.0.0.0/8 ", "protocol": "udp", "port": "53", "range": "5m"}, NOW)
    assert args == {"src": "10.0.0.0/8", "protocol": 17, "port": 53, "since": NOW - 300_000, "until": NOW}
    form, args, tr = flowtable.flow_query({"range": "custom", "since": "2025-11-24T16:00:00Z", "until": "now"}, NOW)
    assert args == {"since": 1_764_000_000_000, "until": NOW}
    form, args, tr = flowtable.flow_query({"from": "2025-11-24T15:00", "to": "2025-11-24T16:00", "input_if": "3",
                                           "exporter": "192.0.2.1", "as": "AS64500", "dscp": "46",
                                           "order": "bytes"}, NOW)
    assert args == {"exporter": "192.0.2.1", "input_if": 3, "as": 64500, "dscp": 46, "order": "bytes",
                    "since": 1_763_996_400_000, "until": 1_764_000_000_000}
    q = flowtable.form_query(form, tr, cursor="c1", dir="next")
    assert q == {"exporter": "192.0.2.1", "input_if": "3", "as": "AS64500", "dscp": "46", "order": "bytes",
                 "from": "2025-11-24T15:00Z", "to": "2025-11-24T16:00Z", "cursor": "c1", "dir": "next"}
    assert flowtable.flow_query(q, NOW)[1] == args  # a link reproduces the query


def test_flows_page_error_is_escaped_and_well_formed():
    form = {k: "" for k in (*flowtable.FILTER_FIELDS, "order")} | {"src": HOSTILE}
    root = parse(page("flows.xhtml", title="Flows", nav="flows", form=form, error=HOSTILE, range_bar=None,
                      range_query={}, rows=[], searched=False, next_query=None, prev_query=None, page_size=50))
    src = root.find(f".//{XHTML_NS}input[@name='src']")
    assert src.get("value").startswith("<script>alert('x')</script> & \"quoted\"")


def test_flow_rows_human_and_exact():
    names = NameBook.from_reply({"exporters": [{"exporter": "192.0.2.1", "name": "edge-1", "site": "", "dns": ""}],
                                 "interfaces": [{"exporter": "192.0.2.1", "ifindex": 3, "name": "Gi0/3",
                                                 "description": "transit", "speed_bps": 10**9, "source": "snmp"}]})
    rows = flowtable.flow_rows([{"time_start": NOW - 2000, "time_end": NOW, "src_addr": "10.0.0.1", "dst_addr": "2001:db8::1",
                                 "src_port": 51000, "dst_port": 443, "protocol": 6, "bytes": 1_500_000, "packets": 1200,
                                 "sampling_rate": 1, "tcp_flags": 0x1b, "exporter": "192.0.2.1", "flow_version": 5,
                                 "tos": 0xb9, "input_if": 3, "output_if": 7, "src_as": 64500, "dst_as": 0,
                                 "next_hop": "192.0.2.254"}], NOW, names)
    r = rows[0]
    assert r["bytes"] == "1.43 MB" and r["bytes_exact"] == "1,500,000"
    assert r["dst"] == "[2001:db8::1]:443" and r["service"] == "https" and r["protocol"] == "TCP"
    assert r["duration"] == "2 s" and r["flags"] == "APSF"
    assert r["dscp"] == 46 and r["ecn"] == 1 and r["next_hop"] == "192.0.2.254" and r["exporter_name"] == "edge-1"
    assert r["in_if"] == {"text": "Gi0/3", "title": "ifIndex 3, transit", "ifindex": 3}
    assert r["out_if"]["text"] == "7" and "no name known" in r["out_if"]["title"]
    tr = TimeRange.last("1h", NOW)
    root = parse(page("flows.xhtml", title="Flows", nav="flows", form={k: "" for k in (*flowtable.FILTER_FIELDS, "order")},
                      error=None, range_bar=tr.bar("/flows"), range_query=tr.query(), rows=rows, searched=True,
                      next_query=None, prev_query=None, page_size=50, order_text="newest first", sort_links=[],
                      page_csv_query={"scope": "page"}, all_csv_query={}, csv_max_rows=100))
    cells = ["".join(td.itertext()) for td in root.iter(XHTML_NS + "td")]
    assert "Gi0/3" in cells and "edge-1" in cells and "46" in cells and "64500" in cells
    hrefs = [a.get("href") for a in root.iter(XHTML_NS + "a")]
    assert "/flows?range=1h&exporter=192.0.2.1&input_if=3" in hrefs


def test_advisories_sorted_and_linked_to_flows():
    advs = [{"severity": "INFO", "last_seen": NOW, "title": "i", "filter": {}},
            {"severity": "CRITICAL", "last_seen": NOW - 10, "title": HOSTILE, "description": HOSTILE, "action": HOSTILE,
             "filter": {"src": "172.16.0.55", "since": NOW - 60_000, "until": NOW}},
            {"severity": "CRITICAL", "last_seen": NOW, "title": "newer", "filter": {"dst_port": 53}}]
    rows = views.advisory_rows(advs, NOW)
    assert [r["title"] for r in rows] == ["newer", HOSTILE, "i"]
    assert rows[1]["flows_query"]["src"] == "172.16.0.55" and rows[1]["flows_query"]["to"] == "2025-11-24T16:10Z"
    assert rows[0]["flows_query"] == {"port": "53"} and rows[2]["flows_query"] is None
    root = parse(page("advisories.xhtml", title="Advisories", nav="advisories", severities=("CRITICAL",),
                      states=("active",), form={"severity": "", "state": "active", "resolved": False}, rows=rows, error=None))
    link = [a.get("href") for a in root.iter(XHTML_NS + "a") if a.get("class") == "flows-link"]
    assert len(link) == 2 and link[1].startswith("/flows?src=172.16.0.55&from=")
    # the round trip: the link's query is accepted by the flow explorer's validation, times kept
    args = flowtable.flow_query(rows[1]["flows_query"], NOW)[1]
    assert (args["since"], args["until"]) == (NOW - 60_000, NOW)


def test_about_page_config_and_processes():
    cfg = load_config(None)
    groups = config_groups(cfg)
    keys = {r["key"] for g in groups for r in g["rows"]}
    assert {"collector.netflow_port", "web.listen", "storage.sqlite_retention", "analysis.scan_threshold"} <= keys
    status = {"ok": True, "version": "1", "services": {"store": {"pid": 1, "rss_bytes": 50 << 20, "cpu_seconds": 3.0,
                                                                 "threads": 4, "started_at": NOW - 60_000},
                                                       HOSTILE: {"process": {"pid": 2, "rss_bytes": 1}}}}
    procs = [views.process_row(n, p, NOW) for n, p in views.service_processes(status)]
    assert procs[0]["rss"] == "50 MB" and procs[0]["cpu_pct"] == "5.0 %" and procs[1]["pid"] == 2
    root = parse(page("about.xhtml", title="About", nav="about", processes=procs, config_groups=groups,
                      store_status=views.scalar_items({"sqlite": {"size_bytes": 2048}, "name": HOSTILE}),
                      flow_rate="1", flow_rate_exact="1", web_uptime="1 s", store_version=HOSTILE, web_version="t",
                      store_uptime="1 s", store_endpoint="tcp://x"))
    assert "2 KB" in "".join(root.itertext())


def test_store_status_figures_in_their_units():
    # the shape of the store's status reply (review 5, finding 6: "1.80 T" for an epoch in ms)
    status = {"ok": True, "started_at": 1_795_530_000_000, "uptime_s": 93_784.5, "flows_in": 1_234_567,
              "flows_in_per_s": 12_345.6,
              "ring": {"capacity": 1_000_000, "fill": 5, "fill_ratio": 0.25, "oldest_time": 1_795_530_600_000,
                       "newest_time": 1_795_530_605_123, "evicted_max_time_end": None, "duration_s": 600.0},
              "sqlite": {"path": "/var/lib/flowlens.db", "size_bytes": 3 * 2**20, "oldest_time": None,
                         "newest_time": 1_795_530_605_000, "retention_s": 259_200, "rows": 0},
              "write_queue": {"seal_step_max_s": 0.39, "shed_flows": 0},
              "bus": {"sources": {"collector@x": {"last_seq": None, "gaps": 0}}}, "services": [{"x": 1}]}
    items = {k: human for k, human, _exact in views.scalar_items(status)}
    assert items["ring.newest_time"] == "2026-11-24T14:30:05.123Z"
    assert items["ring.oldest_time"] == "2026-11-24T14:30:00.000Z"
    assert items["sqlite.newest_time"] == "2026-11-24T14:30:05.000Z"
    assert items["started_at"] == "2026-11-24T14:20:00.000Z"
    assert items["sqlite.retention_s"] == "3 d" and items["ring.duration_s"] == "10 min"
    assert items["uptime_s"] == "1 d 2 h" and items["write_queue.seal_step_max_s"] == "390 ms"
    assert items["flows_in_per_s"] == "12.3 k/s" and items["flows_in"] == "1.23 M"
    assert items["sqlite.size_bytes"] == "3 MB" and items["ring.fill_ratio"] == "25.0 %"
    assert items["sqlite.oldest_time"] == "-" and items["ring.evicted_max_time_end"] == "-"
    assert items["bus.sources.collector@x.last_seq"] == "-" and items["ring.fill"] == "5"
    assert not any(" T" in h or h == "None" for h in items.values()), items
    assert "ok" not in items and "services" not in items


def test_about_config_shows_what_each_service_reported():
    """Under compose each container has its own overrides: the About page shows the store's ring
    capacity as the store reported it, not the web's file; two collectors that disagree show both."""
    cfg = load_config(None)
    status = {"services": [
        {"service": "store", "source": "store@tcp://0.0.0.0:5555", "config": {"storage.ring_capacity": 500_000}},
        {"service": "collector", "source": "collector@a:1", "config": {"collector.netflow_port": 2055,
                                                                         "collector.bind_address": "0.0.0.0"}},
        {"service": "collector", "source": "collector@b:2", "config": {"collector.netflow_port": 9995,
                                                                         "collector.bind_address": "0.0.0.0"}},
        {"service": "analyzer", "source": "analyzer@x", "config": None}]}
    rows = {r["key"]: r for g in config_groups(cfg, status, "web@7") for r in g["rows"]}
    assert rows["storage.ring_capacity"]["value"] == "500000" and rows["storage.ring_capacity"]["source"] == "store@tcp://0.0.0.0:5555"
    assert cfg["storage.ring_capacity"] != 500_000
    assert rows["collector.netflow_port"]["value"] == "2055 | 9995"
    assert rows["collector.netflow_port"]["source"] == "collector@a:1 | collector@b:2"
    assert rows["collector.bind_address"]["value"] == "0.0.0.0"
    assert rows["collector.bind_address"]["source"] == "collector@a:1, collector@b:2"
    assert rows["web.page_size"]["source"] == "web@7"
    assert "no running service" in rows["analysis.scan_threshold"]["source"]


def test_dashboard_says_when_memory_holds_less_than_10_minutes():
    args = ({"step_ms": 10_000, "points": [[NOW - 60_000, 10_000, 10, 1]]}, {"rows": []}, {"rows": []}, {"rows": []},
            {"CRITICAL": 0}, {"exporters": []}, 30)
    cut = views.dashboard(TimeRange.last("10m", NOW), *args, since_ms=NOW - 270_000, clamped=True)
    text = " ".join("".join(parse(page("dashboard.xhtml", **cut)).itertext()).split())
    assert "Throughput, the last 4 min 30 s" in text and "memory (storage.ring_capacity) holds the last 4 min 30 s" in text
    whole = views.dashboard(TimeRange.last("10m", NOW), *args, since_ms=NOW - 600_000, clamped=False)
    text = " ".join("".join(parse(page("dashboard.xhtml", **whole)).itertext()).split())
    assert "Throughput, last 10 min" in text and "ring_capacity" not in text


def test_dashboard_over_a_week_from_rollups():
    tr = TimeRange.from_query({"from": "2025-11-17T16:00", "to": "2025-11-24T16:00"}, NOW)
    step = tr.step_s()
    assert step == 3600
    points = [[tr.since_ms + i * 3_600_000, 3_600_000, 3600, 36] for i in range(168)]
    ctx = views.dashboard(tr, {"step_ms": 3_600_000, "points": points}, {"rows": [{"key": "10.0.0.1", "bytes": 5}]},
                          {"rows": []}, {"rows": []}, {}, {"exporters": []}, 30, step_s=step, spread=False)
    assert ctx["refresh"] == 0  # a past range does not change: no reload
    assert ctx["bps_chart"].peak == "8 kbps" and len(ctx["bps_chart"].points.split()) == 168
    assert ctx["bps_chart"].x_ticks[0][1] == "11-18"  # days on a week's axis
    root = parse(page("dashboard.xhtml", **ctx))
    text = " ".join("".join(root.itertext()).split())
    assert "Throughput, 2025-11-17 16:00 to 2025-11-24 16:00 UTC" in text and "One point per 1 h" in text
    assert root.find(f".//{XHTML_NS}meta[@http-equiv='refresh']") is None
    hrefs = [a.get("href") for a in root.iter(XHTML_NS + "a")]
    assert "/flows?from=2025-11-17T16%3A00Z&to=2025-11-24T16%3A00Z&src=10.0.0.1" in hrefs
    assert "/top.csv?from=2025-11-17T16%3A00Z&to=2025-11-24T16%3A00Z&by=src" in hrefs
    assert "/?range=24h" in hrefs and any(h.startswith("/?from=") for h in hrefs)  # presets and earlier/later


def test_overview_only_for_live_ranges_the_ring_holds():
    assert views.uses_overview(TimeRange.last("10m", NOW))
    assert not views.uses_overview(TimeRange.last("1h", NOW))
    assert views.uses_overview(TimeRange.last("1h", NOW), ring_ms=3_600_000)  # a ring configured for an hour
    past = TimeRange.last("10m", NOW).earlier()
    assert not views.uses_overview(past)  # a past range: series and top (rollups), never a clamped overview


def test_a_long_steps_filling_part_is_charted_as_its_rate_so_far():
    since, until = NOW - 3 * 3_600_000 - 900_000, NOW  # 3 h 15 min of hour steps: the last 15 min still filling
    step_ms = 3_600_000
    last = until // step_ms * step_ms
    reply = {"step_ms": step_ms, "points": [[last, 900_000, 900, 9]]}
    times, bps, pps, fps = views.series_rates(reply, since, until, 3600)
    elapsed_s = (until - last) / 1000
    assert times[-1] == last + (until - last) // 2
    assert bps[-1] == pytest.approx(900_000 * 8 / elapsed_s) and pps[-1] == pytest.approx(900 / elapsed_s)
    assert bps[:-1] == [0.0] * (len(bps) - 1)
