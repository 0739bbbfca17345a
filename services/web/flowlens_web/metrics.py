"""Prometheus text exposition: the web's own request latencies plus figures read from the store."""
from __future__ import annotations

import bisect
import threading
from typing import Mapping

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class LatencyHistogram:
    """Request latency per route (cumulative buckets, sum and count), safe across threads."""

    def __init__(self, buckets=LATENCY_BUCKETS_S):
        self.buckets = tuple(buckets)
        self._lock = threading.Lock()
        self._data: dict[tuple[str, str], list] = {}  # (route, status class) -> [counts..., sum, count]

    def observe(self, route: str, status: int, seconds: float) -> None:
        key = (route, f"{status // 100}xx")
        i = bisect.bisect_left(self.buckets, seconds)
        with self._lock:
            d = self._data.get(key)
            if d is None:
                d = self._data[key] = [0] * (len(self.buckets) + 1) + [0.0, 0]
            d[i] += 1
            d[-2] += seconds
            d[-1] += 1

    def snapshot(self) -> dict[tuple[str, str], list]:
        with self._lock:
            return {k: list(v) for k, v in self._data.items()}


def label(value) -> str:
    """A label value escaped as the exposition format requires (backslash, quote, newline)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**kv) -> str:
    return "{" + ",".join(f'{k}="{label(v)}"' for k, v in kv.items()) + "}"


def _num(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "NaN"
    return str(int(f)) if f == int(f) and abs(f) < 2**53 else repr(f)


def render(histogram: LatencyHistogram, exporters: Mapping | None, status: Mapping | None,
           max_exporters: int = 100, web_counters: Mapping[str, tuple[str, str, float]] | None = None) -> str:
    """The exposition text. Per-exporter series: the ``max_exporters`` (web.metrics_max_exporters)
    exporters with the most flows, and one exporter="other" series summing the rest (and what the
    collectors themselves folded), so a flood of sources cannot grow a scrape without bound.
    ``web_counters``: the web's own figures, name -> (type, help, value)."""
    out: list[str] = []

    def family(name: str, kind: str, help_: str):
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")

    for name, (kind, help_, value) in (web_counters or {}).items():
        family(name, kind, help_)
        out.append(f"{name} {_num(value)}")

    family("flowlens_web_request_duration_seconds", "histogram", "web request latency by route")
    for (route, status_class), d in sorted(histogram.snapshot().items()):
        cum = 0
        for le, n in zip(histogram.buckets, d):
            cum += n
            out.append(f"flowlens_web_request_duration_seconds_bucket{_labels(route=route, status=status_class, le=le)} {cum}")
        cum += d[len(histogram.buckets)]
        out.append(f"flowlens_web_request_duration_seconds_bucket{_labels(route=route, status=status_class, le='+Inf')} {cum}")
        out.append(f"flowlens_web_request_duration_seconds_sum{_labels(route=route, status=status_class)} {d[-2]:.6f}")
        out.append(f"flowlens_web_request_duration_seconds_count{_labels(route=route, status=status_class)} {d[-1]}")

    family("flowlens_store_up", "gauge", "1 when the store answered the web's queries for this scrape")
    out.append(f"flowlens_store_up {1 if status is not None else 0}")

    if exporters is not None:
        rows = [e for e in exporters.get("exporters") or [] if isinstance(e, Mapping)]
        # the collector's counters exist for exporters a collector reported; the store also lists
        # exporters it only has flows of (from the bus), with no domain and no counters
        exps = top_exporters(current_exporter_rows(rows, exporters), max_exporters)
        per = [("packets", "flowlens_exporter_packets_received_total", "export packets received per exporter"),
               ("flows", "flowlens_exporter_flows_decoded_total", "flow records decoded per exporter"),
               ("reverse_flows", "flowlens_exporter_reverse_flows_total", "reverse halves of RFC 5103 biflow records decoded per exporter (each is a flow of its own)"),
               ("sequence_lost", "flowlens_exporter_flows_lost_total", "records (v5, IPFIX) or packets (v9) missing per the exporter's sequence numbers"),
               ("sequence_resets", "flowlens_exporter_sequence_resets_total", "times the exporter's sequence numbers started again (exporter restarts; not counted as lost)"),
               ("pending_expired", "flowlens_exporter_data_sets_expired_total", "data sets dropped after waiting too long for their template"),
               ("sampling_unknown", "flowlens_exporter_sampling_unknown_total", "flows from a sampled exporter whose rate was not known yet"),
               ("time_unknown", "flowlens_exporter_time_unknown_total", "flows without a usable time base")]
        for field, name, help_ in per:
            family(name, "counter", help_)
            for e in exps:
                out.append(f"{name}{_labels(exporter=e.get('exporter', ''), observation_domain=e.get('observation_domain', ''))} {_num(e.get(field) or 0)}")
        for field, name, kind, help_ in (
                ("pending_sets", "flowlens_exporter_pending_data_sets", "gauge", "data sets waiting for their template now"),
                ("pending_bytes", "flowlens_exporter_pending_bytes", "gauge", "bytes of data sets waiting for their template now"),
                ("time_ahead_max_s", "flowlens_exporter_time_ahead_max_seconds", "gauge", "how far after the collector's clock the furthest flow dropped as time_in_future ended")):
            family(name, kind, help_)
            for e in exps:
                out.append(f"{name}{_labels(exporter=e.get('exporter', ''), observation_domain=e.get('observation_domain', ''))} {_num(e.get(field) or 0)}")
        for field, name, help_ in (
                ("decode_errors", "flowlens_exporter_decode_errors_total", "records or packets dropped as undecodable, by reason (time_in_future: flows ending over a day ahead of the collector's clock)"),
                ("pending_dropped", "flowlens_exporter_data_sets_dropped_total", "data sets refused while waiting for a template (memory bounds), by reason"),
                ("templates_dropped", "flowlens_exporter_templates_dropped_total", "templates expired or evicted, by reason")):
            family(name, "counter", help_)
            for e in exps:
                errs = e.get(field) or {}
                if isinstance(errs, Mapping):
                    for reason, n in sorted(errs.items()):
                        out.append(f"{name}{_labels(exporter=e.get('exporter', ''), observation_domain=e.get('observation_domain', ''), reason=reason)} {_num(n)}")
        family("flowlens_exporter_last_seen_seconds", "gauge", "unix time of the exporter's last packet")
        for e in exps:
            if e.get("last_seen"):
                out.append(f"flowlens_exporter_last_seen_seconds{_labels(exporter=e.get('exporter', ''), observation_domain=e.get('observation_domain', ''))} {int(e['last_seen']) / 1000:.3f}")
        family("flowlens_exporter_flows_stored_total", "counter", "flows the store received per exporter address")
        stored: dict[str, int] = {}
        for e in rows:  # the store counts per address; collector rows repeat it once per domain
            stored[str(e.get("exporter", ""))] = int(e.get("store_flows") or 0)
        beyond = stored.pop(OTHER, None)  # the store's own row of addresses beyond its bound
        ranked = sorted(stored.items(), key=lambda kv: (-kv[1], kv[0]))
        rest = sum(n for _name, n in ranked[max_exporters:]) + (beyond or 0)
        for name, n in sorted(ranked[:max_exporters]) + ([(OTHER, rest)] if len(ranked) > max_exporters or beyond is not None else []):
            out.append(f"flowlens_exporter_flows_stored_total{_labels(exporter=name)} {n}")
        family("flowlens_collector_kernel_drops_total", "counter", "datagrams the kernel dropped on a collector socket")
        for ident, c in sorted(current_collectors(exporters).items()):
            for s in c.get("socket") or []:
                if isinstance(s, Mapping):
                    out.append(f"flowlens_collector_kernel_drops_total{_labels(collector=ident, port=s.get('port', ''))} {_num(s.get('kernel_drops') or 0)}")
    out += delivery_lines(exporters, status)

    if status is not None:
        for name, kind, help_, paths in (
            ("flowlens_bus_gaps_total", "counter", "bus messages the store missed (envelope seq gaps)", ("bus.gaps_total",)),
            ("flowlens_bus_bad_messages_total", "counter", "bus messages the store could not decode", ("bus.bad_messages",)),
            ("flowlens_ring_fill_ratio", "gauge", "fraction of the store's in-memory ring in use", ("ring.fill_ratio",)),
            ("flowlens_ring_flows", "gauge", "flows held in the store's ring", ("ring.fill",)),
            ("flowlens_ring_bytes", "gauge", "memory the store's ring takes: its compressed blocks and the open segment", ("ring.bytes",)),
            ("flowlens_sqlite_size_bytes", "gauge", "size of the SQLite database file", ("sqlite.size_bytes",)),
            ("flowlens_sqlite_rows", "gauge", "flows held in SQLite partitions", ("sqlite.rows",)),
            ("flowlens_store_flows_received_total", "counter", "flows the store received from the bus", ("flows_in",)),
            ("flowlens_store_flows_committed_total", "counter", "flows committed to SQLite", ("flows_committed",)),
            ("flowlens_store_flows_shed_total", "counter", "flows the store dropped because its write queue was full", ("write_queue.shed_flows",)),
            ("flowlens_store_flows_out_of_range_total", "counter", "flows dropped because their time would open a table outside the retention window past storage.max_partitions", ("sqlite.out_of_range_flows",)),
            ("flowlens_store_flows_size_pruned_total", "counter", "flows dropped with the oldest partitions to keep the SQLite file under storage.max_bytes", ("sqlite.size_pruned_flows",)),
            ("flowlens_store_partitions_future_pruned_total", "counter", "SQLite partitions dated over a day ahead dropped at store start (written before the collector refused such times)", ("sqlite.future_pruned_partitions",)),
            ("flowlens_store_advisories_taken_total", "counter", "advisory events the store committed from their senders' confirmed streams", ("events.taken",)),
            ("flowlens_store_advisories_duplicate_total", "counter", "advisory events sent again that the store already held (dropped, not stored twice)", ("events.duplicates",)),
            ("flowlens_store_advisories_lost_total", "counter", "advisory events their senders dropped past their bound before the store confirmed them", ("events.lost",)),
            ("flowlens_store_peers_admitted_total", "counter", "CURVE handshakes the store admitted (authorised keys)", ("security.admitted",)),
            ("flowlens_store_peers_refused_total", "counter", "connections the store refused: unknown keys, no CURVE, the wrong store key", ("security.refused_total",)),
            ("flowlens_store_queries_refused_total", "counter", "queries refused because every query worker was busy and the queue full", ("queries.refused_busy",)),
            ("flowlens_store_uptime_seconds", "gauge", "seconds since the store started", ("uptime_s",)),
        ):
            v = find_number(status, paths)
            family(name, kind, help_)
            if v is not None:
                out.append(f"{name} {_num(v)}")
    if status is not None and isinstance(status.get("security"), Mapping):
        family("flowlens_store_curve_enabled", "gauge", "1 when the store's bus, events and query sockets require CURVE keys")
        out.append(f"flowlens_store_curve_enabled {1 if status['security'].get('curve') else 0}")
    if status is not None:  # the store's SQLite writes (a full disk): failures, and rows held for a retry
        for name, kind, help_, path in (
            ("flowlens_store_write_errors_total", "counter", "SQLite flow or event transactions that failed (each attempt; the rows are kept and retried)", "write_queue.write_errors"),
            ("flowlens_store_maintain_errors_total", "counter", "sealing, pruning or vacuum steps that failed (retried)", "write_queue.maintain_errors"),
            ("flowlens_store_rows_waiting", "gauge", "flows held in the store's memory for SQLite: the write queue and a chunk waiting for its retry", "write_queue.rows_waiting"),
            ("flowlens_store_write_failing", "gauge", "1 while the store cannot write to SQLite", None),
        ):
            family(name, kind, help_)
            if path is None:
                wq = status.get("write_queue") if isinstance(status.get("write_queue"), Mapping) else {}
                out.append(f"{name} {1 if wq.get('write_failing_since') else 0}")
            elif (v := find_number(status, (path,))) is not None:
                out.append(f"{name} {_num(v)}")
    return "\n".join(out) + "\n"


