"""Flow batches the collector published but the store has not yet confirmed (flowmodel.bus TOPIC_ACK).

Oldest first: the newest up to ``memory_max_bytes`` in memory, the older ones in a spool of segment
files on disk (``spool_max_bytes`` in all; past it the oldest segment is dropped and its flows are
counted as lost). An ack removes what it covers; segments whose batches are all confirmed are
deleted. At stop everything still held is written to the spool, and a new Outbox on the same
directory holds it again, so a restarted collector sends it once more (the store drops what it
already has). Pure apart from the spool directory: the caller sends and passes the clock.

A spool record: ``RECORD`` header (magic, stream length, topic length, body length, batch_seq,
flows_before, count), then the stream id, the topic and the body as published.
"""
from __future__ import annotations

import collections
import fcntl
import logging
import os
import struct
from dataclasses import dataclass

from flowmodel.logs import fields
from flowmodel.protocol import is_digits

log = logging.getLogger(__name__)

RECORD = struct.Struct("<4sHHIQQI")
MAGIC = b"FLsp"
SEGMENTS = 16          # the spool bound is cut into this many segments: dropping one frees 1/16 of it
MIN_SEGMENT_BYTES = 1 << 20


@dataclass
class Entry:
    stream: str
    batch_seq: int
    flows_before: int
    count: int
    topic: bytes
    body: bytes | None      # None while spooled
    size: int               # body bytes
    segment: int = 0        # spool segment number, when spooled
    offset: int = 0         # where its body starts in the segment
    sent: bool = False      # published at least once (by this run or, for a spooled one, an earlier one)


