"""What the collector publishes besides flow batches: its health event (topic ``exporter``: every
part's counters, the listeners' sockets, the exporter table, whole or only the rows that changed),
the interface names options data told, and sFlow if-counter deltas. Assembled from the parts the
collector passes in; sent without blocking on the bus socket each call is given: a full queue is
counted and logged (rate-limited), never waited for.
"""
from __future__ import annotations

import logging

import zmq

from flowmodel import bus
from flowmodel.events import IF_COUNTER_ROWS_PER_EVENT, process_stats
from flowmodel.logs import RateLimitedLog

from .udp import kernel_drops

log = logging.getLogger(__name__)

# A health event carries the exporter rows that changed since the previous one; the whole table goes
# out this often, in the first event, in the last, and when a subscriber of health events appears.
FULL_TABLE_INTERVAL_MS = 60_000


class Reports:
    """Inert; ``started_at_ms`` is set by the collector's start. ``counters`` is the collector's
    counter map, shared: the publishes count into it."""

    def __init__(self, source_id: str, sequencer: bus.Sequencer, counters: dict, stats_interval_ms: int,
                 config_report: dict, *, decoder, enricher, delivery, batcher, intake):
        self.source_id = source_id
        self.sequencer = sequencer  # the flow batches' own: the analyzer counts gaps across both
        # interface events (TOPIC_INTERFACES) have a source and seqs of their own: the analyzer, which
        # takes flows and health events only, would count them as gaps in this collector's seqs
        self.names_sequencer = bus.Sequencer(f"{source_id}/interfaces")
        self.counters = counters
        self.stats_interval_ms = stats_interval_ms
        self.config_report = config_report  # effective keys, shown per service on About
        self.decoder, self.enricher, self.delivery = decoder, enricher, delivery
        self.batcher, self.intake = batcher, intake
        self.started_at_ms = 0
        self._next_full_ms = 0  # the next health event carries the whole exporter table from then on
        self._rlog = RateLimitedLog(log)

    def want_full_table(self) -> None:
        """The next health event carries the whole exporter table (a store subscribed again, or the last one)."""
        self._next_full_ms = 0

    def health_event(self, t: int) -> dict:
        """The body of one ``exporter`` event, per flowmodel.events.EXPORTER_EVENT_FIELDS."""
        listeners = self.intake.listeners
        drops = kernel_drops({lst.inode for lst in listeners})
        sockets = [{"port": lst.port, "rcvbuf_requested": lst.rcvbuf_requested, "rcvbuf_granted": lst.rcvbuf_granted,
                    "kernel_drops": drops.get(lst.inode, 0)} for lst in listeners]
        counters = dict(self.counters, **self.enricher.counters, **self.delivery.health_counters(),
                        kernel_drops=sum(s["kernel_drops"] for s in sockets), pending_flows=self.batcher.count,
                        truncated_datagrams=self.intake.truncated)
        deltas = getattr(self.decoder, "if_counters", None)
        if deltas is not None:
            counters.update(deltas.counters, if_counter_interfaces=len(deltas))
        full = t >= self._next_full_ms
        if full:
            self._next_full_ms = t + FULL_TABLE_INTERVAL_MS
        table = self.decoder.exporters
        counters.update(exporters_tracked=len(table), exporters_max=table.max_exporters,
                        exporters_folded=table.folded_pairs, exporters_retired=table.retired)
        return {"kind": "collector", "collector": self.source_id, "process": process_stats(self.started_at_ms),
                "counters": counters, "listen": [lst.address for lst in listeners], "socket": sockets,
                "exporters": self.decoder.exporter_stats(changed_only=not full), "exporters_full": full,
                "stats_interval": self.stats_interval_ms / 1000, "config": self.config_report}

    def publish_health(self, pub: zmq.Socket, t: int) -> None:
        try:
            body = bus.encode_event(self.health_event(t), self.sequencer)
            pub.send_multipart([bus.TOPIC_EXPORTER, body], flags=zmq.NOBLOCK)
            self.counters["health_events"] += 1
        except zmq.ZMQError as e:
            self.counters["publish_errors"] += 1
            self._rlog.warning("health", "cannot publish a health event", error=str(e))

    def publish_interfaces(self, pub: zmq.Socket, t: int) -> None:
        """Interface names options data told (decoders/ifnames.py) on bus.TOPIC_INTERFACES, per
        flowmodel.events.INTERFACE_EVENT_FIELDS: a table when it changed, every table each
        names.republish_interval. One not sent (a full queue) goes with the next republication."""
        table = getattr(self.decoder, "interfaces", None)
        if table is None:
            return
        for event in table.due(t):
            try:
                pub.send_multipart([bus.TOPIC_INTERFACES, bus.encode_event(event, self.names_sequencer)],
                                   flags=zmq.NOBLOCK)
                self.counters["interface_events"] += 1
            except zmq.ZMQError as e:
                self.counters["publish_errors"] += 1
                self._rlog.warning("interfaces", "cannot publish interface names", error=str(e))

    def publish_if_counters(self, pub: zmq.Socket) -> None:
        """sFlow if-counters deltas (sflow_counters.py) on bus.TOPIC_IF_COUNTERS, per
        flowmodel.events.IF_COUNTER_EVENT_FIELDS; rows not sent (a full queue) are counted, not kept."""
        deltas = getattr(self.decoder, "if_counters", None)
        rows = deltas.take() if deltas is not None else []
        for at in range(0, len(rows), IF_COUNTER_ROWS_PER_EVENT):
            part = rows[at:at + IF_COUNTER_ROWS_PER_EVENT]
            try:
                pub.send_multipart([bus.TOPIC_IF_COUNTERS, bus.encode_event({"rows": part}, self.names_sequencer)],
                                   flags=zmq.NOBLOCK)
                self.counters["if_counter_events"] = self.counters.get("if_counter_events", 0) + 1
            except zmq.ZMQError as e:
                self.counters["publish_errors"] += 1
                deltas.counters["if_counter_rows_dropped"] += len(part)
                self._rlog.warning("ifcounters", "cannot publish interface counters", error=str(e))
