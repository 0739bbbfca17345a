"""The notifier's pure parts: which store rows become notifications (tracker), where they go (rules),
how they leave (grouping, rate limit, retry with backoff, bounds), and the config checks."""
import json

import pytest

from flowmodel.config import ConfigError, load_config
from flowlens_notifier import render, routing
from flowlens_notifier.outbox import Message, TargetOutbox
from flowlens_notifier.tracker import OVERLAP_MS, Tracker


def row(key, state, severity="WARNING", first=1000, updates=1, received=10_000, **extra):
    return {"key": key, "analyzer": key.split(":")[0], "subject": key.split(":", 1)[1], "severity": severity,
            "state": state, "first_seen": first, "last_seen": first, "title": f"about {key}", "description": "d",
            "action": "a", "evidence": {"ports": 300}, "filter": {"src": "10.0.5.20"}, "updates": updates,
            "received_at": received, **extra}


def told(tracker, rows):
    return [(n["key"], n["transition"]) for n in tracker.take(rows)]


# ------------------------------------------------------------------ tracker

def test_raised_escalated_resolved_each_told_once_and_overlap_rereads_are_not():
    t = Tracker()
    t.caught_up()  # past the first reading
    assert told(t, [row("scan:a", "raised")]) == [("scan:a", "raised")]
    assert told(t, [row("scan:a", "raised")]) == []  # the same version read again (the cursor's overlap)
    assert told(t, [row("scan:a", "updated", updates=2, received=11_000)]) == []  # same severity: nothing
    assert told(t, [row("scan:a", "updated", "CRITICAL", updates=3, received=12_000)]) == [("scan:a", "escalated")]
    assert told(t, [row("scan:a", "updated", "WARNING", updates=4, received=13_000)]) == []  # less severe: nothing
    assert told(t, [row("scan:a", "resolved", updates=5, received=14_000)]) == [("scan:a", "resolved")]
    assert told(t, [row("scan:a", "resolved", updates=6, received=15_000)]) == []  # resolved sent again
    # raised again after it resolved: a new episode (the store gives it its own first_seen and count)
    assert told(t, [row("scan:a", "raised", first=90_000, received=16_000)]) == [("scan:a", "raised")]
    assert t.query_after() == 16_000 - OVERLAP_MS


def test_first_reading_tells_open_advisories_but_not_old_resolved_ones():
    t = Tracker()
    assert told(t, [row("scan:old", "resolved", updates=3), row("scan:open", "updated", updates=4)]) == [
        ("scan:open", "raised")]
    t.caught_up()
    # after the baseline, one raised and resolved between two looks is told once, as resolved
    assert told(t, [row("dns:b", "resolved", updates=2, received=20_000)]) == [("dns:b", "resolved")]


def test_state_round_trip_keeps_what_was_told():
    t = Tracker()
    t.caught_up()
    t.take([row("scan:a", "raised")])
    again = Tracker.from_state(json.loads(json.dumps(t.to_state())), 100)
    assert told(again, [row("scan:a", "raised")]) == []
    assert told(again, [row("scan:a", "resolved", updates=2)]) == [("scan:a", "resolved")]


def test_tracked_keys_are_bounded_and_counted():
    t = Tracker(tracked_max=100)
    t.take([row(f"scan:{i}", "raised", received=1000 + i) for i in range(150)])
    t.caught_up()
    assert len(t.keys) == 100 and t.forgotten == 50
    assert "scan:149" in t.keys and "scan:0" not in t.keys


# ------------------------------------------------------------------ rules

RULES = [{"targets": ["chat"], "severity": ["CRITICAL"], "analyzer": [], "subject": [], "network": []},
         {"targets": ["siem"], "severity": [], "analyzer": ["scan"], "subject": [], "network": ["10.0.0.0/8"]},
         {"targets": ["mail"], "severity": [], "analyzer": [], "subject": ["192.168.*"], "network": []}]


def test_rules_route_by_severity_analyzer_network_and_subject():
    names = ["chat", "siem", "mail"]
    assert routing.route(row("scan:10.0.5.20 port 22", "raised", "CRITICAL"), RULES, names) == ["chat", "siem"]
    assert routing.route(row("scan:172.16.0.1", "raised", "WARNING", filter={}), RULES, names) == []
    assert routing.route(row("dns:192.168.1.9", "raised", filter={}), RULES, names) == ["mail"]
    assert routing.route(row("protocol_mix:telnet:10.1.1.1", "raised", filter={}), RULES[1:2], names) == []  # not scan
    assert routing.route(row("scan:telnet:10.1.1.1", "raised", filter={}), RULES[1:2], names) == ["siem"]
    assert routing.route(row("scan:x", "raised"), [], names) == names  # no rules: every target


# ------------------------------------------------------------------ outbox

def outbox(**kw):
    return TargetOutbox("hook", **{"group_wait_ms": 1000, "group_interval_ms": 60_000, "queue_max": 5000,
                                   "max_backoff_ms": 8000, "retry_for_ms": 3_600_000, **kw})


def test_a_burst_goes_as_one_message_and_the_next_waits_for_the_interval():
    ob = outbox()
    for i in range(1000):
        ob.add({"key": f"k{i}"}, 0)
    assert ob.due(500) is None  # group_wait gathers the burst
    m = ob.due(1000)
    assert len(m.items) == 1000 and m.id == "hook-1"
    ob.result(m, True, 1100)
    ob.add({"key": "late"}, 2000)
    assert ob.due(30_000) is None and ob.next_event_ms() == 61_000  # one message per interval at most
    m2 = ob.due(61_000)
    assert [n["key"] for n in m2.items] == ["late"] and m2.id == "hook-2"
    assert ob.stats()["sent"] == 1 and ob.stats()["notifications_sent"] == 1000


