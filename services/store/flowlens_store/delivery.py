"""The store's side of confirmed delivery (flowmodel.bus TOPIC_ACK): which batches of each
collector stream it has taken, which it has committed, and what it dropped as duplicates.

Pure: the receive loop calls ``admit`` per flow batch and ``resend`` per resend notice; the writer
reports committed batch_seqs (persisted in the ``streams`` table in the same SQLite transaction as
the rows, so after a restart the store still knows what it holds and drops what comes again).
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

# per stream: the highest batch_seq committed, the stream's flows up to and including it, the flows the
# collector dropped before they arrived (its spool bound), when last heard from
STREAMS_DDL = ("CREATE TABLE IF NOT EXISTS streams (stream TEXT PRIMARY KEY, batch_seq INTEGER NOT NULL, "
               "flows INTEGER NOT NULL, lost INTEGER NOT NULL, seen_at INTEGER NOT NULL)")
ACK_RECENT_MS = 15 * 60_000      # streams acked in each ack message: those heard from this recently
STREAM_RETENTION_MS = 7 * 86_400_000  # a stream silent this long is forgotten (its collector's spool is long gone)

NEW, DUPLICATE, OUT_OF_ORDER = "new", "duplicate", "out_of_order"


@dataclass
class StreamState:
    taken_seq: int = 0      # highest batch_seq handed to the writer, in order
    taken_flows: int = 0    # flows in batches 1..taken_seq (flows_before + count of the last)
    committed_seq: int = 0  # highest batch_seq committed to SQLite (what the ack says)
    seen_at: int = 0        # ms, last batch or notice
    lost_flows: int = 0     # flows the collector no longer held when it sent again (persisted with the next batch)


class Ledger:
    def __init__(self, committed: dict[str, tuple[int, int, int, int]] | None = None):
        """``committed``: stream -> (batch_seq, flows, lost, seen_at) as persisted."""
        self.streams: dict[str, StreamState] = {
            s: StreamState(seq, flows, seq, seen, lost) for s, (seq, flows, lost, seen) in (committed or {}).items()}
        self.duplicate_batches = 0
        self.duplicate_flows = 0
        self.out_of_order_batches = 0   # taken again later, when the collector resends them

    @property
    def lost_flows(self) -> dict[str, int]:
        """stream -> flows the collector no longer held when it sent again (its spool bound)."""
        return {s: st.lost_flows for s, st in list(self.streams.items()) if st.lost_flows}

    def admit(self, stream: str, batch_seq: int, flows_before: int, count: int, now: int) -> str:
        """NEW when the batch is the stream's next one (the caller takes it, then calls ``taken``)."""
        st = self.streams.get(stream)
        if st is None:
            st = self.streams[stream] = StreamState()
        st.seen_at = now
        if batch_seq <= st.taken_seq:
            self.duplicate_batches += 1
            self.duplicate_flows += count
            return DUPLICATE
        if batch_seq != st.taken_seq + 1:
            self.out_of_order_batches += 1
            return OUT_OF_ORDER
        return NEW

    def taken(self, stream: str, batch_seq: int, flows_through: int) -> None:
        st = self.streams[stream]
        st.taken_seq, st.taken_flows = batch_seq, flows_through

    def resend(self, stream: str, from_seq: int, flows_before: int, now: int) -> int:
        """The collector holds nothing of ``stream`` before ``from_seq``: skip what it no longer
        has and return the flows so lost (0 when the store took everything before it)."""
        st = self.streams.get(stream)
        if st is None:
            st = self.streams[stream] = StreamState()
        st.seen_at = now
        if from_seq <= st.taken_seq + 1:
            return 0
        lost = max(0, flows_before - st.taken_flows)
        st.taken_seq, st.taken_flows = from_seq - 1, flows_before
        st.lost_flows += lost
        return lost

    def mark(self, stream: str, batch_seq: int, flows_through: int) -> tuple:
        """What the writer persists with a batch of ``stream``: see STREAMS_DDL."""
        return (stream, batch_seq, flows_through, self.streams[stream].lost_flows)

    def committed(self, marks: dict[str, int]) -> None:
        """The writer's committed batch_seq per stream."""
        for stream, seq in marks.items():
            st = self.streams.get(stream)
            if st is not None and seq > st.committed_seq:
                st.committed_seq = seq

    def acks(self, now: int) -> dict[str, list[int]]:
        """stream -> [highest batch_seq committed, flows lost before it]: the collector's exact loss count."""
        return {s: [st.committed_seq, st.lost_flows] for s, st in self.streams.items()
                if now - st.seen_at <= ACK_RECENT_MS and st.committed_seq}


def load_streams(db: sqlite3.Connection, now: int) -> dict[str, tuple[int, int, int, int]]:
    """The persisted stream marks; streams silent for STREAM_RETENTION_MS are dropped."""
    db.execute(STREAMS_DDL)
    db.execute("DELETE FROM streams WHERE seen_at < ?", (now - STREAM_RETENTION_MS,))
    return {s: (seq, flows, lost, seen) for s, seq, flows, lost, seen in
            db.execute("SELECT stream, batch_seq, flows, lost, seen_at FROM streams")}


def install_marks(db: sqlite3.Connection) -> None:
    """Persist stream marks atomically with the rows. The writer fills temp.stream_marks before a
    flow transaction; the transaction's last statement (warm.write_flows' ``next_seq`` meta update)
    fires this trigger, which copies them into ``streams``: a rollback takes them back with the rows."""
    db.execute(STREAMS_DDL)
    db.execute("CREATE TEMP TABLE IF NOT EXISTS stream_marks (stream TEXT PRIMARY KEY, batch_seq INTEGER, "
               "flows INTEGER, lost INTEGER, seen_at INTEGER)")
    db.execute("CREATE TEMP TRIGGER IF NOT EXISTS stream_marks_commit AFTER INSERT ON main.meta "
               "WHEN NEW.key = 'next_seq' BEGIN "
               "INSERT OR REPLACE INTO streams (stream, batch_seq, flows, lost, seen_at) "
               "SELECT stream, batch_seq, flows, lost, seen_at FROM stream_marks; END")


def stage_marks(db: sqlite3.Connection, marks: dict[str, tuple[int, int, int]], now: int) -> None:
    """``marks``: stream -> (batch_seq, flows through it, lost flows), for the next flow transaction."""
    db.execute("DELETE FROM temp.stream_marks")
    if marks:
        db.executemany("INSERT INTO temp.stream_marks (stream, batch_seq, flows, lost, seen_at) VALUES (?, ?, ?, ?, ?)",
                       [(s, seq, flows, lost, now) for s, (seq, flows, lost) in marks.items()])


def save_marks(db: sqlite3.Connection) -> None:
    """For a chunk whose rows were all dropped before the transaction (no trigger fired)."""
    db.execute("INSERT OR REPLACE INTO main.streams (stream, batch_seq, flows, lost, seen_at) "
               "SELECT stream, batch_seq, flows, lost, seen_at FROM temp.stream_marks")
