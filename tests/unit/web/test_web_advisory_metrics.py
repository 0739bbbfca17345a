"""The advisories and the notifier on /metrics: open advisories counted by severity and analyzer, an
info series per open advisory up to its bound, each target's deliveries; label values escaped."""
from flowlens_web.advisory_metrics import lines


def adv(key, severity, analyzer="scan", state="raised", last_seen=1):
    return {"key": key, "severity": severity, "analyzer": analyzer, "subject": key, "state": state,
            "title": 'Port "scan"\n', "last_seen": last_seen}


def test_active_gauges_info_series_and_notifier_counters():
    advs = [adv("a", "CRITICAL"), adv("b", "CRITICAL"), adv("c", "WARNING", "dns"), adv("d", "INFO", state="resolved")]
    exporters = {"collectors": [{"kind": "collector", "counters": {"targets": {"x": {"sent": 9}}}},
                                {"kind": "notifier", "counters": {"targets": {"hook": {"sent": 3, "failed": 2, "pending": 1,
                                                                                     "failures_in_a_row": 0}}}}]}
    text = "\n".join(lines(advs, exporters, max_info=2))
    assert 'flowlens_advisories_active{severity="CRITICAL",analyzer="scan"} 2' in text
    assert 'flowlens_advisories_active{severity="WARNING",analyzer="dns"} 1' in text
    assert 'severity="INFO"' not in text  # resolved: not active
    assert text.count("flowlens_advisory_info{") == 2 and "flowlens_advisory_info_omitted 1" in text
    assert 'title="Port \\"scan\\"\\n"' in text
    assert 'flowlens_notify_messages_sent_total{target="hook"} 3' in text
    assert 'flowlens_notify_failed_total{target="hook"} 2' in text and 'target="x"' not in text
    assert "flowlens_notify" not in "\n".join(lines(None, {"collectors": []}, 2))  # no notifier: no series