def find_number(d: Mapping, paths: tuple[str, ...]):
    """The first numeric value at any of the dotted ``paths`` ('ring.fill_ratio') of a status map."""
    for path in paths:
        v = d
        for part in path.split("."):
            v = v.get(part) if isinstance(v, Mapping) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return v
    return None


# Collector identities. The store keeps the last health report of every collector id it heard. The
# default id, 'collector@host/port', is the same after a restart, so the new report replaces the old
# one; ids of an older release were 'collector@host:pid', a new one per restart: such a series is
# labelled 'collector@host' and takes the newest report of it. One series per label set either way.

def collector_identity(cid: str) -> str:
    """'collector@host' of an older release's 'collector@host:pid' id; any other id as it is."""
    head, sep, tail = cid.rpartition(":")
    return head if sep and "@" in head and tail.isdigit() else cid


def current_collectors(exporters: Mapping) -> dict[str, Mapping]:
    """identity -> the newest report (by last_seen) among that identity's ids; analyzers left out."""
    best: dict[str, Mapping] = {}
    for c in exporters.get("collectors") or []:
        if not isinstance(c, Mapping) or c.get("kind", "collector") != "collector":
            continue
        ident = collector_identity(str(c.get("collector", "")))
        cur = best.get(ident)
        if cur is None or int(c.get("last_seen") or 0) > int(cur.get("last_seen") or 0):
            best[ident] = c
    return best


