"""Export datagrams -> FlowBatch: one table picks the decoder of each datagram by its protocol.

NetFlow v5, v9, IPFIX and sFlow v5 (told apart by the version field, and sFlow by its first word
00 00 00 05) may arrive in one group, on any of the collector's ports. The group is cut into runs of
consecutive datagrams of one protocol, and each run goes to its protocol's decoder (``DECODERS``):
v5 and sFlow decoded as arrays (v5_run.py, sflow_run.py), v9 and IPFIX by the templated decoder
(templated_run.py, decoders/templated.py), whose flows come out at the end of the call.

The collector service hands a group of datagrams (with their UDP sources) to ``Decoder.decode`` and
publishes the batch it returns. All protocol state lives in the Decoder instance: the templated
decoder's (templates, options, held data sets, IPFIX numbering) and the per-exporter accounting
(accounting.py: counters, sequence numbers, source identities), made here and passed to every
decoder. The parsers in ``flowlens_collector.decoders`` are pure. Bad input is counted per exporter
and reason, never raised.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from flowmodel.logs import RateLimitedLog, fields
from flowmodel.schema import FlowBatch

from . import flowtimes, sflow_run, templated_run, v5_run
from .accounting import Accounting
from .decoders import v5
from .decoders.stats import ExporterStats
from .decoders.ifnames import InterfaceTable
from .decoders.templated import TemplatedDecoder
from .sflow_counters import CounterDeltas

log = logging.getLogger(__name__)

# after the group's last datagram, so header/version reads never run off the end (and sFlow's
# decoder can read the group in place)
_PAD = bytes(max(v5.RECORD_LEN, sflow_run.sflow.PAD))
# Protocols, as the flow_version column and the exporter rows name them; a datagram too short to
# say is TRUNCATED. Transport sessions with templates (each template ~6 KB with its compiled dtype)
# are bounded at max_exporters: at the bound the least recently refreshed session goes (session_cap).
V5, V9, IPFIX, SFLOW, TRUNCATED = 5, 9, 10, sflow_run.VERSION, -1
# protocol -> the Decoder method that takes a run of its datagrams: the one place that picks a decoder
DECODERS = {V5: "_v5_run", V9: "_v9_run", IPFIX: "_ipfix_run", SFLOW: "_sflow_run"}


def _version_fields(blob, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The first 16 bits of each datagram; TRUNCATED when it is shorter than 2 bytes."""
    n = len(offsets)
    stride = v5.even_stride(offsets) if lengths[0] >= 2 and (lengths == lengths[0]).all() else None
    if stride is not None:  # datagrams of one size in receive slots: one strided read
        return np.ndarray((n,), dtype=">u2", buffer=blob, offset=int(offsets[0]), strides=(stride,)).astype(np.int32)
    u8 = np.frombuffer(blob, dtype=np.uint8)
    codes = (u8[offsets].astype(np.int32) << 8) | u8[offsets + 1]
    codes[lengths < 2] = TRUNCATED
    return codes


