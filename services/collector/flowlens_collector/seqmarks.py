"""Exporters' sequence marks that match exactly the flows made durable, so a restart after a crash
counts as lost exactly what the exporters sent that no run kept.

Each time the collector publishes, the sequence numbers that moved since the last publication are a
*mark* of the batch that ends the publication (stream, batch_seq): every flow decoded up to that
mark is in that batch or an earlier one (the batcher hands over all it holds at once). The mark is
appended to a journal file *before* the batch is sent. A mark becomes durable when the store confirms
its batch, or when the batch is spooled (flushed to the kernel): then it joins the durable state,
which is written (with the journal rotated to the marks not yet durable) as the sequence file.

After a crash, the sequence file gives the durable state at its save; the journal gives the later
marks, of which those whose batches the store confirms or the spool holds are applied. What the
store committed but had not yet confirmed when the collector died is learnt from its first ack after
the restart (it acks every stream heard from in the last 15 minutes), so the receive loop waits for
that ack (bounded) before reading UDP. Files: ``<sequences>.json`` and ``<sequences>.<n>.journal``.
"""
from __future__ import annotations

import collections
import glob
import json
import logging
import os
from dataclasses import dataclass

from flowmodel.logs import fields
from flowmodel.protocol import is_digits

from .templates_file import SEQUENCE_FORMAT, load_state, save_text

log = logging.getLogger(__name__)


@dataclass
class Mark:
    stream: str       # the delivery stream of the batch that ends the publication
    batch_seq: int
    entries: list     # Decoder.sequence_state entries of the streams that moved
    line: bytes       # as journaled


def _key(entry) -> tuple:
    return (str(entry[0]), int(entry[1]), int(entry[2]), int(entry[3]))


def _line(stream: str, batch_seq: int, entries: list) -> bytes:
    return json.dumps({"stream": stream, "batch_seq": batch_seq, "streams": entries}, separators=(",", ":")).encode() + b"\n"


def _journals(stem: str) -> list[tuple[int, str]]:
    out = []
    for path in glob.glob(glob.escape(stem) + ".*.journal"):
        number = path[len(stem) + 1:-len(".journal")]
        if is_digits(number):
            out.append((int(number), path))
    return sorted(out)


def _read_journal(path: str) -> list[Mark]:
    """The marks of one journal; a torn last line (a crash mid-write) is left out."""
    marks = []
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        log.warning("cannot read a sequence journal", extra=fields(path=path, error=str(e)))
        return marks
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            m = json.loads(line)
            marks.append(Mark(str(m["stream"]), int(m["batch_seq"]), list(m["streams"]), line + b"\n"))
        except (ValueError, KeyError, TypeError):
            continue
    return marks


