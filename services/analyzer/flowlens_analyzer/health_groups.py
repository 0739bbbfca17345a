"""Health findings summarised for floods: when many exporters show the same condition (a hundred
exporters going silent at once, a flood of spoofed sources sending garbage), one advisory names
how many and the first few, instead of one advisory per exporter; and a collector whose exporter
table is full (collector.max_exporters) says how much it folded.

"Many" counts the distinct exporters with the condition in this analysis and in the ones of the
last analysis.resolve_after (while their advisories would still be open), so a flood that trickles
in over several analyses is grouped too: at most GROUP_AT advisories of one kind, then the group.
"""
from __future__ import annotations

from typing import Any

from .common import Finding
from .wording import fmt_int, plural

NAME = "health"
GROUP_AT = 5      # more findings than this of one kind in one analysis become one advisory
NAMED = 5         # exporters the grouped advisory names
RECENT_MAX = 10_000  # exporters remembered per kind for the count (the oldest go first)

# kind (a per-exporter finding's subject, first word) -> (title after the count, the condition in a
# sentence, what to do, the evidence figure summed, if any)
KINDS = {
    "exporter": ("stopped sending", "stopped sending (silent for at least analysis.exporter_silence)",
                 "If they are real exporters, check that they are up and the path to the collector is open; "
                 "a flood of spoofed sources also ends this way", None),
    "sequence": ("lose export packets", "lost export records or packets on the way (sequence gaps)",
                 "Check the paths from the exporters to the collector for drops", "sequence_lost"),
    "decode": ("send undecodable packets", "sent export packets that could not be decoded",
               "Check the exporters' flow export settings; many new sources at once may be spoofed", "decode_errors"),
    "future": ("send flow times far ahead", "sent flows ending over a day after the collector's clock",
               "Check the exporters' clocks (NTP)", "time_in_future_flows"),
    "templates": ("miss templates", "had data sets expire waiting for their template",
                  "Make the exporters send templates more often", "pending_expired"),
    "waiting": ("have data waiting for templates", "have data sets waiting for their template",
                "If this persists, make the exporters send their templates", "pending_sets"),
    "late": ("send late flows", "sent flows that arrived after their window was analysed",
             "Check the exporters' clocks and active flow timeouts, or raise analysis.watermark", "late_flows"),
    "clock": ("have clocks ahead", "sent flows ending after the analyzer's clock",
              "Check the exporters' clocks (NTP)", "future_flows"),
}


def group(findings: list[Finding], recent: dict | None = None, now_ms: int = 0, window_ms: int = 0) -> list[Finding]:
    """``findings`` with the per-exporter findings of each kind seen for more than GROUP_AT
    exporters (in this analysis, and in ``recent`` ones within ``window_ms``) replaced by one
    advisory of that kind (severity: the highest among them). ``recent``: kind -> {subject: (ms,
    name)}, kept by the caller between analyses."""
    recent = {} if recent is None else recent
    by_kind: dict[str, list[Finding]] = {}
    for f in findings:
        kind = f.subject.split(" ", 1)[0]
        if kind in KINDS and " " in f.subject and "exporter" in f.evidence:
            by_kind.setdefault(kind, []).append(f)
    grouped: dict[str, list[str]] = {}
    for kind in list(recent):
        seen = recent[kind]
        while seen and next(iter(seen.values()))[0] < now_ms - window_ms:
            del seen[next(iter(seen))]  # oldest first: entries are re-inserted when seen again
        if not seen and kind not in by_kind:
            del recent[kind]
    for kind, fs in by_kind.items():
        seen = recent.setdefault(kind, {})
        for f in fs:
            seen.pop(f.subject, None)
            seen[f.subject] = (now_ms, _name(f))
        while len(seen) > RECENT_MAX:
            del seen[next(iter(seen))]
        if len(fs) > GROUP_AT or len(seen) > GROUP_AT:
            grouped[kind] = [name for _ms, name in reversed(seen.values())]  # the newest first
    if not grouped:
        return findings
    out = [f for f in findings if f.subject.split(" ", 1)[0] not in grouped or "exporter" not in f.evidence]
    for kind in sorted(grouped):
        out.append(_grouped(kind, by_kind[kind], grouped[kind]))
    return out


def _name(f: Finding) -> str:
    od = f.evidence.get("observation_domain")
    return f"{f.evidence['exporter']}" + (f"/{od}" if od not in (None, "") else "")