def current_exporter_rows(rows: list, exporters: Mapping) -> list:
    """The exporter rows a current collector reported (not a restarted one's predecessor), one per
    (exporter, observation domain): the newest last_seen when several collectors hear it; every
    collector's overflow row (pairs beyond its collector.max_exporters) as it is."""
    ids = {c.get("collector") for c in current_collectors(exporters).values()}
    newest: dict[tuple, Mapping] = {}
    folded = []
    for e in rows:
        if e.get("collector") is None or e.get("collector") not in ids:
            continue
        if e.get("overflow"):
            folded.append(e)
            continue
        key = (str(e.get("exporter", "")), e.get("observation_domain"))
        cur = newest.get(key)
        if cur is None or int(e.get("last_seen") or 0) > int(cur.get("last_seen") or 0):
            newest[key] = e
    return list(newest.values()) + folded


OTHER = "other"  # the exporter label of the series that sums the exporters beyond the top ones
_GAUGE_MAX = ("time_ahead_max_s", "last_seen", "first_seen")  # summed rows keep the largest of these


def top_exporters(rows: list, n: int) -> list:
    """The ``n`` rows with the most flows, then one row (exporter "other", no domain) summing the
    rest and the collectors' own overflow rows; counters and held data add up, maps by reason."""
    real = sorted((e for e in rows if not e.get("overflow")),
                  key=lambda e: (-int(e.get("flows") or 0), str(e.get("exporter", "")), str(e.get("observation_domain"))))
    rest = real[n:] + [e for e in rows if e.get("overflow")]
    if not rest:
        return real
    other: dict = {"exporter": OTHER, "observation_domain": ""}
    for e in rest:
        for k, v in e.items():
            if k in ("exporter", "observation_domain", "collector", "overflow"):
                continue
            if isinstance(v, Mapping):
                m = other.setdefault(k, {})
                for reason, c in v.items():
                    if isinstance(c, (int, float)):
                        m[reason] = m.get(reason, 0) + c
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                other[k] = max(other.get(k, 0), v) if k in _GAUGE_MAX else other.get(k, 0) + v
    return real[:n] + [other]


