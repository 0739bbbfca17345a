"""What the store says about itself and what it hears: the ``status``, ``exporters`` and ``names``
replies and the write-health fields, read from a running StoreService (``svc``) without changing it.
The counters they read are the service's; the locks they take are its own."""
from __future__ import annotations

import time

from flowmodel import addr
from flowmodel.events import process_stats, service_config

from . import __version__, names
from .exporter_table import address_text
from .warm import file_size, now_ms
from .writer import free_bytes, mount_point

RATE_WINDOW_S = 10.0  # flows_in_per_s and flows_committed_per_s are over about this long


def write_health(svc) -> dict:
    """Whether the writer can write to SQLite: the status's ``write_queue`` failure fields, and
    the file system to free space on (the analyzer words a CRITICAL advisory from them)."""
    w, path = svc.writer, svc.cfg["storage.sqlite_path"]
    return {"write_failing_since": w.write_failing_since, "last_write_error": w.last_write_error,
            "last_write_error_at": w.last_write_error_at, "write_errors": w.write_errors,
            "maintain_errors": w.maintain_errors, "rows_waiting": w.rows_waiting, "failed_rows": w.failed_rows,
            "sqlite_path": path, "filesystem": mount_point(path), "free_bytes": free_bytes(path)}


def names_reply(svc) -> dict:
    """The ``names`` op (names.py): every exporter seen in flows or health events or named in
    config, with its name, site and reverse DNS name, and every named interface."""
    with svc.lock:
        seen = {addr.to_text(k) for k in svc.exporter_flows}
        seen |= {str(e.get("exporter")) for h in svc.health.values() for e in h.get("exporters") or []
                 if not e.get("overflow")}
    texts = set()
    for a in seen:
        try:
            texts.add(names.exporter_text(a))
        except ValueError:
            pass
    return svc.names.reply(texts, svc.dns)


def rate(svc, idx: int) -> float:
    """Flows in (idx 1) or committed (idx 2) per second over the last RATE_WINDOW_S."""
    samples = list(svc.rates)
    now = (time.monotonic(), svc.flows_in, svc.writer.committed)
    old = next((s for s in samples if now[0] - s[0] <= RATE_WINDOW_S), None)
    if old is None or now[0] - old[0] < 0.5:
        return 0.0
    return round((now[idx] - old[idx]) / (now[0] - old[0]), 1)


def ring_bytes(svc) -> int:
    with svc.ring.lock:  # the receive loop appends and evicts meanwhile
        return svc.ring.nbytes