def _grouped(kind: str, fs: list[Finding], names: list[str]) -> Finding:
    """One advisory for the findings ``fs`` of this analysis; ``names``: every exporter (exporter/
    domain) with the condition lately, the newest first, which it counts and names the first of."""
    title, condition, action, figure = KINDS[kind]
    severity = min((f.severity for f in fs), key=lambda s: ("CRITICAL", "WARNING", "INFO").index(s))
    ordered = [_name(f) for f in fs]
    now = set(ordered)
    names = ordered + [n for n in names if n not in now]
    addresses = len({n.split("/", 1)[0] for n in names})
    rest = len(names) - NAMED
    listed = ", ".join(names[:NAMED]) + (f" and {fmt_int(rest)} more" if rest > 0 else "")
    total = sum(float(f.evidence.get(figure) or 0) for f in fs) if figure else 0.0
    amount = f" ({fmt_int(total)} {figure.replace('_', ' ')})" if figure and total else ""
    starts = [int(f.evidence.get("window_start") or 0) for f in fs]
    ends = [int(f.evidence.get("window_end") or 0) for f in fs]
    since = [int(f.filter["since"]) for f in fs if "since" in f.filter]
    until = [int(f.filter["until"]) for f in fs if "until" in f.filter]
    evidence: dict[str, Any] = {"exporters": len(names), "addresses": addresses, "named": names[:NAMED],
                                "now": len(fs), "window_start": min(starts), "window_end": max(ends)}
    if figure:
        evidence[figure] = int(total)
    flt = {k: v for k, v in (("since", min(since) if since else None), ("until", max(until) if until else None))
           if v is not None}
    return Finding(
        NAME, f"{kind} many exporters", severity, f"{fmt_int(len(names))} exporters {title}",
        f"{plural(len(names), 'exporter')} (observation domains, from {plural(addresses, 'address', 'addresses')}) "
        f"{condition}{amount}: {listed}",
        action, evidence, flt, figures={"exporters": float(len(names)), "total": total})


def folded_finding(cid: str, row: dict, counters: dict, now_ms: int) -> Finding | None:
    """A collector's overflow row (its exporter table is full): how many (exporter, domain) pairs
    and flows it counts together as 'other'."""
    pairs = int(row.get("folded_domains") or 0)
    if not pairs:
        return None
    at_least = "at least " if row.get("folded_capped") else ""
    bound = int(row.get("max_exporters") or counters.get("exporters_max") or 0)
    return Finding(
        NAME, f"folded {cid}", "WARNING", f"Collector {cid} tracks no more exporters",
        f"Collector {cid} keeps counters for {fmt_int(bound)} (exporter, observation domain) pairs "
        f"(collector.max_exporters); {at_least}{plural(pairs, 'more pair')} from {at_least}"
        f"{plural(int(row.get('folded_exporters') or 0), 'address', 'addresses')} are counted together as "
        f"exporter 'other': {plural(int(row.get('flows') or 0), 'flow')} in {plural(int(row.get('packets') or 0), 'packet')}",
        "If these are real exporters, raise collector.max_exporters; a flood of new sources is often spoofed "
        "traffic, which the collector still decodes and counts",
        {"collector": cid, "max_exporters": bound, "folded_domains": pairs,
         "folded_exporters": int(row.get("folded_exporters") or 0), "folded_capped": bool(row.get("folded_capped")),
         "flows": int(row.get("flows") or 0), "packets": int(row.get("packets") or 0),
         "window_start": int(row.get("first_seen") or now_ms), "window_end": now_ms},
        {"since": int(row.get("first_seen") or now_ms), "until": now_ms},
        figures={"folded": float(pairs)})


def overflow_findings(state, now_ms: int) -> list[Finding]:
    """A collector folding exporters into its overflow row since the last analysis (more pairs or
    more flows there): one WARNING per collector; it resolves once nothing more is folded."""
    findings = []
    for cid, row in sorted(state.overflow.items()):
        now = (int(row.get("folded_domains") or 0), int(row.get("flows") or 0))
        before = state.overflow_seen.get(cid)
        state.overflow_seen[cid] = now
        if before is not None and now[0] <= before[0] and now[1] <= before[1]:
            continue
        counters = (state.collectors.get(cid) or {}).get("counters")
        f = folded_finding(cid, row, counters if isinstance(counters, dict) else {}, now_ms)
        if f is not None:
            findings.append(f)
    return findings

