"""Bus contracts: topics, the event envelope, and the msgpack codec for flow batches and events.

A bus message is two ZeroMQ frames, ``[topic, body]``. Every body is a msgpack map carrying the
envelope (``schema``, ``source``, ``seq``, ``sent_at``). A flow batch adds ``count`` and
``columns`` (name -> raw little-endian bytes), decoded with ``np.frombuffer`` without copying.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from .schema import FLOW_COLUMNS, FlowBatch

SCHEMA_VERSION = 1

WIRE_BYTES_PER_FLOW = sum(dt.itemsize for dt, _doc in FLOW_COLUMNS.values())  # 135: column bytes of one flow
MIN_QUEUE_MESSAGES = 8


def queue_limit(cfg) -> int:
    """The high-water mark (in messages) of a bus socket that carries flow batches.

    ZeroMQ bounds its queues in messages, and one flow batch is up to collector.batch_max_flows x
    135 bytes (about 0.5 MiB at 4096 flows), so the configured message count alone would let a
    socket whose reader falls behind hold hundreds of MiB. This keeps it to bus.queue_bytes.
    """
    per_message = cfg["collector.batch_max_flows"] * WIRE_BYTES_PER_FLOW + 1024
    return max(MIN_QUEUE_MESSAGES, min(cfg["bus.high_water_mark"], cfg["bus.queue_bytes"] // per_message))


TOPIC_FLOWS_PREFIX = b"flows."
TOPIC_ADVISORY = b"advisory"
TOPIC_EXPORTER = b"exporter"


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


def encode_batch(batch: FlowBatch, sequencer: Sequencer, **extra: Any) -> bytes:
    """A flow batch as a msgpack body (columns as raw bytes), stamped with the envelope."""
    body = {"count": batch.count, "columns": {name: _raw(batch.columns[name], dt) for name, (dt, _d) in FLOW_COLUMNS.items()}}
    body.update(extra)
    return msgpack.packb(sequencer.stamp(body), use_bin_type=True)


def _raw(arr: np.ndarray, dt: np.dtype) -> memoryview:
    """The column's bytes for msgpack (packed as bin) without an intermediate copy: packb copies
    them into the body once, and that is the only copy."""
    if arr.dtype != dt:
        arr = arr.astype(dt)
    return memoryview(np.ascontiguousarray(arr).view(np.uint8))


def decode_batch(body: bytes) -> tuple[Envelope, FlowBatch]:
    """A msgpack flow batch body as (envelope, batch). Columns are read-only views of the body."""
    msg = decode_body(body)
    try:
        count = int(msg["count"])
        raw = msg["columns"]
        cols = {}
        for name, value in raw.items():
            spec = FLOW_COLUMNS.get(name)
            if spec is None:
                continue  # a newer producer's extra column: ignore, do not fail
            if not isinstance(value, bytes) or len(value) % spec[0].itemsize:
                raise CodecError(f"column {name} is not a whole number of {spec[0].itemsize}-byte values")
            arr = np.frombuffer(value, dtype=spec[0])
            if len(arr) != count:
                raise CodecError(f"column {name} has {len(arr)} values, count says {count}")
            cols[name] = arr
    except (KeyError, TypeError, ValueError) as e:
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
    return Envelope(msg["schema"], msg["source"], int(msg["seq"]), int(msg.get("sent_at", 0)))