def protocols(blob, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The protocol of each datagram: its version field (5, 9, 10, or what else it says), SFLOW
    for sFlow v5, TRUNCATED when it is shorter than 2 bytes."""
    codes = _version_fields(blob, offsets, lengths)
    zero = codes == 0  # NetFlow's version is never 0: sFlow's 32-bit version word starts 00 00
    if zero.any():
        codes[zero & sflow_run.is_sflow(blob, offsets, lengths)] = SFLOW
    return codes


def protocol_runs(blob, offsets: np.ndarray, lengths: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, protocol) of each run of consecutive datagrams of one protocol; a group of one
    NetFlow/IPFIX version (the usual case under load) costs one comparison, a group of sFlow one
    test of their version words."""
    codes = _version_fields(blob, offsets, lengths)
    first = int(codes[0])
    if first != 0:
        if len(codes) == 1 or (codes == first).all():
            return [(0, len(codes), first)]
    elif not codes.any():  # all sFlow, most likely (an sFlow port's group)
        sflow_rows = sflow_run.is_sflow(blob, offsets, lengths)
        if sflow_rows.all():
            return [(0, len(codes), SFLOW)]
        codes[sflow_rows] = SFLOW
        return runs(codes)
    zero = codes == 0
    if zero.any():
        codes[zero & sflow_run.is_sflow(blob, offsets, lengths)] = SFLOW
    return runs(codes)


def runs(codes: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, protocol) of each run of consecutive datagrams of one protocol."""
    n = len(codes)
    if n == 1 or (codes == codes[0]).all():
        return [(0, n, int(codes[0]))]
    cuts = (np.flatnonzero(codes[1:] != codes[:-1]) + 1).tolist()
    bounds = [0, *cuts, n]
    return [(a, b, int(codes[a])) for a, b in zip(bounds[:-1], bounds[1:])]


class Decoder:
    """Stateful decoder of NetFlow v5, v9, IPFIX and sFlow v5 export datagrams into the flow schema."""

    def __init__(self, *, max_templates_per_exporter: int = 1024, pending_max_bytes: int = 2 << 20,
                 pending_max_age_ms: int = 1_800_000, pending_total_max_bytes: int = 4 << 20,
                 template_fields_total_max: int = 65536, template_lifetime_ms: int = 5_400_000,
                 max_time_ahead_ms: int | None = None, max_exporters: int = 1000,
                 max_interfaces: int = 4096, names_republish_ms: int = 300_000, max_if_counters: int = 16384):
        # flows ending further than this after now_ms are dropped (flowtimes); None: now_ms is not a
        # wall clock (tests, benches drive it), keep every time
        self.max_time_ahead_ms = max_time_ahead_ms
        self._errlog = RateLimitedLog(log, 10.0)
        # (exporter, domain) rows, at most max_exporters, the rest folded into one overflow row; a
        # row silent for a template lifetime makes room when the table is full
        self.acct = Accounting(max_exporters, template_lifetime_ms, self._errlog)
        self.exporters = self.acct.exporters
        # interface names from options data (IE 82/83), published on bus.TOPIC_INTERFACES by the service
        self.interfaces = InterfaceTable(max_interfaces, max_exporters, names_republish_ms)
        # sFlow if-counters deltas per (agent, sub-agent, ifIndex), published on bus.TOPIC_IF_COUNTERS by the service
        self.if_counters = CounterDeltas(max_if_counters)
        self._seq_restored_ms: dict[tuple, int] = {}  # stream -> its last packet before a restart (load_sequence_state)
        self._templated = TemplatedDecoder(self.acct, max_templates_per_exporter=max_templates_per_exporter,
                                           pending_max_bytes=pending_max_bytes,
                                           pending_max_age_ms=pending_max_age_ms,
                                           pending_total_max_bytes=pending_total_max_bytes,
                                           template_fields_total_max=template_fields_total_max,
                                           template_lifetime_ms=template_lifetime_ms,
                                           max_sessions=self.exporters.max_exporters, interfaces=self.interfaces)
        self._decoders = {code: getattr(self, name) for code, name in DECODERS.items()}

    # -- public interface ------------------------------------------------------------------------

    def decode(self, datagrams, sources, now_ms: int, layout=None) -> FlowBatch:
        """Decode a group of datagrams (bytes-like) from ``sources`` into one batch.

        ``layout`` = (buffer, offsets, lengths) says where the datagrams already sit in one buffer
        (the collector's receive slots): datagram i is ``buffer[offsets[i]:offsets[i] + lengths[i]]``
        and at least 48 bytes after each datagram's start are readable. Without it the group is
        joined into one bytes object first.
        """
        self._templated.begin(now_ms)
        n = len(datagrams)
        out: list[FlowBatch] = []
        if n:
            if layout is None:
                # one copy of the whole group; headers and records are read from it with array indexing
                parts = list(datagrams)
                parts.append(_PAD)
                blob = b"".join(parts)
                lengths = np.fromiter(map(len, datagrams), dtype=np.int64, count=n)
                offsets = np.cumsum(lengths) - lengths
            else:
                blob, offsets, lengths = layout
            for a, b, code in protocol_runs(blob, offsets, lengths):
                decoder = self._decoders.get(code, self._unsupported_run)
                if a == 0 and b == n:
                    decoder(blob, offsets, lengths, datagrams, sources, now_ms, out, code)
                else:
                    decoder(blob, offsets[a:b], lengths[a:b], datagrams[a:b], sources[a:b], now_ms, out, code)
        return self._drop_future(FlowBatch.concat(out + self._templated.finish()), now_ms)

    def _drop_future(self, batch: FlowBatch, now_ms: int) -> FlowBatch:
        if self.max_time_ahead_ms is None:
            return batch
        return flowtimes.drop_future(batch, now_ms, lambda exporter, domain: self.stats(exporter, domain, now_ms, False),
                                     self.max_time_ahead_ms)

    def expire(self, now_ms: int) -> None:
        """Held data past its age and templates past their lifetime go (counted); in a full
        exporter table, rows silent for a template lifetime make room."""
        self._templated.expire(now_ms)
        self.exporters.retire_idle(now_ms)

    def exporter_stats(self, changed_only: bool = False) -> list[dict]:
        """Rows per (exporter, domain), per flowmodel.events.EXPORTER_STATS_FIELDS, plus the overflow
        row once pairs were folded; ``changed_only``: the rows changed since the last such call."""
        return self.exporters.rows(self._templated.pending_by_stats_key(), self._templated.templates_by_stats_key(),
                                   changed_only)

    @property
    def templates_generation(self) -> int:
        """Changes whenever the persisted template state changes (templates, sessions, refreshes)."""
        return self._templated.generation

    def templates_state(self) -> dict:
        return self._templated.state()

    def templates_state_text(self) -> str:
        """The templates file's JSON text (cheap: template entries are serialised once each)."""
        return self._templated.state_text()

    def load_templates_state(self, state: dict, now_ms: int | None = None) -> int:
        if now_ms is None:
            now_ms = time.time_ns() // 1_000_000
        return self._templated.load_state(state, now_ms)

    def sequence_expected(self) -> dict[tuple, int]:
        """(exporter, port, version, domain) -> the sequence number expected next (a copy): cheap, for
        telling which streams moved since an earlier copy."""
        return self.acct.seq.expected()

    def sequence_state(self, streams=None) -> list[list]:
        """What each exporter's sequence numbering expects next, for a restart to count the gap:
        [exporter, port, version, domain, expected next, last seen ms, IPFIX numbering or None] per
        stream (of ``streams`` only, when given). The time is the last packet of its (exporter,
        domain), or the restored one for a stream not heard from since the restart."""
        out = []
        restored = self._seq_restored_ms
        expected_by_stream = self.acct.seq.expected()
        if streams is not None:
            expected_by_stream = {s: expected_by_stream[s] for s in streams if s in expected_by_stream}
        for stream, expected in expected_by_stream.items():
            host, port, version, domain = stream
            s = self.exporters.get_tracked(host, domain)
            last = s.last_seen if s is not None and s.packets else restored.get(stream)
            if last is None:
                continue
            numbering = self._templated.ipfix_numbering(stream) if version == 10 else None
            out.append([host, port, version, domain, expected, last, numbering])
        return out

    def load_sequence_state(self, streams, now_ms: int, max_age_ms: int) -> int:
        """Continue the streams of ``sequence_state`` entries heard from less than ``max_age_ms``
        ago, so the first packet of each after a restart counts what was sent meanwhile as lost.
        An IPFIX stream only when the saved numbering is the one restored with the templates (the
        expected number means nothing under another). Call after ``load_templates_state``.
        Returns the streams restored; malformed entries are skipped."""
        restored = 0
        for e in streams:
            try:
                host, port, version, domain, expected, last = str(e[0]), int(e[1]), int(e[2]), int(e[3]), \
                    int(e[4]), int(e[5])
                numbering = e[6] if len(e) > 6 else None
            except (TypeError, ValueError, IndexError):
                continue
            if version not in (5, 9, 10, sflow_run.VERSION) or not 0 <= expected <= 0xFFFFFFFF or not 0 <= now_ms - last < max_age_ms:
                continue
            stream = (host, port, version, domain)
            if version == 10 and (numbering is None or self._templated.ipfix_numbering(stream) != numbering):
                continue
            self.acct.seq.restore(stream, expected)
            self._seq_restored_ms[stream] = last
            restored += 1
        return restored

    def stats(self, exporter: str, domain: int, now_ms: int, seen: bool = True) -> ExporterStats:
        """The counters of (exporter, domain) (see Accounting.stats)."""
        return self.acct.stats(exporter, domain, now_ms, seen)

    # -- one run of datagrams of one protocol: (blob, offsets, lengths, datagrams, sources, now_ms, out, code)

    def _v5_run(self, blob, offsets, lengths, _datagrams, sources, now_ms: int, out: list, _code) -> None:
        try:
            batch = v5_run.decode_run(self.acct, blob, offsets, lengths, sources, now_ms)
        except Exception:  # a decoder bug must not stop the loop: counted and logged
            self._run_failed("v5", sources, now_ms)
            return
        if batch is not None:
            out.append(batch)

    def _sflow_run(self, blob, offsets, lengths, _datagrams, sources, now_ms: int, out: list, _code) -> None:
        try:
            out.append(sflow_run.decode_run(self.acct, blob, offsets, lengths, sources, now_ms, self.if_counters))
        except Exception:  # a decoder bug must not stop the loop: counted and logged
            self._run_failed("sflow", sources, now_ms)

    def _v9_run(self, blob, offsets, lengths, datagrams, sources, now_ms: int, _out: list, _code) -> None:
        templated_run.decode_run(self._templated, self.acct, blob, offsets, lengths, 9, datagrams, sources, now_ms)

    def _ipfix_run(self, blob, offsets, lengths, datagrams, sources, now_ms: int, _out: list, _code) -> None:
        templated_run.decode_run(self._templated, self.acct, blob, offsets, lengths, 10, datagrams, sources, now_ms)

    def _unsupported_run(self, _blob, _offsets, _lengths, _datagrams, sources, now_ms: int, _out: list,
                         code: int) -> None:
        """Datagrams of no protocol we decode (or too short to say), counted on their source."""
        reason = "truncated_header" if code == TRUNCATED else "unsupported_version"
        for src in sources:
            self.acct.stats(self.acct.source(src)[0], 0, now_ms).error(reason)

    def _run_failed(self, what: str, sources, now_ms: int) -> None:
        log.exception(f"{what} decode failed", extra=fields(exporter=str(sources[0]), datagrams=len(sources)))
        for src in sources:
            try:
                self.acct.stats(str(src[0]), 0, now_ms).error("internal_error")
            except Exception:
                log.exception("could not count a decode failure")
