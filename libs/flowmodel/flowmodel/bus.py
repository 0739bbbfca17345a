"""Bus contracts: topics, the event envelope and the events' msgpack codec (flow batches: batchcodec.py).

A bus message is two ZeroMQ frames, ``[topic, body]``. Every body is a msgpack map carrying the
envelope (``schema``, ``source``, ``seq``, ``sent_at``). A flow batch adds ``count`` and
``columns``: name -> raw little-endian bytes at the schema's width, decoded with ``np.frombuffer``
without copying; or, for the wide columns of a batch of ``PACK_MIN_FLOWS`` or more, a packed form
that carries the same values in fewer bytes (see ``plan_column``). Real batches come from one
exporter, hold IPv4 addresses and counters far below 2^32, so they cross the bus at about a fifth
of the schema's 140 bytes per flow: the copies into and out of the bus sockets, in the collector,
the store and the analyzer, shrink with them.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

import msgpack

from .schema import FLOW_COLUMNS

SCHEMA_VERSION = 2   # 2: packed columns

WIRE_BYTES_PER_FLOW = sum(dt.itemsize for dt, _doc in FLOW_COLUMNS.values())  # 140: column bytes of one flow
MIN_QUEUE_MESSAGES = 4


def queue_limit(cfg) -> int:
    """The high-water mark (in messages) of a bus socket that carries flow batches.

    ZeroMQ bounds its queues in messages, and one flow batch is up to collector.batch_max_flows x
    140 bytes (about 2.2 MiB at 16384 flows, before packing), so the configured message count alone would let a
    socket whose reader falls behind hold hundreds of MiB. This keeps it to bus.queue_bytes.
    """
    per_message = cfg["collector.batch_max_flows"] * WIRE_BYTES_PER_FLOW + 1024
    return max(MIN_QUEUE_MESSAGES, min(cfg["bus.high_water_mark"], cfg["bus.queue_bytes"] // per_message))


# ZMQ_MAXMSGSIZE of the sockets that read from other processes: a peer that sends more is
# disconnected by ZeroMQ before the message is allocated, so no sender can make a reader hold an
# arbitrary amount. Subscriptions are a topic prefix; acks, confirmations and events a small map.
SUBSCRIPTION_MAX_BYTES = 4096
CONTROL_MAX_BYTES = 1 << 20
HEALTH_ROW_MAX_BYTES = 4096  # one exporter row of a collector's health event (a few hundred bytes), with room to spare


def max_message_bytes(cfg) -> int:
    """ZMQ_MAXMSGSIZE of a socket that reads flow batches and health events (the store's XSUB, the
    analyzer's SUB): the largest batch (collector.batch_max_flows flows, unpacked) or a collector's
    whole exporter table (collector.max_exporters rows), plus 1 MiB of envelope and slack."""
    return (max(cfg["collector.batch_max_flows"] * WIRE_BYTES_PER_FLOW, cfg["collector.max_exporters"] * HEALTH_ROW_MAX_BYTES)
            + CONTROL_MAX_BYTES)


TOPIC_FLOWS_PREFIX = b"flows."
TOPIC_ADVISORY = b"advisory"
TOPIC_EXPORTER = b"exporter"
# Interface names and speeds learnt from exporters' options data (collector) or SNMP (poller):
# flowmodel.events.INTERFACE_EVENT_FIELDS. Plain pub/sub: each source sends its whole table again
# periodically, so a lost message costs only freshness.
TOPIC_INTERFACES = b"interfaces"
# Interface counters from sFlow agents (deltas per interval): flowmodel.events.IF_COUNTER_EVENT_FIELDS.
# Plain pub/sub: a lost message loses its intervals, counted by the envelope's seq gaps.
TOPIC_IF_COUNTERS = b"ifcounters"
# Confirmed delivery of flow batches (collector -> store), a windowed go-back-N over the bus:
# - every flow batch carries, beside the envelope, its place in a *stream*: ``stream`` (str, one
#   collector process's sequence of flow batches: "<source>/<start ms>"), ``batch_seq`` (1, 2, ...
#   per stream, flow batches only: health events share the envelope seq but not this one) and
#   ``flows_before`` (flows in the stream's earlier batches), so any gap is counted in flows;
# - the store takes a stream's batches strictly in order, drops any batch_seq it already took
#   (a duplicate) and any that skips ahead (the collector sends it again), and publishes on ``ack``
#   {"acks": {stream: highest batch_seq committed to SQLite}} every few hundred ms;
# - the collector keeps each batch (memory, then a spool file) until acked; when acks stop
#   advancing it sends ``resend`` {"stream", "from_seq", "flows_before"} per stream it holds, then
#   its batches again from the oldest. ``from_seq`` is the oldest batch it still holds: when the
#   store took fewer, the flows between were dropped by the collector's spool bound and the store
#   counts them as lost.
TOPIC_ACK = b"ack"
TOPIC_RESEND = b"resend"
# Confirmed delivery of advisories (analyzer, ``flowlens up`` -> store) on the *events socket*, apart
# from flow batches: the store binds a ROUTER at storage.events_bind, each sender connects a DEALER
# to bus.events_endpoint, both bounded by bus.events_high_water_mark (flowmodel.eventbox):
# - a sender numbers its advisories in a stream of its own ("<source>/<start ms>"): the body, the
#   same stamped event it also publishes on the bus for subscribers, adds EVENT_STREAM and EVENT_SEQ
#   (1, 2, ... per stream); a message is three frames [topic, body, held_from], held_from being the
#   oldest event_seq the sender still holds, in ASCII digits;
# - the store takes a stream's events strictly in order, drops an event_seq it already took (a
#   duplicate: stored once), counts as lost the ones below held_from it never took (the sender's
#   bound dropped them), writes each with its stream's mark in the same SQLite transaction and
#   answers [TOPIC_CONFIRM, {"stream", EVENT_SEQ}] (highest event_seq committed) to that sender;
# - the sender keeps each event until confirmed (up to bus.events_unconfirmed_max; past it the
#   oldest is dropped and counted as lost) and, when confirmations stop advancing for
#   bus.events_resend_timeout, sends what it holds again from the oldest.
# The store stores a bus copy that carries EVENT_STREAM only from the events socket. A sender's own
# health event (TOPIC_EXPORTER) may travel the events socket too, with an empty held_from frame:
# sent once, neither numbered nor confirmed (the next one replaces it).
TOPIC_CONFIRM = b"confirm"
# Operators' notes (acknowledgements, silences: flowmodel.notes) travel the events socket the same
# way as advisories, numbered in the sender's stream and confirmed once the store wrote them.
TOPIC_NOTE = b"note"
EVENT_STREAM = "event_stream"
EVENT_SEQ = "event_seq"


def flows_topic(version: int) -> bytes:
    """``flows.5``, ``flows.9``, ``flows.10``; subscribers filter on ``flows.``."""
    return TOPIC_FLOWS_PREFIX + str(int(version)).encode()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def default_source_id(kind: str) -> str:
    """A source id that differs between processes and hosts: 'collector@host:pid'."""
    return f"{kind}@{socket.gethostname()}:{os.getpid()}"


class CodecError(ValueError):
    """A bus message that cannot be decoded; the message says why."""


@dataclass
class Envelope:
    schema: int
    source: str
    seq: int
    sent_at: int
    stream: str | None = None   # flow batches of a collector that wants them confirmed (see TOPIC_ACK)
    batch_seq: int = 0
    flows_before: int = 0


class Sequencer:
    """Stamps envelopes for one source: seq starts at 1 and increases by one per message."""

    def __init__(self, source: str):
        self.source = source
        self.seq = 0

    def stamp(self, body: dict) -> dict:
        self.seq += 1
        body["schema"] = SCHEMA_VERSION
        body["source"] = self.source
        body["seq"] = self.seq
        body["sent_at"] = now_ms()
        return body


@dataclass
class GapCounter:
    """Counts missing messages per source from envelope seq numbers (PUB/SUB drops, restarts)."""

    last_seq: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)

    def observe(self, source: str, seq: int) -> int:
        """Record one message; return how many messages from this source were missed before it."""
        self.received[source] = self.received.get(source, 0) + 1
        last = self.last_seq.get(source)
        self.last_seq[source] = seq
        if last is None:
            return 0
        if seq <= last:  # the source restarted and began again at 1
            self.restarts[source] = self.restarts.get(source, 0) + 1
            return 0
        missed = seq - last - 1
        if missed:
            self.gaps[source] = self.gaps.get(source, 0) + missed
        return missed

    @property
    def total_gaps(self) -> int:
        return sum(self.gaps.values())


def encode_event(body: dict, sequencer: Sequencer) -> bytes:
    """Any non-flow event (advisory, exporter health) as a stamped msgpack body."""
    return msgpack.packb(sequencer.stamp(dict(body)), use_bin_type=True)


def decode_body(body: bytes) -> dict:
    try:
        msg = msgpack.unpackb(body, raw=False)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise CodecError(f"body is not msgpack: {e}") from e
    if not isinstance(msg, dict) or "seq" not in msg or "source" not in msg:
        raise CodecError("body has no envelope (source/seq)")
    if msg.get("schema") != SCHEMA_VERSION:
        raise CodecError(f"schema {msg.get('schema')} is not {SCHEMA_VERSION}")
    return msg


def envelope_of(msg: dict) -> Envelope:
    """The envelope of a decoded body; CodecError when a field is missing or not a number
    (int() of a float inf raises OverflowError, which subscribers would not catch)."""
    stream = msg.get("stream")
    if not isinstance(msg.get("source"), str):  # a key of gap counters and health rows, shown on pages
        raise CodecError("source is not a string")
    try:
        if stream is None or "batch_seq" not in msg:  # a resend notice names a stream too, but is no batch of it
            return Envelope(msg["schema"], msg["source"], int(msg["seq"]), int(msg.get("sent_at", 0)))
        if not isinstance(stream, str) or not stream:
            raise CodecError("stream is not a string")
        return Envelope(msg["schema"], msg["source"], int(msg["seq"]), int(msg.get("sent_at", 0)), stream,
                        int(msg["batch_seq"]), int(msg["flows_before"]))
    except CodecError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise CodecError(f"bad envelope: {e!r}") from e


# The flow batch wire codec lives in batchcodec.py; bus.encode_batch / bus.decode_batch are its names
# on the bus (imported last: batchcodec reads the envelope from this module).
from .batchcodec import (PACK_CONST, PACK_IPV4, PACK_MIN_FLOWS, PACK_NARROW, REQUIRED_COLUMNS,  # noqa: E402,F401
                         decode_batch, encode_batch, plan_column, unpack_column)
