"""Non-flow events on the bus: advisories (topic ``advisory``), exporter health (``exporter``) and
interface names (``interfaces``).

Both are msgpack maps stamped with the envelope (see ``flowmodel.bus``). The fields below are the
contract between the collector, the analyzer, the store and the web; each is documented once here.
"""
from __future__ import annotations

SEVERITIES = ("CRITICAL", "WARNING", "INFO")  # most severe first
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}

# Lifecycle of one advisory key: raised once, updated while it persists, resolved when absent for
# analysis.resolve_after.
ADVISORY_STATES = ("raised", "updated", "resolved")

# Advisory event body (besides the envelope):
ADVISORY_FIELDS = {
    "key": "stable identity, '<analyzer>:<subject>', e.g. 'scan:172.16.0.55'",
    "analyzer": "analyzer name: top_talkers, anomaly, protocol_mix, scan, dns, asymmetry, health",
    "subject": "what the advisory is about (an address, a prefix, an exporter, a port)",
    "severity": "CRITICAL, WARNING or INFO",
    "state": "raised, updated or resolved",
    "first_seen": "ms since epoch (flow time) the condition was first seen",
    "last_seen": "ms since epoch (flow time) the condition was last seen",
    "title": "a few words for lists ('Port scan from 172.16.0.55')",
    "description": "one plain-language sentence with the numbers that justify it",
    "action": "the suggested action, one sentence",
    "evidence": "map of figures behind the description (numbers and short strings) plus window_start/window_end ms",
    "filter": "flow-explorer filter (flows query arguments: src, dst, addr, port, protocol, exporter, since, until)",
}

# Health event body on topic ``exporter`` (collectors every collector.stats_interval and at stop;
# the analyzer also publishes one with kind "analyzer" and no exporters, so the store can show the
# resource use of every service):
EXPORTER_EVENT_FIELDS = {
    "kind": "collector or analyzer",
    "collector": "instance id (same as the envelope source)",
    "process": "see PROCESS_FIELDS",
    "counters": "service-wide counters, e.g. {datagrams, flows, published_batches, bus_gaps, ...}",
    "listen": "list of 'host:port' the collector listens on",
    "socket": "per listen port: {port, rcvbuf_requested, rcvbuf_granted, kernel_drops}",
    "exporters": "list of per (exporter, observation_domain) maps, see EXPORTER_STATS_FIELDS: the whole table when exporters_full, else only the rows changed since the collector's previous event",
    "exporters_full": "true when exporters is the collector's whole table (its first event, about once a minute, its last, and when a store subscribes); false: changed rows only, the others as last reported (an event without it is whole)",
    "stats_interval": "seconds between this collector's health events (collector.stats_interval): a collector silent for three of them is taken as stopped",
    "config": "the service's effective config keys (its own section, bus and log), see service_config()",
}

# which config sections each service runs on (what its health event reports as "config")
SERVICE_CONFIG_SECTIONS = {"collector": ("collector.", "enrichment.", "bus.", "log."), "analyzer": ("analysis.", "bus.", "query.", "log."),
                           "store": ("storage.", "bus.", "log."), "web": ("web.", "query.", "log.")}


def service_config(cfg, service: str) -> dict:
    """The effective values (after the file and FLOWLENS_* overrides) of the keys ``service`` runs on,
    as plain JSON/msgpack values, so the About page shows what each process really uses."""
    prefixes = SERVICE_CONFIG_SECTIONS[service]
    out = {}
    for key, value in cfg.items():
        if key.startswith(prefixes):
            out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else \
                [v if isinstance(v, (str, int, float, bool)) else str(v) for v in value] \
                if isinstance(value, (list, tuple)) else str(value)
    return out

EXPORTER_STATS_FIELDS = {
    "exporter": "exporter address as text",
    "observation_domain": "v9 source id / IPFIX observation domain / v5 engine type<<8|id",
    "version": "last export version seen: 5, 9, 10 or 105 (sFlow v5)",
    "packets": "export packets received (cumulative since the collector started)",
    "flows": "flow records decoded (cumulative)",
    "reverse_flows": "reverse halves of RFC 5103 biflow records published as flows of their own (cumulative): each adds one flow to its record's",
    "decode_errors": "map reason -> count (cumulative)",
    "sequence_lost": "records (v5, IPFIX) or packets (v9) missing per the sequence numbers (forward jumps)",
    "sequence_backward": "backward jumps / resets of the sequence number",
    "sequence_resets": "large backward jumps taken as an exporter restart / counter reset, not loss",
    "enterprise_fields": "map field name (or 'PEN/id') -> records carrying that enterprise-specific IPFIX field (cumulative)",
    "nsel_events": "Cisco ASA NSEL: map firewall event (create, teardown, denied, ..., create_dropped, packets_lower_bound) -> records (cumulative)",
    "templates": "templates currently known (v9/IPFIX)",
    "templates_dropped": "map reason -> templates forgotten (cumulative): lifetime (not refreshed within collector.template_lifetime), exporter_cap / global_fields / session_cap (least recently refreshed session evicted at a cap; session_cap: collector.max_exporters sessions holding templates)",
    "pending_sets": "data sets held now, waiting for their template (their record count is unknown until it comes)",
    "pending_bytes": "bytes of those data sets",
    "pending_expired": "data sets that expired waiting for a template (cumulative; records unknown)",
    "pending_dropped": "map reason -> data sets not held or dropped (cumulative): exporter_bound, global_bound (collector.pending_max_bytes / pending_total_max_bytes), session_evicted",
    "sampling_unknown": "flows marked sampled at an unknown rate (sampling_rate 0; cumulative)",
    "time_unknown": "flows decoded without a time base (uptime times, boot time unknown): their times are anchored at the export time (cumulative)",
    "time_ahead_max_s": "seconds ahead of the collector's clock the furthest flow dropped as decode_errors.time_in_future ended (flows ending over a day ahead are dropped; 0 when none)",
    "first_seen": "ms since epoch",
    "last_seen": "ms since epoch",
    # only on the overflow row (exporter "other", domain 0): the pairs beyond collector.max_exporters,
    # whose counters above are summed in it
    "overflow": "true on the overflow row",
    "folded_domains": "distinct (exporter, observation domain) pairs counted in the overflow row",
    "folded_exporters": "distinct exporter addresses among them",
    "folded_capped": "true when the two counts stopped at their bound (then they mean 'at least')",
    "retired": "rows dropped to make room: silent for collector.template_lifetime while the table was full",
    "max_exporters": "the collector's collector.max_exporters",
}

