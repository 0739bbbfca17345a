"""What a restarted collector takes over from the run before it: the decoder's templates (saved when
they change) and each exporter's sequence numbering as of the flows made durable (seqmarks.py), so
what an exporter sent that no run kept is counted as lost, exactly. Loaded at start, saved from the
receive loop's timer; the loop only builds the text, a thread writes it, so the loop never waits for
the disk (templates_file.py writes it atomically).
"""
from __future__ import annotations

import logging
import os
import threading
import time

from flowmodel.logs import RateLimitedLog, fields

from .seqmarks import SequenceMarks
from .templates_file import load_state, save_text, sequences_path

log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RestartState:
    """Templates and sequence state of one collector, at ``template_path`` (empty: nothing saved).
    ``counters`` is the collector's counter map: saves, errors and loads are counted in it."""

    def __init__(self, decoder, template_path: str, sequence_max_age_ms: int, counters: dict,
                 marks_max_bytes: int = 32 << 20):
        self.decoder = decoder
        self.template_path = template_path
        self.sequence_path = sequences_path(template_path) if template_path else ""
        self.sequence_max_age_ms = sequence_max_age_ms  # older saved numbers are not continued
        self.counters = counters
        self.saved_generation: int | None = None  # the decoder's templates_generation last saved
        # marks waiting for their batches to be confirmed or spooled are bounded like those batches
        self.marks = SequenceMarks(self.sequence_path, marks_max_bytes, counters)
        self.save_thread: threading.Thread | None = None
        self._rlog = RateLimitedLog(log)

    # ---------------------------------------------------------------- start

    def load_templates(self) -> None:
        """Templates first: an IPFIX stream's numbering is continued only under the templates it had."""
        if not self.template_path:
            return
        state = load_state(self.template_path)
        if state is None:
            return
        try:
            n = self.decoder.load_templates_state(state, now_ms())
        except (ValueError, KeyError, TypeError) as e:
            log.warning("saved templates rejected; starting without them",
                        extra=fields(path=self.template_path, error=str(e)))
            return
        self.counters["templates_loaded"] = int(n or 0)
        self.saved_generation = getattr(self.decoder, "templates_generation", None)
        log.info("templates loaded", extra=fields(path=self.template_path, templates=n))

    def load_sequences(self, spooled_through: dict[str, int]) -> None:
        """Read the sequence file and journals (``spooled_through``: stream -> the newest batch_seq
        the spool holds); continue at once unless the store's first ack must say what it committed."""
        self.marks.load(spooled_through)
        if not self.marks.unresolved:
            self.resolve_sequences({})

    def resolve_sequences(self, committed: dict[str, int]) -> None:
        """Continue the exporters' sequence numbers as of the flows some run kept (when recent
        enough), so the first packet of each counts what no run kept as lost; save that at once."""
        streams = self.marks.resolve(committed)
        if streams:
            n = self.decoder.load_sequence_state(streams, now_ms(), self.sequence_max_age_ms)
            self.counters["sequences_loaded"] = n
            log.info("sequence state loaded", extra=fields(path=self.sequence_path, streams=n, saved=len(streams)))
        self.marks.begin(self.decoder.sequence_expected())
        self.save_sequences_now()

    def close(self) -> None:
        """At stop, once the outbox spooled what it held: the last durable state, the journal closed."""
        self.save_sequences_now()
        self.marks.close()

    def save_sequences_now(self) -> None:
        """The durable sequence state written in this thread (at start and at stop)."""
        if self.save_thread is not None:
            self.save_thread.join()
            self.save_thread = None
        due = self.marks.rotate(now_ms())
        if due is not None:
            self.marks.write(*due)

    # ---------------------------------------------------------------- saves

    def save(self, force: bool = False) -> None:
        """Save the restart state that changed since the last save: the templates (when their
        generation moved) and the durable sequence state (when more flows became durable). The loop
        only builds the template text (entries are serialised once, when defined: ~10 ms at the default
        field cap) and the sequence file's; writing and fsync run on a thread. ``force`` (at stop)
        writes in this thread, after any save still running."""
        if not self.template_path:
            return
        if self.save_thread is not None:
            if not force and self.save_thread.is_alive():
                return  # the previous save is still writing: try again at the next interval
            self.save_thread.join()
            self.save_thread = None
        text = None
        generation = self.decoder.templates_generation
        if generation != self.saved_generation or (force and not os.path.exists(self.template_path)):
            try:
                t0 = time.perf_counter()
                text = self.decoder.templates_state_text()
                ms = int((time.perf_counter() - t0) * 1000)
                self.counters["template_save_max_ms"] = max(self.counters["template_save_max_ms"], ms)
                self.saved_generation = generation
            except (TypeError, ValueError) as e:
                self.counters["template_save_errors"] += 1
                self._rlog.warning("templates", "cannot save templates", path=self.template_path, error=str(e))
        streams = self.marks.rotate(now_ms()) if self.sequence_path else None
        if text is None and streams is None:
            return  # unchanged since the last save
        if force:
            self._write(text, streams)
        else:
            self.save_thread = threading.Thread(target=self._write, args=(text, streams),
                                                name="template-save", daemon=True)
            self.save_thread.start()

    def _write(self, text: str | None, streams: tuple[str, int] | None) -> None:
        if text is not None:
            try:
                save_text(self.template_path, text)
                self.counters["template_saves"] += 1
            except OSError as e:
                self.counters["template_save_errors"] += 1
                self.saved_generation = None  # try again at the next interval
                self._rlog.warning("templates", "cannot save templates", path=self.template_path, error=str(e))
        if streams is not None:
            self.marks.write(*streams)
