"""Health of the system itself, from the collectors' health events (topic ``exporter``) and the
analyzer's own bus gap counter: exporters that stopped sending, export sequence losses, kernel
receive drops, decode errors, records waiting for templates, bus gaps. Times here are wall clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowmodel import timefmt
from flowmodel.protocol import is_digits

from .common import Context, Finding, addr_text
from .health_delivery import delivery_findings, observe_delivery
from .health_groups import group, overflow_findings
from .health_security import refused_peer_findings
from .health_self import advisory_loss_findings, window_findings
from .wording import fmt_duration, fmt_int, fmt_time, plural

NAME = "health"
FORGET_FACTOR = 10  # a collector silent for this many times analysis.exporter_silence is forgotten
FUTURE_REASON = "time_in_future"  # the collector's decode_errors reason for flows over a day ahead


@dataclass
class HealthState:
    """What the latest health events said, plus the increases since the last analysis."""

    collectors: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> latest event + received_at
    exporters: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)  # latest stats
    deltas: dict[tuple, dict[str, float]] = field(default_factory=dict)  # since the last analysis
    bus_gaps_seen: dict[str, int] = field(default_factory=dict)
    late_seen: dict[bytes, int] = field(default_factory=dict)
    future_seen: dict[bytes, int] = field(default_factory=dict)
    bad_events: int = 0
    forgotten: int = 0  # collectors forgotten (replaced by a restart, or gone for FORGET_FACTOR x silence)
    window: Any = None  # the engine's FlowWindow (counters, future_by_exporter), set by the service
    window_samples: list[tuple[int, int, int]] = field(default_factory=list)  # (wall ms, flows, overflow)
    outbox: Any = None  # the analyzer's advisory EventOutbox (its lost count), set by the service
    advisories_lost_seen: int = 0
    stores: dict[str, dict[str, Any]] = field(default_factory=dict)  # store source -> its latest kind=store event
    delivery: dict[str, dict[str, int]] = field(default_factory=dict)  # id -> the store's confirmations (observe_delivery)
    overflow: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> its overflow row (exporter table full)
    overflow_seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (folded, flows) last analysed
    grouped: dict[str, dict] = field(default_factory=dict)  # finding kind -> exporters with it lately (health_groups)

    def observe(self, event: dict, received_ms: int) -> None:
        """Fold one health event (the analyzer's own kind=analyzer events are ignored)."""
        if event.get("kind") == "store":
            self.stores[str(event.get("source") or "?")] = {**event, "received_at": received_ms}
            return
        if event.get("kind") != "collector":
            return
        cid = str(event.get("collector") or event.get("source") or "?")
        known, replaced = cid in self.collectors, False
        if cid not in self.collectors:
            # A collector restarted under a new id ('collector@host:pid' with a new pid): forget the old one,
            # its exporters now report through this one.
            base = _base_id(cid)
            for old in [c for c in self.collectors if c != cid and base is not None and _base_id(c) == base]:
                self.forget(old)
                replaced = True
        prev = self.collectors.get(cid)
        if prev is not None and int(event.get("seq", 0)) <= int(prev.get("seq", 0)):
            prev = None  # restarted: cumulative counters began again
        self.collectors[cid] = {**event, "received_at": received_ms}
        observe_delivery(self.delivery, cid, event, prev, restarted=prev is None and (known or replaced),
                         received_ms=received_ms)
        old_sockets = {s.get("port"): s for s in ((prev or {}).get("socket") or [])}
        for sock in event.get("socket") or []:
            before = old_sockets.get(sock.get("port"))
            if before is not None:
                self._add(("socket", cid, sock.get("port")), "kernel_drops",
                          int(sock.get("kernel_drops") or 0) - int(before.get("kernel_drops") or 0))
                self.deltas.setdefault(("socket", cid, sock.get("port")), {})["rcvbuf_granted"] = sock.get("rcvbuf_granted") or 0
        rows = [ex for ex in event.get("exporters") or [] if isinstance(ex, dict)]
        if event.get("exporters_full", True) is not False:
            # the whole table (else only the rows changed since the last event): rows it lacks are gone
            keep = {(cid, str(ex.get("exporter")), int(ex.get("observation_domain") or 0)) for ex in rows}
            for key in [k for k in self.exporters if k[0] == cid and k not in keep]:
                del self.exporters[key]
            self.overflow.pop(cid, None)
        for ex in rows:
            if ex.get("overflow"):  # pairs beyond collector.max_exporters, counted together: not an exporter
                self.overflow[cid] = dict(ex)
                continue
            key = (cid, str(ex.get("exporter")), int(ex.get("observation_domain") or 0))
            before = self.exporters.get(key) if prev is not None else None
            self.exporters[key] = dict(ex)
            dk = ("exporter",) + key
            # flows dropped for a clock far ahead: counted from 0 for a collector new to us too (a
            # collector restarted, or this analyzer), so the first report of a broken clock is not lost
            self._add(dk, FUTURE_REASON, _reason(ex, FUTURE_REASON) - (_reason(before, FUTURE_REASON) if before else 0))
            if before is None:
                continue
            self._add(dk, "sequence_lost", int(ex.get("sequence_lost") or 0) - int(before.get("sequence_lost") or 0))
            self._add(dk, "pending_expired", int(ex.get("pending_expired") or 0) - int(before.get("pending_expired") or 0))
            self._add(dk, "flows", int(ex.get("flows") or 0) - int(before.get("flows") or 0))
            errs_now, errs_before = ex.get("decode_errors") or {}, before.get("decode_errors") or {}
            self._add(dk, "decode_errors", sum(int(v) for k, v in errs_now.items() if k != FUTURE_REASON)
                      - sum(int(v) for k, v in errs_before.items() if k != FUTURE_REASON))

    def forget(self, cid: str) -> None:
        """Drop a collector and what it said about its exporters (its advisories then resolve)."""
        self.collectors.pop(cid, None)
        self.delivery.pop(cid, None)
        self.overflow.pop(cid, None)
        self.overflow_seen.pop(cid, None)
        for key in [k for k in self.exporters if k[0] == cid]:
            del self.exporters[key]
        for key in [k for k in self.deltas if len(k) > 1 and k[1] == cid]:
            del self.deltas[key]
        self.forgotten += 1

    def _add(self, key: tuple, name: str, value: float) -> None:
        if value > 0:
            d = self.deltas.setdefault(key, {})
            d[name] = d.get(name, 0) + value


def analyze(state: HealthState, ctx: Context, now_ms: int, bus_gaps: dict[str, int],
            late: dict[bytes, int] | None = None) -> list[Finding]:
    """Findings for the health book; consumes the accumulated increases. ``bus_gaps``: cumulative
    missed messages per bus source; ``late``: cumulative flows per exporter that came after their
    window had been analysed (FlowWindow.late_by_exporter)."""
    silence_ms = int(ctx["analysis.exporter_silence"] * 1000)
    findings: list[Finding] = []
    for cid, ev in sorted(state.collectors.items()):
        if now_ms - int(ev["received_at"]) >= FORGET_FACTOR * silence_ms:
            state.forget(cid)  # gone for good (or renamed): stop reporting it, its advisories resolve
    for cid, ev in sorted(state.collectors.items()):
        quiet = now_ms - int(ev["received_at"])
        if _collector_silent(ev, now_ms, silence_ms):
            findings.append(Finding(
                NAME, f"collector {cid}", "CRITICAL", f"Collector {cid} silent",
                f"Collector {cid} has not reported for {fmt_duration(quiet / 1000)} (last report at {fmt_time(int(ev['received_at']))})",
                "Check that the collector process is running and can reach the bus",
                {"collector": cid, "silent_seconds": round(quiet / 1000), "window_start": int(ev["received_at"]), "window_end": now_ms},
                {"since": int(ev["received_at"]) - silence_ms, "until": now_ms},
                figures={}))
    # An exporter is silent for as long as its collector says so: up to the collector's latest report
    # while it is expected to report again, so a collector restarting (or between two reports) does
    # not make its exporters look stopped; up to now once the collector is silent itself. An exporter
    # may reach several collectors: the shortest of their silences counts, the newest packet is named.
    newest: dict[tuple[str, int], dict[str, Any]] = {}
    silent_for: dict[tuple[str, int], int] = {}
    for (cid, exporter, od), ex in state.exporters.items():
        last = int(ex.get("last_seen") or 0)
        cur = newest.get((exporter, od))
        if cur is None or last > int(cur.get("last_seen") or 0):
            newest[(exporter, od)] = ex
        ev = state.collectors.get(cid)
        heard_until = now_ms if ev is None or _collector_silent(ev, now_ms, silence_ms) else int(ev["received_at"])
        silent_for[(exporter, od)] = min(silent_for.get((exporter, od), heard_until - last), heard_until - last)
    for (exporter, od), ex in sorted(newest.items()):
        last = int(ex.get("last_seen") or 0)
        if last and silent_for[(exporter, od)] >= silence_ms:
            ago = (now_ms - last) / 1000
            findings.append(Finding(
                NAME, f"exporter {exporter}/{od}", "CRITICAL", f"Exporter {exporter} stopped sending",
                f"Exporter {exporter} (observation domain {od}) stopped sending {fmt_duration(ago)} ago "
                f"(last export packet at {fmt_time(last)}, {fmt_int(ex.get('flows') or 0)} flows before that)",
                f"Check that {exporter} is up, that flow export is still configured and that the path to the collector is open",
                {"exporter": exporter, "observation_domain": od, "last_seen": last, "silent_seconds": round(ago),
                 "window_start": last, "window_end": now_ms},
                {"exporter": exporter, "since": last - silence_ms, "until": now_ms},
                figures={}))
    for key, d in sorted(state.deltas.items(), key=lambda kv: str(kv[0])):
        if key[0] == "socket" and d.get("kernel_drops"):
            _, cid, port = key
            findings.append(Finding(
                NAME, f"drops {cid}:{port}", "WARNING", f"Receive drops on UDP {port}",
                f"Collector {cid} lost {fmt_int(d['kernel_drops'])} datagrams in the kernel receive buffer of UDP port {port} "
                f"(granted buffer {fmt_int(d.get('rcvbuf_granted') or 0)} bytes)",
                "Raise collector.socket_buffer (and net.core.rmem_max), or add a collector",
                {"collector": cid, "port": port, "kernel_drops": int(d["kernel_drops"]),
                 "rcvbuf_granted": int(d.get("rcvbuf_granted") or 0), "window_start": now_ms, "window_end": now_ms},
                {"since": now_ms - silence_ms, "until": now_ms}, figures={"drops": float(d["kernel_drops"])}))
        if key[0] != "exporter":
            continue
        _, cid, exporter, od = key
        flt = {"exporter": exporter, "since": now_ms - silence_ms, "until": now_ms}
        if d.get("sequence_lost"):
            lost = d["sequence_lost"]
            findings.append(Finding(
                NAME, f"sequence {exporter}/{od}", "WARNING", f"Export loss from {exporter}",
                f"Exporter {exporter} (observation domain {od}) lost {fmt_int(lost)} export records/packets on the way "
                f"to the collector (sequence gaps){_share(lost, d.get('flows'))}",
                "Check the path from the exporter to the collector for drops (QoS, MTU, a busy link) and the collector's receive buffer",
                {"exporter": exporter, "observation_domain": od, "sequence_lost": int(lost), "window_start": now_ms, "window_end": now_ms},
                flt, figures={"lost": float(lost)}))
        if d.get("decode_errors"):
            findings.append(Finding(
                NAME, f"decode {exporter}/{od}", "WARNING", f"Decode errors from {exporter}",
                f"{fmt_int(d['decode_errors'])} export packets from {exporter} (observation domain {od}) could not be decoded",
                "Check the exporter's flow export version and template settings; the collector log names the reason",
                {"exporter": exporter, "observation_domain": od, "decode_errors": int(d["decode_errors"]),
                 "window_start": now_ms, "window_end": now_ms},
                flt, figures={"errors": float(d["decode_errors"])}))
        if d.get(FUTURE_REASON):
            findings.append(_future_finding(exporter, od, int(d[FUTURE_REASON]),
                                            state.exporters.get((cid, exporter, od), {}), flt, now_ms))
        if d.get("pending_expired"):
            findings.append(Finding(
                NAME, f"templates {exporter}/{od}", "WARNING", f"Missing templates from {exporter}",
                f"{fmt_int(d['pending_expired'])} data sets from {exporter} (observation domain {od}) expired waiting "
                f"for their template",
                "Make the exporter send templates more often (template refresh timeout) or restart its flow export",
                {"exporter": exporter, "observation_domain": od, "pending_expired": int(d["pending_expired"]),
                 "window_start": now_ms, "window_end": now_ms},
                flt, figures={"expired": float(d["pending_expired"])}))
    for (cid, exporter, od), ex in sorted(state.exporters.items()):
        waiting = int(ex.get("pending_sets") or 0)
        waiting_bytes = int(ex.get("pending_bytes") or 0)
        if waiting and not state.deltas.get(("exporter", cid, exporter, od), {}).get("pending_expired"):
            findings.append(Finding(
                NAME, f"waiting {exporter}/{od}", "INFO", f"Data waiting for templates from {exporter}",
                f"{fmt_int(waiting)} data sets ({fmt_int(waiting_bytes)} bytes) from {exporter} (observation domain {od}) "
                f"are waiting for their template",
                "If this persists, make the exporter send its templates (they usually follow within minutes)",
                {"exporter": exporter, "observation_domain": od, "pending_sets": waiting,
                 "pending_bytes": waiting_bytes, "window_start": now_ms,
                 "window_end": now_ms},
                {"exporter": exporter, "since": now_ms - silence_ms, "until": now_ms}, figures={"waiting": float(waiting)}))
    for source, total in sorted(bus_gaps.items()):
        new = total - state.bus_gaps_seen.get(source, 0)
        state.bus_gaps_seen[source] = total
        if new > 0:
            findings.append(Finding(
                NAME, f"bus {source}", "WARNING", f"Bus messages lost from {source}",
                f"The analyzer missed {fmt_int(new)} bus messages from {source} (sequence gaps): advisories may miss traffic",
                "The analyzer is falling behind: raise bus.high_water_mark or give it more CPU",
                {"source": source, "missed": int(new), "window_start": now_ms, "window_end": now_ms},
                {"since": now_ms - silence_ms, "until": now_ms}, figures={"missed": float(new)}))
    watermark = ctx["analysis.watermark"]
    for exporter, total in sorted((late or {}).items()):
        new = total - state.late_seen.get(exporter, 0)
        state.late_seen[exporter] = total
        if new > 0:
            ex = addr_text(exporter)
            findings.append(Finding(
                NAME, f"late {ex}", "WARNING", f"Late flows from {ex}",
                f"{fmt_int(new)} flows from exporter {ex} arrived more than {fmt_duration(watermark)} after their time "
                f"(flow time) and were left out of the analysis",
                f"Check the clock of {ex} (NTP) and its active flow timeout, or raise analysis.watermark",
                {"exporter": ex, "late_flows": int(new), "watermark_seconds": watermark, "window_start": now_ms,
                 "window_end": now_ms},
                {"exporter": ex, "since": now_ms - silence_ms, "until": now_ms}, figures={"late": float(new)}))
    findings += _store_findings(state, now_ms, silence_ms)
    findings += window_findings(state, ctx, now_ms) + advisory_loss_findings(state, now_ms)
    findings += delivery_findings(state, now_ms)
    findings += overflow_findings(state, now_ms)
    state.deltas.clear()
    # many exporters with one condition: one advisory naming the count and the first few
    return group(findings, state.grouped, now_ms, int(ctx["analysis.resolve_after"] * 1000))


def _reason(ex: dict, reason: str) -> int:
    errs = ex.get("decode_errors")
    return int(errs.get(reason) or 0) if isinstance(errs, dict) else 0


def _future_finding(exporter: str, od: int, dropped: int, ex: dict, flt: dict, now_ms: int) -> Finding:
    """The collector dropped flows ending over a day after its clock (decode_errors.time_in_future)."""
    ahead_s = int(ex.get("time_ahead_max_s") or 0)
    how_far = timefmt.span_words(ahead_s * 1000) if ahead_s else "over a day"
    return Finding(
        NAME, f"future {exporter}/{od}", "WARNING", f"Exporter {exporter} sends flow times {how_far} ahead",
        f"Exporter {exporter} sends flow times {how_far} ahead: check its clock. The collector dropped "
        f"{plural(dropped, 'flow')} from it (observation domain {od}) that ended more than a day after "
        f"the collector's clock",
        f"Check the clock of {exporter} (NTP) and the time fields of its flow export; if the exporter is "
        f"not yours, the packets may be spoofed",
        {"exporter": exporter, "observation_domain": od, "time_in_future_flows": dropped, "ahead_max_s": ahead_s,
         "window_start": now_ms, "window_end": now_ms},
        flt, figures={"future": float(dropped)})


def _collector_silent(ev: dict, now_ms: int, silence_ms: int) -> bool:
    """A collector has not reported for analysis.exporter_silence and three of its stats intervals."""
    stats_ms = 3 * 1000 * float(ev.get("stats_interval") or 5)
    return now_ms - int(ev["received_at"]) >= max(silence_ms, stats_ms)


def _base_id(cid: str) -> str | None:
    """'collector@host' of a default 'collector@host:pid' id; None for a configured id."""
    head, sep, tail = cid.rpartition(":")
    return head if sep and "@" in head and is_digits(tail) else None


def _share(lost: float, flows) -> str:
    if flows:
        return f", against {fmt_int(flows)} flows received"
    return ""


def _store_findings(state: HealthState, now_ms: int, silence_ms: int) -> list[Finding]:
    """The store's own health events (kind=store): a CRITICAL advisory while it cannot write to its
    SQLite file (a full disk, an I/O error); it resolves once a transaction commits again."""
    newest: dict[str, dict[str, Any]] = {}  # per store (host), the latest process
    for source, ev in sorted(state.stores.items(), key=lambda kv: kv[1]["received_at"]):
        if now_ms - int(ev["received_at"]) >= FORGET_FACTOR * silence_ms:
            del state.stores[source]
            continue
        newest[_base_id(source) or source] = ev
    for source in [s for s in state.stores if all(ev is not state.stores[s] for ev in newest.values())]:
        del state.stores[source]  # an earlier process of the same store: replaced by its restart
    findings = []
    for ev in newest.values():
        c = ev.get("counters") if isinstance(ev.get("counters"), dict) else {}
        since = c.get("write_failing_since")
        if not since:
            continue
        path, fs = str(c.get("sqlite_path") or "?"), str(c.get("filesystem") or "?")
        waiting, error = int(c.get("rows_waiting") or 0), str(c.get("last_write_error") or "unknown error")
        free = c.get("free_bytes")
        findings.append(Finding(
            NAME, f"store write {path}", "CRITICAL", "Store cannot write to SQLite",
            f"The store cannot write to its SQLite file since {fmt_time(int(since))}: {error}; "
            f"{plural(waiting, 'flow')} wait in memory and collectors hold the rest",
            f"Free space on {fs} (the file system of {path}{'' if free is None else f', {fmt_int(free)} bytes free'}); "
            f"the store writes again by itself once it can",
            {"store": str(ev.get("source") or ""), "sqlite_path": path, "filesystem": fs, "error": error,
             "failing_since": int(since), "rows_waiting": waiting, "write_errors": int(c.get("write_errors") or 0),
             "free_bytes": free, "window_start": int(since), "window_end": now_ms},
            {"since": int(since), "until": now_ms}, figures={}))
    return findings + refused_peer_findings(newest.values(), now_ms)