# Interface event body on topic ``interfaces`` (bus.TOPIC_INTERFACES): what one source knows of one
# exporter's interfaces. The store keeps the newest per (exporter, ifindex, origin) in SQLite and
# names an interface from the first source in INTERFACE_SOURCES that has a name for it. The field
# is "origin", not "source": the envelope's "source" (the sender's instance id) is stamped over any
# "source" the body has (bus.Sequencer.stamp).
INTERFACE_SOURCES = ("options", "snmp", "config")  # precedence, highest first
INTERFACE_EVENT_FIELDS = {
    "exporter": "exporter address as text (the flows' exporter column)",
    "origin": "options (the exporter's IPFIX/v9 options data), snmp (IF-MIB polling) or config",
    "interfaces": "list of {ifindex (int), name (str, ifName / IE 82), description (str, ifAlias / IE 83, may be empty), "
                  "speed_bps (int, bits/s: ifHighSpeed * 1e6 or ifSpeed; 0 when unknown)}; at most INTERFACES_PER_EVENT",
    "complete": "true when interfaces is the source's whole table for this exporter (an SNMP walk); false: additions",
    "learnt_at": "ms since epoch",
}
INTERFACES_PER_EVENT = 4096
INTERFACE_NAME_MAX = 128  # characters kept of a name or description; longer ones are cut

# Interface counter event body on topic ``ifcounters`` (bus.TOPIC_IF_COUNTERS): what sFlow agents'
# if-counters records say each interface carried between two of its samples (the collector takes
# the deltas of the cumulative counters, flowlens_collector.sflow_counters). The store sums them per
# minute for the ``ifcounters`` query op.
IF_COUNTER_EVENT_FIELDS = {
    "rows": "list of IF_COUNTER_ROW_FIELDS maps, at most IF_COUNTER_ROWS_PER_EVENT",
}
IF_COUNTER_ROW_FIELDS = {
    "exporter": "sFlow agent address as text (the flows' exporter column)",
    "ifindex": "ifIndex of the interface",
    "time_ms": "when the sample that closes the interval was received, ms since epoch",
    "interval_ms": "time since the interface's previous sample",
    "speed_bps": "ifSpeed the agent reported, bits/s (0: unknown)",
    "in_octets": "octets received in the interval", "out_octets": "octets sent",
    "in_packets": "packets received (unicast + multicast + broadcast)", "out_packets": "packets sent",
    "in_errors": "inbound errors", "out_errors": "outbound errors",
    "in_discards": "inbound discards", "out_discards": "outbound discards",
    "resets": "1 when the counters were reset (agent reboot, cleared): the interval carries no traffic, 0 otherwise",
}
IF_COUNTER_ROWS_PER_EVENT = 4096

PROCESS_FIELDS = {
    "pid": "process id",
    "rss_bytes": "resident memory",
    "cpu_seconds": "user + system CPU time since start",
    "threads": "thread count",
    "started_at": "ms since epoch",
}


def process_stats(started_at_ms: int) -> dict:
    """This process's resource use, per PROCESS_FIELDS. Read from /proc where there is one: psutil
    costs each service about 2 MiB of RSS once imported; elsewhere (macOS) psutil answers."""
    import os

    cpu = os.times()
    try:
        with open("/proc/self/statm", "rb") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/status", "rb") as f:
            threads = next(int(line.split()[1]) for line in f if line.startswith(b"Threads:"))
    except (OSError, ValueError, StopIteration):
        import psutil

        p = psutil.Process()
        rss, threads = p.memory_info().rss, p.num_threads()
    return {"pid": os.getpid(), "rss_bytes": rss, "cpu_seconds": round(cpu.user + cpu.system, 3),
            "threads": threads, "started_at": started_at_ms}
