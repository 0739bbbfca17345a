"""/metrics under a flood of exporters (issue 13 item 5): the web.metrics_max_exporters exporters with
the most flows get series of their own, the rest (and the collectors' own overflow rows) one
exporter="other" series, so the scrape stays bounded; sums stay true."""
import re

from flowlens_web import metrics

CID = "collector@a/2055"


def row(i, flows, **kv):
    return {"exporter": f"127.1.0.{i}", "observation_domain": i, "collector": CID, "flows": flows, "packets": flows // 10,
            "decode_errors": {"short": 1}, "pending_sets": 1, "last_seen": 1_000 + i, "store_flows": flows, **kv}


def body(rows, n):
    reply = {"exporters": rows, "collectors": [{"collector": CID, "kind": "collector", "last_seen": 5, "counters": {},
                                                "socket": []}]}
    return metrics.render(metrics.LatencyHistogram(), reply, None, max_exporters=n)


def series(text, name):
    out = {}
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            assert (labels.get("exporter"), labels.get("reason")) not in out, "a label set given twice"
            out[(labels.get("exporter"), labels.get("reason"))] = float(m.group(2))
    return out


def test_top_exporters_by_flows_and_one_other_series_summing_the_rest():
    rows = [row(i, 100 * i) for i in range(1, 201)]
    rows.append({"exporter": "other", "observation_domain": 0, "collector": CID, "overflow": True, "flows": 7,
                 "packets": 3, "folded_domains": 5000, "last_seen": 9_999})
    text = body(rows, 10)
    flows = series(text, "flowlens_exporter_flows_decoded_total")
    assert len(flows) == 11
    assert {e for e, _ in flows} == {f"127.1.0.{i}" for i in range(191, 201)} | {"other"}
    assert flows[("other", None)] == sum(100 * i for i in range(1, 191)) + 7
    assert sum(flows.values()) == sum(r["flows"] for r in rows)
    assert series(text, "flowlens_exporter_decode_errors_total")[("other", "short")] == 190
    assert series(text, "flowlens_exporter_pending_data_sets")[("other", None)] == 190
    assert series(text, "flowlens_exporter_last_seen_seconds")[("other", None)] == 9.999  # the newest
    stored = series(text, "flowlens_exporter_flows_stored_total")
    assert len(stored) == 11 and stored[("other", None)] == sum(100 * i for i in range(1, 191))


def test_a_scrape_of_a_flood_stays_small():
    rows = [row(i % 250, i) | {"exporter": f"127.{i // 62500 + 1}.{i // 250 % 250}.{i % 250}"} for i in range(10_000)]
    assert len(body(rows, 100)) < 150_000  # about 1.2 kB per exporter with series of its own
    assert len(body(rows, 100_000)) > 2_000_000  # without the bound: every exporter


def test_under_the_bound_no_other_series():
    text = body([row(1, 5), row(2, 6)], 100)
    assert "other" not in text


def test_the_stores_own_other_row_joins_the_other_series():
    rows = [row(i, 100 * i) for i in range(1, 4)]
    rows.append({"exporter": "other", "observation_domain": None, "collector": None, "store_flows": 5000})
    stored = series(body(rows, 2), "flowlens_exporter_flows_stored_total")
    assert stored == {("127.1.0.3", None): 300, ("127.1.0.2", None): 200, ("other", None): 100 + 5000}