# Confirmed delivery, collector -> store (flowmodel.bus TOPIC_ACK): collector counter, metric, type, help.
DELIVERY_COLLECTOR = (
    ("unconfirmed_flows", "flowlens_collector_unconfirmed_flows", "gauge", "flows published that the store has not confirmed yet (in memory or in the spool)"),
    ("unconfirmed_batches", "flowlens_collector_unconfirmed_batches", "gauge", "flow batches published that the store has not confirmed yet"),
    ("spooled_batches", "flowlens_collector_spooled_batches", "gauge", "unconfirmed flow batches held in the spool on disk"),
    ("spool_bytes", "flowlens_collector_spool_bytes", "gauge", "bytes of the spool on disk (collector.spool_max_bytes at most)"),
    ("resent_flows", "flowlens_collector_flows_resent_total", "counter", "flows published again because the store had not confirmed them"),
    ("resent_batches", "flowlens_collector_batches_resent_total", "counter", "flow batches published again because the store had not confirmed them"),
    ("acked_flows", "flowlens_collector_flows_confirmed_total", "counter", "flows the store confirmed as committed"),
    ("spool_dropped_flows", "flowlens_collector_spool_dropped_flows_total", "counter", "flows the collector dropped, oldest first, past collector.spool_max_bytes (its own count)"),
    ("lost_flows", "flowlens_collector_flows_lost_total", "counter", "flows the store never got from this collector: the store's exact count, returned with its confirmations"),
)
DELIVERY_STORE = (
    ("duplicate_batches", "flowlens_store_duplicate_batches_total", "counter", "flow batches sent again that the store had already taken, dropped"),
    ("duplicate_flows", "flowlens_store_duplicate_flows_total", "counter", "flows in those duplicate batches, dropped"),
    ("out_of_order_batches", "flowlens_store_out_of_order_batches_total", "counter", "flow batches refused because one before them was missing (sent again in order)"),
    ("lost_flows", "flowlens_store_flows_lost_total", "counter", "flows of confirmed streams the store never got (collectors' spools full), all collectors"),
    ("streams", "flowlens_store_delivery_streams", "gauge", "collector streams (one per collector run) the store keeps delivery state for"),
)


