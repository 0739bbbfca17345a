"""Flow batches the analyzer has already counted, by (stream, batch_seq) from the envelope.

A collector sends its unconfirmed batches again, from the oldest, when the store stops confirming
(flowmodel.bus TOPIC_ACK): the analyzer subscribes to the same batches and would count them twice.
A stream's batch_seq only grows, so the highest one seen per stream is enough; the streams
remembered are bounded (least recently seen forgotten first), as each collector run opens a new one.
"""
from __future__ import annotations

from collections import OrderedDict

MAX_STREAMS = 1024  # a few per collector and restart: a forgotten stream only risks a double count


class SeenBatches:
    """The highest batch_seq taken per stream, for at most ``max_streams`` streams."""

    def __init__(self, max_streams: int = MAX_STREAMS):
        self.max_streams = int(max_streams)
        self.last_seq: OrderedDict[str, int] = OrderedDict()
        self.duplicate_batches = 0
        self.duplicate_flows = 0
        self.forgotten_streams = 0

    def is_new(self, stream: str | None, batch_seq: int, count: int = 0) -> bool:
        """True for a batch to take (and remember it); False for one seen before (counted, with its
        ``count`` flows). A batch without a stream (an unconfirmed sender) is always new.

        Only the highest batch_seq is kept, so a batch the analyzer missed on the bus and gets only
        when sent again, after a later one, is dropped too: its loss was counted as a bus gap."""
        if stream is None:
            return True
        last = self.last_seq.get(stream)
        if last is not None and batch_seq <= last:
            self.duplicate_batches += 1
            self.duplicate_flows += int(count)
            return False
        self.last_seq[stream] = int(batch_seq)
        self.last_seq.move_to_end(stream)
        while len(self.last_seq) > self.max_streams:
            self.last_seq.popitem(last=False)
            self.forgotten_streams += 1
        return True
