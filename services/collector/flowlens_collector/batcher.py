"""Cut decoded flows into bus batches by size or age, one batch per export version.

Pure: the caller passes the clock. Decoded groups are kept as a list of FlowBatches and never
joined here: a published batch is a list of parts that the bus codec writes straight into one
message body, so the columns are copied once between the decoder and the socket.
"""
from __future__ import annotations

import numpy as np

from flowmodel.schema import FlowBatch


class Batcher:
    def __init__(self, max_flows: int, max_age_ms: int):
        self.max_flows = max_flows
        self.max_age_ms = max_age_ms
        self._parts: list[FlowBatch] = []
        self.count = 0
        self.oldest_ms: int | None = None  # when the oldest pending flow arrived

    def add(self, batch: FlowBatch, now_ms: int) -> None:
        if not batch.count:
            return
        if self.oldest_ms is None:
            self.oldest_ms = now_ms
        self._parts.append(batch)
        self.count += batch.count

    def due(self, now_ms: int) -> bool:
        """True when the pending flows must go out: enough of them, or the oldest waited too long."""
        if not self.count:
            return False
        return self.count >= self.max_flows or now_ms - self.oldest_ms >= self.max_age_ms

    def ms_until_due(self, now_ms: int) -> int | None:
        """How long the loop may sleep before the age limit is hit; None when nothing is pending."""
        if not self.count:
            return None
        return max(0, self.max_age_ms - (now_ms - self.oldest_ms))

    def take(self) -> list[tuple[int, list[FlowBatch]]]:
        """Everything pending as (flow_version, parts) pairs, in arrival order, each pair at most
        max_flows flows in all. Batches end where a part ends when they can (the codec's work is
        per part and column): a part that does not fit starts the next batch, and only a part
        larger than max_flows is cut into views."""
        if not self.count:
            return []
        by_version: dict[int, list[FlowBatch]] = {}
        for part in self._parts:
            for version, piece in split_by_version(part):
                by_version.setdefault(version, []).append(piece)
        self._parts = []
        self.count = 0
        self.oldest_ms = None
        out = []
        for version, pieces in by_version.items():
            chunk, room = [], self.max_flows
            for piece in pieces:
                if chunk and piece.count > room:
                    out.append((version, chunk))
                    chunk, room = [], self.max_flows
                start = 0
                while start < piece.count:
                    n = min(room, piece.count - start)
                    chunk.append(piece if n == piece.count else piece.select(slice(start, start + n)))
                    start += n
                    room -= n
                    if not room:
                        out.append((version, chunk))
                        chunk, room = [], self.max_flows
            if chunk:
                out.append((version, chunk))
        return out


def split_by_version(batch: FlowBatch) -> list[tuple[int, FlowBatch]]:
    versions = batch.columns["flow_version"]
    first = int(versions[0])
    if (versions == first).all():  # the usual case: one protocol per collector
        return [(first, batch)]
    return [(int(v), batch.select(versions == v)) for v in np.unique(versions)]