class Outbox:
    def __init__(self, spool_path: str, memory_max_bytes: int, spool_max_bytes: int):
        self.spool_path = spool_path  # a directory; "" keeps everything in memory (bounded the same way)
        self.memory_max_bytes = memory_max_bytes
        self.spool_max_bytes = spool_max_bytes
        self.segment_max_bytes = max(MIN_SEGMENT_BYTES, spool_max_bytes // SEGMENTS)
        self.entries: collections.deque[Entry] = collections.deque()  # spooled ones first, then in memory
        self.memory_bytes = 0
        self.spooled = 0            # entries at the front that are on disk
        self.in_flight = 0          # entries at the front sent since the last go-back, awaiting their ack
        self.segments: dict[int, list[int]] = {}  # segment -> [bytes, live entries]
        self.segment = 0            # the one being appended to
        self._file = None
        self._lock_fd = -1
        self.dropped_batches = 0
        # flows dropped from the spool bound: lost, but for any the store committed just before it went
        # away (its ack never came); the store's count of what it never got is exact (see Collector.lost_flows)
        self.dropped_flows = 0
        self.spool_errors = 0

    # ---------------------------------------------------------------- lifecycle

    def open(self) -> None:
        """Lock the spool directory and take back what a previous run left there. A directory locked by
        another process is not shared: this outbox then keeps everything in memory (logged)."""
        if not self.spool_path:
            return
        os.makedirs(self.spool_path, exist_ok=True)
        fd = os.open(os.path.join(self.spool_path, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            log.warning("spool directory in use by another process; unconfirmed batches kept in memory only",
                        extra=fields(path=self.spool_path))
            self.spool_path = ""
            return
        self._lock_fd = fd
        for seg in sorted(self._segment_numbers()):
            self._load_segment(seg)
        self.segment = max(self.segments, default=0) + 1
        if self.entries:
            log.info("spooled batches taken back", extra=fields(path=self.spool_path, batches=len(self.entries),
                                                                flows=self.flows, bytes=self.spool_bytes))

    def close(self) -> None:
        """Spool everything still held (it is sent again by the next run), then release the directory."""
        if self.spool_path:
            while self.spooled < len(self.entries):
                if not self._spill_one():
                    break
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                self.spool_errors += 1
            self._file.close()
            self._file = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # ---------------------------------------------------------------- producer side

    def add(self, stream: str, batch_seq: int, flows_before: int, count: int, topic: bytes, body: bytes) -> None:
        self.entries.append(Entry(stream, batch_seq, flows_before, count, topic, body, len(body)))
        self.memory_bytes += len(body)
        while self.memory_bytes > self.memory_max_bytes and self.spooled < len(self.entries) - 1:
            if not self._spill_one():
                break
        self._bound()

    def sync(self) -> bool:
        """Hand what was spooled to the kernel (no fsync): then a killed process loses none of it.
        False when that failed (counted)."""
        if self._file is None:
            return True
        try:
            self._file.flush()
            return True
        except OSError as e:
            self.spool_errors += 1
            log.warning("cannot write the spool", extra=fields(path=self.spool_path, error=str(e)))
            return False

    def newest_spooled(self) -> Entry | None:
        return self.entries[self.spooled - 1] if self.spooled else None

    def body(self, entry: Entry) -> bytes | None:
        if entry.body is not None:
            return entry.body
        try:
            if self._file is not None and entry.segment == self.segment:
                self._file.flush()
            with open(self._segment_file(entry.segment), "rb") as f:
                f.seek(entry.offset)
                data = f.read(entry.size)
            if len(data) == entry.size:
                return data
        except OSError as e:
            log.warning("cannot read a spooled batch", extra=fields(error=str(e), segment=entry.segment))
        self.spool_errors += 1
        return None

    def ack(self, acks: dict[str, int]) -> int:
        """Remove the batches ``acks`` (stream -> highest batch_seq committed) covers, oldest first;
        returns how many. Batches of a stream come in batch_seq order, streams one after another."""
        n = 0
        while self.entries:
            e = self.entries[0]
            upto = acks.get(e.stream)
            if upto is None or e.batch_seq > upto:
                break
            self._pop()
            n += 1
        return n

    def drop_through(self, index: int) -> None:
        """Give up the entries up to ``index`` (one could not be read back from the spool): counted as lost."""
        for _ in range(index + 1):
            self._drop(self._pop())

    def first_of_each_stream(self) -> list[Entry]:
        seen, out = set(), []
        for e in self.entries:
            if e.stream not in seen:
                seen.add(e.stream)
                out.append(e)
        return out

    # ---------------------------------------------------------------- counts

    @property
    def flows(self) -> int:
        return sum(e.count for e in self.entries)

    @property
    def spool_bytes(self) -> int:
        return sum(s[0] for s in self.segments.values())

    # ---------------------------------------------------------------- internals

    def _pop(self) -> Entry:
        e = self.entries.popleft()
        if self.in_flight:
            self.in_flight -= 1
        if e.body is None:
            self.spooled -= 1
            seg = self.segments.get(e.segment)
            if seg is not None:
                seg[1] -= 1
                if seg[1] <= 0 and e.segment != self.segment:
                    self._remove_segment(e.segment)
            if self.spooled == 0 and self.segment in self.segments:
                self._remove_segment(self.segment)  # nothing on disk is needed any more
                self.segment += 1
        else:
            self.memory_bytes -= e.size
        return e

    def _spill_one(self) -> bool:
        """Write the oldest in-memory entry to the current segment."""
        e = self.entries[self.spooled]
        if not self.spool_path:
            return False
        try:
            if self._file is None or self.segments.get(self.segment, [0])[0] >= self.segment_max_bytes:
                self._rotate()
            stream = e.stream.encode()
            head = RECORD.pack(MAGIC, len(stream), len(e.topic), e.size, e.batch_seq, e.flows_before, e.count)
            start = self._file.tell()
            self._file.write(head + stream + e.topic)
            self._file.write(e.body)
        except OSError as ex:
            self.spool_errors += 1
            log.warning("cannot write the spool; unconfirmed batches stay in memory",
                        extra=fields(path=self.spool_path, error=str(ex)))
            return False
        seg = self.segments[self.segment]
        seg[0] += RECORD.size + len(stream) + len(e.topic) + e.size
        seg[1] += 1
        e.segment, e.offset = self.segment, start + RECORD.size + len(stream) + len(e.topic)
        e.body = None
        self.memory_bytes -= e.size
        self.spooled += 1
        return True

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            if self.segments.get(self.segment, [0, 0])[1] == 0:
                self._remove_segment(self.segment)
            self.segment += 1
        self._file = open(self._segment_file(self.segment), "ab")
        self.segments[self.segment] = [0, 0]

    def _bound(self) -> None:
        """Past spool_max_bytes (or, without a spool, memory_max_bytes) the oldest segment's batches (or
        the oldest batch) are dropped and counted."""
        while self.spool_bytes > self.spool_max_bytes and self.spooled:
            first = self.entries[0].segment
            while self.entries and self.entries[0].body is None and self.entries[0].segment == first:
                self._drop(self._pop())
            if first in self.segments and first != self.segment:
                self._remove_segment(first)
            elif first == self.segment:
                break
        if not self.spool_path:
            while self.memory_bytes > self.memory_max_bytes and len(self.entries) > 1:
                self._drop(self._pop())

    def _drop(self, e: Entry) -> None:
        self.dropped_batches += 1
        self.dropped_flows += e.count

    def _segment_file(self, seg: int) -> str:
        return os.path.join(self.spool_path, f"{seg:012d}.spool")

    def _segment_numbers(self) -> list[int]:
        out = []
        for name in os.listdir(self.spool_path):
            if name.endswith(".spool") and is_digits(name[:-6]):
                out.append(int(name[:-6]))
        return out

    def _remove_segment(self, seg: int) -> None:
        if seg == self.segment and self._file is not None:
            self._file.close()
            self._file = None
        self.segments.pop(seg, None)
        try:
            os.unlink(self._segment_file(seg))
        except FileNotFoundError:
            pass
        except OSError as e:
            self.spool_errors += 1
            log.warning("cannot remove a spool segment", extra=fields(segment=seg, error=str(e)))

    def _load_segment(self, seg: int) -> None:
        """Index one segment left by an earlier run; a torn last record (a crash mid-write) is cut off."""
        path = self._segment_file(seg)
        entries, pos = [], 0
        with open(path, "rb") as f:
            data_len = os.fstat(f.fileno()).st_size
            while pos + RECORD.size <= data_len:
                f.seek(pos)
                magic, slen, tlen, blen, bseq, before, count = RECORD.unpack(f.read(RECORD.size))
                end = pos + RECORD.size + slen + tlen + blen
                if magic != MAGIC or end > data_len:
                    break
                stream = f.read(slen).decode(errors="replace")
                topic = f.read(tlen)
                entries.append(Entry(stream, bseq, before, count, topic, None, blen, seg,
                                     pos + RECORD.size + slen + tlen, sent=True))
                pos = end
        if pos < data_len:
            log.warning("spool segment cut at a torn record", extra=fields(segment=seg, kept_bytes=pos, size=data_len))
            os.truncate(path, pos)
        if not entries:
            os.unlink(path)
            return
        self.entries.extend(entries)
        self.spooled += len(entries)
        self.segments[seg] = [pos, len(entries)]