def delivery_lines(exporters: Mapping | None, status: Mapping | None) -> list[str]:
    """Confirmed delivery: per collector identity (its newest report), the flows held unconfirmed,
    spooled, resent and lost; and the store's delivery block of its status."""
    out: list[str] = []
    collectors = current_collectors(exporters) if exporters is not None else {}
    counters = {ident: c.get("counters") for ident, c in collectors.items()
                if isinstance(c.get("counters"), Mapping) and "unconfirmed_flows" in c["counters"]}
    for field, name, kind, help_ in DELIVERY_COLLECTOR:
        out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        out += [f"{name}{_labels(collector=ident)} {_num(c.get(field) or 0)}" for ident, c in sorted(counters.items())]
    name = "flowlens_collector_unconfirmed_since_seconds"
    out += [f"# HELP {name} unix time since which the store has not confirmed this collector's flows; 0 while it confirms",
            f"# TYPE {name} gauge"]
    out += [f"{name}{_labels(collector=ident)} {int(c.get('unconfirmed_since') or 0) / 1000:.3f}"
            for ident, c in sorted(counters.items())]
    block = status.get("delivery") if status is not None else None
    for field, name, kind, help_ in DELIVERY_STORE:
        out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        if isinstance(block, Mapping) and (v := find_number(block, (field,))) is not None:
            out.append(f"{name} {_num(v)}")
    return out