class SequenceMarks:
    """The durable state and the marks not yet durable, for the sequence file ``path`` ("": none)."""

    def __init__(self, path: str, pending_max_bytes: int, counters: dict):
        self.path = path
        self.stem = os.path.splitext(path)[0]
        self.pending_max_bytes = pending_max_bytes  # marks awaiting durability, at most (oldest merged past it)
        self.counters = counters
        self.durable: dict[tuple, list] = {}   # stream key -> Decoder.sequence_state entry, as of the durable flows
        self.pending: collections.deque[Mark] = collections.deque()
        self.pending_bytes = 0
        self.dirty = False                     # the durable state moved since the last save
        self.journal_no = 0
        self._fd = -1
        self._last_expected: dict[tuple, int] = {}
        # after a restart, until resolve(): the saved state and the previous runs' marks
        self._saved: dict[tuple, list] = {}
        self._old_marks: list[Mark] = []
        self._spooled_through: dict[str, int] = {}
        self.unresolved = False

    # ---------------------------------------------------------------- start

    def load(self, spooled_through: dict[str, int]) -> None:
        """Read the sequence file and the journals. Marks of batches the spool holds are durable
        already; if any other mark is left, ``unresolved`` says the store's first ack must tell."""
        if not self.path:
            return
        state = load_state(self.path) or {}
        streams = state.get("streams") if state.get("format") == SEQUENCE_FORMAT else None
        self._saved = {_key(e): e for e in streams or [] if isinstance(e, list) and len(e) >= 6}
        base = int(state.get("journal", 0) or 0)
        journals = [(n, p) for n, p in _journals(self.stem) if n >= base]
        self._old_marks = [m for _n, p in journals for m in _read_journal(p)]
        self.journal_no = max([n for n, _p in _journals(self.stem)] + [base])
        self._spooled_through = dict(spooled_through)
        self.unresolved = any(m.batch_seq > spooled_through.get(m.stream, 0) for m in self._old_marks)

    def resolve(self, committed: dict[str, int]) -> list[list]:
        """The state to continue from: the saved one, plus every earlier run's mark whose batch the
        store committed (``committed``: stream -> highest batch_seq) or the spool holds. It becomes
        this run's durable state (saved at once by the caller: ``save_now``)."""
        through = dict(self._spooled_through)
        for stream, seq in committed.items():
            through[stream] = max(seq, through.get(stream, 0))
        state = dict(self._saved)
        applied = 0
        for m in self._old_marks:
            if m.batch_seq <= through.get(m.stream, 0):
                for e in m.entries:
                    state[_key(e)] = e
                applied += 1
        if self._old_marks:
            log.info("sequence marks of the previous run", extra=fields(
                marks=len(self._old_marks), durable=applied, streams_confirmed=len(committed)))
        self.durable = state
        self._saved, self._old_marks, self.unresolved = {}, [], False
        self.dirty = True
        return list(state.values())

    def begin(self, expected: dict[tuple, int]) -> None:
        """This run's marks are told apart from ``expected`` (the decoder's, once restored)."""
        self._last_expected = expected

    # ---------------------------------------------------------------- this run

    def record(self, stream: str, batch_seq: int, decoder) -> None:
        """Journal the streams that moved since the last mark as the mark of (stream, batch_seq);
        called before that batch is sent."""
        if not self.path or self.unresolved:
            return
        expected = decoder.sequence_expected()
        last = self._last_expected
        moved = [k for k, v in expected.items() if last.get(k) != v]
        self._last_expected = expected
        if not moved:
            return
        entries = decoder.sequence_state(moved)
        line = _line(stream, batch_seq, entries)
        try:
            if self._fd < 0:
                self._open_journal(self.journal_no + 1, [])
            os.write(self._fd, line)
        except OSError as e:
            self.counters["sequence_save_errors"] += 1
            log.warning("cannot write the sequence journal", extra=fields(path=self.stem, error=str(e)))
        self.pending.append(Mark(stream, batch_seq, entries, line))
        self.pending_bytes += len(line)
        while self.pending_bytes > self.pending_max_bytes and len(self.pending) > 1:
            self._merge_oldest()

    def durable_through(self, stream: str, batch_seq: int) -> None:
        """The batches of ``stream`` up to ``batch_seq`` are durable (confirmed or spooled)."""
        while self.pending and self.pending[0].stream == stream and self.pending[0].batch_seq <= batch_seq:
            m = self.pending.popleft()
            self.pending_bytes -= len(m.line)
            for e in m.entries:
                self.durable[_key(e)] = e
            self.dirty = True

    def _merge_oldest(self) -> None:
        """Past the bound, the oldest mark is folded into the next: exact again from the next one on."""
        first = self.pending.popleft()
        second = self.pending[0]
        keep = {_key(e): e for e in first.entries}
        keep.update({_key(e): e for e in second.entries})
        second.entries = list(keep.values())
        line = _line(second.stream, second.batch_seq, second.entries)
        self.pending_bytes += len(line) - len(first.line) - len(second.line)
        second.line = line
        self.counters["sequence_marks_merged"] = self.counters.get("sequence_marks_merged", 0) + 1  # exact no more

    # ---------------------------------------------------------------- saves

    def rotate(self, now_ms: int) -> tuple[str, int] | None:
        """When the durable state moved: start the next journal with the marks still pending and
        return (the sequence file's text, that journal's number) for ``write``; else None."""
        if not self.path or not self.dirty or self.unresolved:
            return None
        number = self.journal_no + 1
        try:
            self._open_journal(number, [m.line for m in self.pending])
        except OSError as e:
            self.counters["sequence_save_errors"] += 1
            log.warning("cannot start a sequence journal", extra=fields(path=self.stem, error=str(e)))
            return None
        self.dirty = False
        text = json.dumps({"format": SEQUENCE_FORMAT, "saved_ms": now_ms, "journal": number,
                           "streams": list(self.durable.values())}, separators=(",", ":"))
        return text, number

    def write(self, text: str, number: int) -> None:
        """Write the sequence file, then drop the journals it makes useless (may run on a thread)."""
        try:
            save_text(self.path, text)
            self.counters["sequence_saves"] += 1
        except OSError as e:
            self.counters["sequence_save_errors"] += 1
            self.dirty = True  # try again at the next interval
            log.warning("cannot save sequence state", extra=fields(path=self.path, error=str(e)))
            return
        for n, path in _journals(self.stem):
            if n < number:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _open_journal(self, number: int, lines: list[bytes]) -> None:
        path = f"{self.stem}.{number}.journal"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            if lines:
                os.write(fd, b"".join(lines))
        except OSError:
            os.close(fd)
            raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self.journal_no = fd, number