def test_failed_message_retried_with_growing_waits_then_dropped_and_counted():
    ob = outbox(retry_for_ms=20_000)
    ob.add({"key": "a"}, 0)
    m = ob.due(1000)
    waits, now = [], 1000
    while ob.current is not None:
        ob.result(m, False, now, "connection refused")
        if ob.current is None:
            break
        waits.append(m.next_try_ms - now)
        now = m.next_try_ms
        assert ob.due(now) is m  # the same message, the same id
    assert waits == [1000, 2000, 4000, 8000, 8000]  # capped at max_backoff
    s = ob.stats()
    assert s["failed"] == 6 and s["retried"] == 5 and s["dropped"] == 1 and s["sent"] == 0
    assert s["failures_in_a_row"] == 6 and "refused" in s["last_error"]


def test_queue_bound_drops_the_oldest_and_counts_them():
    ob = outbox(queue_max=3)
    for i in range(5):
        ob.add({"key": f"k{i}"}, 0)
    assert [n["key"] for n in ob.due(1000).items] == ["k2", "k3", "k4"]
    assert ob.stats()["dropped"] == 2


def test_outbox_state_round_trip_keeps_the_message_under_way():
    ob = outbox()
    ob.add({"key": "a"}, 0)
    m = ob.due(1000)
    ob.result(m, False, 1000, "timeout")
    ob.add({"key": "b"}, 1500)
    again = outbox()
    again.load_state(json.loads(json.dumps(ob.to_state())))
    assert again.current.id == "hook-1" and again.current.attempts == 1 and len(again.pending) == 1


# ------------------------------------------------------------------ forms

def test_forms_carry_sentence_action_link_and_syslog_framing():
    note = {**row("scan:10.0.5.20", "raised", "CRITICAL"), "transition": "raised",
            "filter": {"src": "10.0.5.20", "since": 1_700_000_000_000, "until": 1_700_000_060_000}}
    m = Message("hook-7", [note] + [{**note, "key": f"scan:{i}"} for i in range(3)], 0)
    body = json.loads(render.webhook_body(m, "json", "https://fl.example.net/", 2))
    assert body["message_id"] == "hook-7" and len(body["notifications"]) == 4
    assert body["notifications"][0]["link"].startswith("https://fl.example.net/flows?src=10.0.5.20&range=custom")
    assert "and 2 more advisories" in body["text"] and body["text"].startswith("FlowLens: CRITICAL raised")
    assert set(json.loads(render.webhook_body(m, "text", "", 2))) == {"text"}
    mail = render.email(m, {"from": "fl@example.net", "to": ["noc@example.net"]}, "https://fl.example.net", 10)
    content = mail.get_content()
    assert "Action: a" in content and "Evidence for scan:10.0.5.20: ports=300" in content
    recs = render.syslog_records(m, 16, "flowlens", 2, hostname="box", now_ms=0)
    assert len(recs) == 3 and recs[0].startswith(b"<130>1 1970-01-01T00:00:00.000Z box flowlens ")
    assert b'[flowlens@32473 key="scan:10.0.5.20"' in recs[0] and recs[2].startswith(b"<133>1 ")


# ------------------------------------------------------------------ config

def test_config_checks_targets_and_rules(tmp_path):
    good = {"notify.targets": [{"name": "m", "type": "email", "host": "smtp", "from": "a@b", "to": "c@d"}],
            "notify.rules": [{"severity": "WARNING", "targets": ["m"]}]}
    cfg = load_config(overrides=good, env={})
    assert cfg["notify.targets"][0]["port"] == 25 and cfg["notify.targets"][0]["to"] == ["c@d"]
    assert cfg["notify.rules"][0]["severity"] == ["CRITICAL", "WARNING"]
    for bad, words in [({"notify.targets": [{"name": "x", "type": "pager"}]}, "type must be one of"),
                       ({"notify.targets": [{"name": "x", "type": "webhook", "url": "ftp://h"}]}, "http://"),
                       ({"notify.targets": [{"name": "x", "type": "syslog", "host": "h", "prot": "tcp"}]}, "unknown option 'prot'"),
                       ({"notify.rules": [{"severity": "LOUD", "targets": ["m"]}]}, "severity"),
                       ({"notify.rules": [{"network": "10.0.0.0/33", "targets": ["m"]}]}, "CIDR")]:
        with pytest.raises(ConfigError, match=words):
            load_config(overrides=bad, env={})


def test_discard_takes_back_waiting_notifications_but_not_the_message_under_way():
    ob = outbox(group_interval_ms=10_000)
    ob.add({"key": "a"}, 0)
    under_way = ob.due(1000)
    ob.add({"key": "a"}, 1500)
    ob.add({"key": "b"}, 1500)
    assert ob.discard(lambda n: n["key"] == "a") == 1
    assert [n["key"] for _t, n in ob.pending] == ["b"] and under_way.items == [{"key": "a"}]
    assert ob.stats()["suppressed"] == 1


def test_an_untold_advisory_is_told_as_raised_at_its_next_version():
    t = Tracker()
    t.caught_up()
    assert told(t, [row("scan:a", "raised")]) == [("scan:a", "raised")]
    t.untold("scan:a")  # silenced: not sent
    assert told(t, [row("scan:a", "updated", updates=2)]) == [("scan:a", "raised")]