def status(svc) -> dict:
    cfg = svc.cfg
    w, q = svc.writer, svc.queries
    ring_oldest, ring_newest = svc.ring.time_bounds()
    parts = sorted(((n, p[0], p[1], p[2], p[3], p[4], p[5]) for n, p in list(w.warm.partitions.items())),
                   key=lambda x: x[1])
    mins = [p[4] for p in parts if p[4] is not None]
    maxs = [p[5] for p in parts if p[5] is not None]
    services = [{"service": "store", "source": f"store@{cfg['storage.query_bind']}", "process": process_stats(svc.started_at),
                 "last_seen": now_ms(), "config": service_config(cfg, "store")}]
    with svc.lock:
        health = list(svc.health.items())
    for source, h in health:
        if isinstance(h.get("process"), dict):
            services.append({"service": str(h.get("kind", "")), "source": source, "process": h["process"],
                             "last_seen": h.get("_received_at"),
                             "config": h["config"] if isinstance(h.get("config"), dict) else None})
    return {
        "ok": True, "version": __version__, "started_at": svc.started_at,
        "uptime_s": round((now_ms() - svc.started_at) / 1000, 1),
        "flows_in": svc.flows_in, "batches_in": svc.batches_in, "flows_committed": w.committed,
        "flows_in_per_s": rate(svc, 1), "flows_committed_per_s": rate(svc, 2),
        "ring": {"capacity": svc.ring.capacity, "fill": svc.ring.size, "bytes": ring_bytes(svc),
                 "fill_ratio": round(svc.ring.size / svc.ring.capacity, 4), "oldest_time": ring_oldest,
                 "newest_time": ring_newest, "evicted_max_time_end": svc.ring.evicted_max_time_end,
                 "duration_s": cfg["storage.ring_buffer_duration"]},
        "sqlite": {"path": cfg["storage.sqlite_path"], "size_bytes": file_size(cfg["storage.sqlite_path"]),
                   "oldest_time": min(mins) if mins else None, "newest_time": max(maxs) if maxs else None,
                   "rows": sum(p[3] for p in parts), "retention_s": cfg["storage.sqlite_retention"],
                   "partitions": [{"name": n, "start_ms": s, "end_ms": e, "rows": r, "sealed": bool(sd)}
                                  for n, s, e, r, _mn, _mx, sd in parts],
                   "pruned_partitions": w.pruned_partitions, "max_partitions": w.warm.max_partitions,
                   "out_of_range_flows": w.warm.out_of_range_flows,
                   "future_pruned_partitions": w.warm.future_pruned_partitions,
                   "future_pruned_flows": w.warm.future_pruned_flows,
                   # storage.max_bytes: partitions (and their flows) dropped, oldest first, to stay under it
                   "max_bytes": cfg["storage.max_bytes"], "size_pruned_partitions": w.warm.size_pruned_partitions,
                   "size_pruned_flows": w.warm.size_pruned_flows,
                   "blocks_written": w.warm.sealer.blocks_written, "rows_sealed": w.warm.sealer.rows_sealed,
                   "rollup_backfill": w.warm.sealer.backfill.stats(),
                   "out_of_range_by_exporter": {addr.to_text(k): v for k, v in
                                                sorted(w.warm.out_of_range_by_exporter.items(),
                                                       key=lambda kv: -kv[1])[:20]}},
        "write_queue": {"depth": w.queued_batches, "capacity": w.queue_batches, "rows": w.queued_rows,
                        "rows_capacity": w.queue_rows_max, "shed_batches": w.shed_batches,
                        "shed_flows": w.shed_flows, "shed_events": w.shed_events, "write_errors": w.write_errors,
                        "transactions": w.transactions, "seal_steps": w.seal_steps,
                        "unwritten_at_stop": w.unwritten_at_stop, **write_health(svc),
                        "seal_step_max_s": round(w.seal_step_max_s, 3)},
        "delivery": {"streams": len(svc.ledger.streams),
                     "duplicate_batches": svc.ledger.duplicate_batches,
                     "duplicate_flows": svc.ledger.duplicate_flows,
                     "out_of_order_batches": svc.ledger.out_of_order_batches,
                     "lost_flows": sum(svc.ledger.lost_flows.values()),
                     "lost_flows_by_stream": svc.ledger.lost_flows},
        "events": {**svc.event_ledger.stats(), "bad_messages": svc.events.bad_messages if svc.events else 0,
                   "health_events": svc.events.health_events if svc.events else 0},
        "bus": {"gaps_total": svc.gaps.total_gaps, "bad_messages": svc.bad_messages,
                "sources": {s: {"received": svc.gaps.received.get(s, 0), "gaps": svc.gaps.gaps.get(s, 0),
                                "restarts": svc.gaps.restarts.get(s, 0), "last_seq": svc.gaps.last_seq.get(s)}
                            for s in list(svc.gaps.received)}},
        "queries": {**{src: sum(e.sources_used[src] for e in q.engines + [q.front_engine] if e is not None)
                       for src in ("ring", "sqlite")},
                    "workers": len(q.engines), "waiting": q.waiting, "pages_inline": q.pages_inline,
                    "refused_busy": q.queries_refused, "replies_too_big": q.replies_too_big,
                    "top_warm": svc.warmer.stats() if svc.warmer else None,
                    "hot_cache": q.engines[0].block_runs.stats() if q.engines and q.engines[0].block_runs else None},
        "security": svc.gate.status() if svc.gate is not None else {"curve": False},
        "names": svc.names.stats(svc.dns),
        "services": services,
    }


def exporters(svc) -> dict:
    with svc.lock:
        health = list(svc.health.items())
        store_side = {k: list(v) for k, v in svc.exporter_flows.items()}
    store_text = {address_text(k): v for k, v in store_side.items()}
    exporters, collectors, seen = [], [], set()
    for source, h in health:
        collectors.append({"collector": source, "kind": h.get("kind"), "last_seen": h.get("_received_at"),
                           "counters": h.get("counters", {}), "listen": h.get("listen", []),
                           "socket": h.get("socket", []), "process": h.get("process", {})})
        for e in h.get("exporters") or []:
            if not isinstance(e, dict):
                continue
            row = dict(e)
            row["collector"] = source
            text = str(e.get("exporter", ""))
            sf = store_text.get(text)
            row["store_flows"] = sf[0] if sf else 0
            row["store_last_seen"] = sf[1] if sf else None
            seen.add(text)
            exporters.append(row)
    for text, (n, last) in sorted(store_text.items()):
        if text not in seen:
            exporters.append({"exporter": text, "observation_domain": None, "collector": None,
                              "store_flows": n, "store_last_seen": last})
    return {"ok": True, "exporters": exporters, "collectors": collectors}
