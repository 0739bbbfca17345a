"""Bus contracts: topics, the event envelope, and the msgpack codec for flow batches and events.

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
from typing import Any, Sequence

import msgpack
import numpy as np

from . import addr
from .schema import FLOW_COLUMNS, HINT_CONST, HINT_IPV4, MAX_BATCH_FLOWS, FlowBatch

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


def encode_batch(batch: FlowBatch | Sequence[FlowBatch], sequencer: Sequencer, **extra: Any) -> bytes:
    """One flow batch body, stamped with the envelope: a msgpack map.

    ``batch`` may be a list of parts (the collector's decoded groups): they go out as one batch
    without being joined first; each column's bytes (or packed bytes) are copied once, into the
    body. Columns of a batch of PACK_MIN_FLOWS or more are packed where that is smaller (see
    ``plan_column``). Kept to a few numpy calls per column: at 16,384 flows per batch, each call
    costs the collector as much as a byte per flow.
    """
    parts = [batch] if isinstance(batch, FlowBatch) else [p for p in batch if p.count]
    count = sum(p.count for p in parts)
    header = sequencer.stamp({"count": count, **extra})
    chunks: list = [_map_header(len(header) + 1)]
    for key, value in header.items():
        chunks.append(_PACK(key))
        chunks.append(_PACK(value))
    chunks.append(_COLUMNS_HEAD)
    pack = count >= PACK_MIN_FLOWS
    for name, (dt, _doc) in FLOW_COLUMNS.items():
        arrays = [p.columns[name] for p in parts]
        hints = [p.hints.get(name) for p in parts]
        # 1- and 2-byte columns are looked at only when their producer vouched they are constant
        # (a column nobody filled, e.g. the countries with enrichment off: 4 bytes a flow saved)
        kind, wire_dt, base = plan_column(arrays, dt, hints) \
            if pack and (dt.itemsize >= 4 or all(h == HINT_CONST for h in hints)) else (_RAW, dt, 0)
        key = _KEYS[name]
        if kind == PACK_CONST:
            first = next(arr for arr in arrays if len(arr))
            chunks.append(key + _CONST_HEAD + _bin_header(dt.itemsize))
            chunks.append(np.ascontiguousarray(first[:1], dtype=dt))
            continue
        nbytes = count * wire_dt.itemsize
        if kind == PACK_IPV4:
            chunks.append(key + _IPV4_HEAD + _bin_header(nbytes))
            chunks.extend(np.ascontiguousarray(arr.view(_ADDR_WORDS)["v4"]) for arr in arrays)
        elif kind == PACK_NARROW:
            chunks.append(key + _NARROW_HEAD + _PACK(wire_dt.itemsize) + _PACK(base) + _bin_header(nbytes))
            for arr in arrays:
                if base:
                    chunks.append(np.subtract(arr, base, out=np.empty(len(arr), wire_dt), casting="unsafe"))
                else:
                    chunks.append(arr.astype(wire_dt))
        else:
            chunks.append(key + _bin_header(nbytes))
            chunks.extend(np.ascontiguousarray(arr, dtype=dt) for arr in arrays)
    return b"".join(chunks)


# Packed columns. Checking a column costs a few numpy reductions, so small batches (a quiet
# exporter's, cut by age) and the 1- and 2-byte columns go raw: there is little to save there.
PACK_MIN_FLOWS = 256
PACK_CONST = "const"   # ["const", one value's raw bytes]: every flow has this value
PACK_IPV4 = "ipv4"     # ["ipv4", n x 4 bytes]: IPv4-mapped addresses, the 4 address bytes of each
PACK_NARROW = "narrow"  # ["narrow", itemsize, base, n x itemsize bytes]: value - base, unsigned little-endian
_RAW = "raw"
_NARROW = {1: np.dtype("u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}
_MAPPED = 0xFFFF0000   # bytes 8-11 of ::ffff:a.b.c.d as a little-endian u4
# an address as words: reductions over these fields are several times faster than comparing
# strided slices of a (n, 4) view
_ADDR_WORDS = np.dtype([("hi", "<u8"), ("mid", "<u4"), ("v4", "<u4")])
_ADDR_HALVES = np.dtype([("hi", "<u8"), ("lo", "<u8")])
# one Packer for the small items (a packb call builds a new one each time); its pack() holds the GIL
_PACK = msgpack.Packer(use_bin_type=True).pack
_KEYS = {name: _PACK(name) for name in FLOW_COLUMNS}
_CONST_HEAD = b"\x92" + _PACK(PACK_CONST)            # a 2-array: kind, then the value (bin)
_IPV4_HEAD = b"\x92" + _PACK(PACK_IPV4)              # kind, then the addresses (bin)
_NARROW_HEAD = b"\x94" + _PACK(PACK_NARROW)          # kind, width, base, then the values (bin)


def plan_column(arrays: list[np.ndarray], dt: np.dtype, hints: list | None = None) -> tuple[str, np.dtype, int]:
    """How one column (given as parts) goes on the wire, as (form, wire dtype, base): one value
    when all are equal, the 4 address bytes when all addresses are IPv4-mapped, integers as
    offsets from the minimum (signed columns) or from 0 in the narrowest unsigned width that holds
    them; raw when nothing is smaller. ``hints`` (one per part, FlowBatch.hints) spare the checks
    a producer already vouched for."""
    if hints and hints[0] is not None and all(h == hints[0] for h in hints):
        if hints[0] == HINT_CONST:
            first = arrays[0][:1]
            if all(arr[:1] == first for arr in arrays):  # one value per part; the same in all?
                return (PACK_CONST, dt, 0)
        elif hints[0] == HINT_IPV4 and dt.kind == "V":
            ends = arrays[0].view(_ADDR_WORDS)["v4"][0]
            if not all(arr.view(_ADDR_WORDS)["v4"][0] == ends and arr.view(_ADDR_WORDS)["v4"][-1] == ends
                       for arr in arrays):
                return (PACK_IPV4, np.dtype("<u4"), 0)
            # the ends agree: maybe one address for all (an exporter's next hop), looked at below
    if dt.kind == "V":  # 16-byte addresses
        first = arrays[0].view(_ADDR_HALVES)[0]
        if all(_all_equal(arr.view(_ADDR_HALVES)[half], first[half]) for arr in arrays for half in ("hi", "lo")):
            return (PACK_CONST, dt, 0)  # e.g. the exporter, or a next hop the template does not carry (::)
        for arr in arrays:
            words = arr.view(_ADDR_WORDS)
            if words["hi"].max() != 0 or words["mid"].min() != _MAPPED or words["mid"].max() != _MAPPED:
                return (_RAW, dt, 0)
        return (PACK_IPV4, np.dtype("<u4"), 0)
    first = arrays[0][0]
    if all(_all_equal(arr, first) for arr in arrays):
        return (PACK_CONST, dt, 0)
    hi = max(int(arr.max()) for arr in arrays)
    base = min(int(arr.min()) for arr in arrays) if dt.kind == "i" else 0
    span = hi - base
    for size, narrow in _NARROW.items():
        if size >= dt.itemsize:
            break
        if span >> (8 * size) == 0:
            return (PACK_NARROW, narrow, base)
    return (_RAW, dt, 0)


def _all_equal(arr: np.ndarray, value) -> bool:
    """Every element equals ``value``; the ends are looked at first, as most columns that are not
    constant already differ there."""
    return bool(arr[0] == value and arr[-1] == value and arr.min() == value and arr.max() == value)


def _bin_header(n: int) -> bytes:
    if n < 0x100:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _map_header(n: int) -> bytes:
    return bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")


_COLUMNS_HEAD = _PACK("columns") + _map_header(len(FLOW_COLUMNS))


def unpack_column(name: str, value, dt: np.dtype, count: int) -> np.ndarray:
    """The schema column ``name`` from its wire form (raw bytes or a packed list); CodecError on
    anything that does not hold exactly ``count`` values."""
    if isinstance(value, bytes):
        if len(value) % dt.itemsize:
            raise CodecError(f"column {name} is not a whole number of {dt.itemsize}-byte values")
        arr = np.frombuffer(value, dtype=dt)
        if len(arr) != count:
            raise CodecError(f"column {name} has {len(arr)} values, count says {count}")
        return arr
    if not isinstance(value, list) or not value:
        raise CodecError(f"column {name} is neither bytes nor a packed column")
    kind = value[0]
    if kind == PACK_CONST and len(value) == 2 and isinstance(value[1], bytes) and len(value[1]) == dt.itemsize:
        return np.full(count, np.frombuffer(value[1], dtype=dt)[0], dtype=dt)
    if kind == PACK_IPV4 and len(value) == 2 and isinstance(value[1], bytes) and dt.kind == "V":
        if len(value[1]) != 4 * count:
            raise CodecError(f"column {name} holds {len(value[1])} bytes of IPv4 addresses, count says {count}")
        return addr.ipv4_column_from_raw(np.frombuffer(value[1], dtype="<u4"))
    if kind == PACK_NARROW and len(value) == 4 and dt.kind in "iu":
        _kind, size, base, raw = value
        narrow = _NARROW.get(size) if isinstance(size, int) else None
        if narrow is None or size >= dt.itemsize or not isinstance(base, int) or not isinstance(raw, bytes):
            raise CodecError(f"column {name} is packed with a bad width or base")
        if len(raw) != size * count:
            raise CodecError(f"column {name} holds {len(raw)} bytes of {size}-byte values, count says {count}")
        info = np.iinfo(dt)
        if not info.min <= base <= info.max:
            raise CodecError(f"column {name} has a base outside its type")
        values = np.frombuffer(raw, dtype=narrow).astype(dt)
        if base:
            if count and base + int(values.max()) > info.max:
                raise CodecError(f"column {name} has values outside its type")
            values += dt.type(base)
        return values
    raise CodecError(f"column {name} is packed as {str(kind)[:20]!r}, which this reader does not know")


# Columns without which a row is not a flow: a batch lacking any is refused, not stored as zeros at
# epoch 0. The others (sampling, interfaces, AS, extras) may be absent and take their defaults.
REQUIRED_COLUMNS = ("time_start", "time_end", "src_addr", "dst_addr", "src_port", "dst_port", "protocol",
                    "bytes", "packets", "exporter")


def decode_batch(body: bytes) -> tuple[Envelope, FlowBatch]:
    """A msgpack flow batch body as (envelope, batch). Raw columns are read-only views of the body,
    packed ones new arrays at the schema's width. CodecError when a column of REQUIRED_COLUMNS is missing."""
    msg = decode_body(body)
    try:
        count = int(msg["count"])
        if not 0 <= count <= MAX_BATCH_FLOWS:
            raise CodecError(f"count {count} is outside 0-{MAX_BATCH_FLOWS}")
        raw = msg["columns"]
        if not isinstance(raw, dict):
            raise CodecError("columns is not a map")
        missing = [name for name in REQUIRED_COLUMNS if name not in raw]
        if missing:
            raise CodecError(f"flow batch lacks the column(s) {', '.join(missing)}")
        cols = {}
        for name, value in raw.items():
            spec = FLOW_COLUMNS.get(name)
            if spec is None:
                continue  # a newer producer's extra column: ignore, do not fail
            cols[name] = unpack_column(name, value, spec[0], count)
    except (KeyError, TypeError, ValueError, OverflowError) as e:  # OverflowError: a count of float inf
        raise CodecError(f"bad flow batch: {e}") from e
    return envelope_of(msg), FlowBatch(cols, count)


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
