"""/metrics series for the advisories and the notifier (issue 16), so an existing Alertmanager can
route them: ``flowlens_advisories_active{severity,analyzer}`` (open advisories), one
``flowlens_advisory_info`` series per open advisory (the most severe ``max_info`` of them; the rest
counted), and the notifier's deliveries per target from its health event. Pure: replies in, lines out.
"""
from __future__ import annotations

from typing import Mapping

from flowmodel.events import SEVERITY_RANK

from .metrics import _labels, _num

NOTIFY_SERIES = (  # counter key of a target (flowlens_notifier outbox) -> series
    ("sent", "flowlens_notify_messages_sent_total", "counter", "messages delivered to the target"),
    ("notifications_sent", "flowlens_notify_notifications_sent_total", "counter", "advisory notifications in them"),
    ("failed", "flowlens_notify_failed_total", "counter", "delivery tries that failed"),
    ("retried", "flowlens_notify_retried_total", "counter", "delivery tries after a failure"),
    ("dropped", "flowlens_notify_dropped_total", "counter", "notifications dropped: notify.queue_max, or not delivered within notify.retry_for"),
    ("suppressed", "flowlens_notify_suppressed_total", "counter", "waiting notifications an acknowledgement or silence took back"),
    ("pending", "flowlens_notify_pending", "gauge", "notifications waiting for the target"),
    ("failures_in_a_row", "flowlens_notify_failures_in_a_row", "gauge", "failed tries since the target last took a message"),
)


def lines(advisories: list | None, exporters: Mapping | None, max_info: int) -> list[str]:
    out: list[str] = []
    if advisories is not None:
        open_ = [a for a in advisories if isinstance(a, Mapping) and a.get("state") != "resolved"]
        counts: dict[tuple[str, str], int] = {}
        for a in open_:
            k = (str(a.get("severity", "")), str(a.get("analyzer", "")))
            counts[k] = counts.get(k, 0) + 1
        out += ["# HELP flowlens_advisories_active open advisories by severity and analyzer",
                "# TYPE flowlens_advisories_active gauge"]
        out += [f"flowlens_advisories_active{_labels(severity=s, analyzer=n)} {c}" for (s, n), c in sorted(counts.items())]
        ranked = sorted(open_, key=lambda a: (SEVERITY_RANK.get(a.get("severity"), 9), -int(a.get("last_seen") or 0)))
        out += ["# HELP flowlens_advisory_info one series (value 1) per open advisory, the most severe first",
                "# TYPE flowlens_advisory_info gauge"]
        out += [f"flowlens_advisory_info{_labels(key=a.get('key', ''), analyzer=a.get('analyzer', ''), subject=a.get('subject', ''), severity=a.get('severity', ''), state=a.get('state', ''), title=a.get('title', ''))} 1"
                for a in ranked[:max_info]]
        out += ["# HELP flowlens_advisory_info_omitted open advisories beyond the info series' bound",
                "# TYPE flowlens_advisory_info_omitted gauge", f"flowlens_advisory_info_omitted {max(0, len(ranked) - max_info)}"]
    targets: dict[str, Mapping] = {}
    for c in (exporters or {}).get("collectors") or []:
        if isinstance(c, Mapping) and c.get("kind") == "notifier" and isinstance(c.get("counters"), Mapping):
            for name, t in (c["counters"].get("targets") or {}).items():
                if isinstance(t, Mapping):
                    targets[str(name)] = t
    if targets:
        for key, name, kind, help_ in NOTIFY_SERIES:
            out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
            out += [f"{name}{_labels(target=t)} {_num(v[key])}" for t, v in sorted(targets.items()) if key in v]
    return out
