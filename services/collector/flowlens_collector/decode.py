"""Export datagrams -> FlowBatch: picks the decoder by the version field and keeps per-exporter state.

The collector service hands a group of datagrams (with their UDP sources) to ``Decoder.decode`` and
publishes the batch it returns. All protocol state (templates, sampling rates, records waiting for a
template, sequence numbers, counters) lives in the Decoder instance; the parsers in
``flowlens_collector.decoders`` are pure. Bad input is counted per exporter and reason, never raised.
"""
from __future__ import annotations

import logging

import numpy as np

from flowmodel import addr
from flowmodel.logs import RateLimitedLog, fields
from flowmodel.schema import ADDR, FlowBatch

from .decoders import v5
from .decoders.stats import ExporterStats, SequenceTracker
from .decoders.templated import TemplatedDecoder

log = logging.getLogger(__name__)

MAX_EXPORTER_STATS = 65536  # distinct (exporter, domain) pairs kept; beyond that, counted in one bucket


class Decoder:
    """Stateful decoder of NetFlow v5, v9 and IPFIX export datagrams into the flow schema."""

    def __init__(self, *, max_templates_per_exporter: int = 1024, pending_max_records: int = 65536,
                 pending_max_age_ms: int = 1_800_000):
        self._stats: dict[tuple[str, int], ExporterStats] = {}
        self._sources: dict[tuple, tuple[str, int, bytes]] = {}
        self._seq = SequenceTracker()
        self._templated = TemplatedDecoder(self, max_templates_per_exporter=max_templates_per_exporter,
                                           pending_max_records=pending_max_records,
                                           pending_max_age_ms=pending_max_age_ms)
        self._errlog = RateLimitedLog(log, 10.0)
        # version field -> handler; one place decides which decoder a datagram goes to
        self._versions = {5: self._v5, 9: self._templated.v9, 10: self._templated.ipfix}

    # -- public interface ------------------------------------------------------------------------

    def decode(self, datagrams, sources, now_ms: int) -> FlowBatch:
        v5_parts: list = []
        self._templated.begin(now_ms)
        known = self._sources
        versions = self._versions
        for buf, src in zip(datagrams, sources):
            try:
                source = known.get(src) or self._source(src)
                if len(buf) < 2:
                    self.stats(source[0], 0, now_ms).error("truncated_header")
                    continue
                version = (buf[0] << 8) | buf[1]
                handler = versions.get(version)
                if handler is None:
                    self.stats(source[0], 0, now_ms).error("unsupported_version")
                    continue
                handler(buf, source, now_ms, v5_parts)
            except Exception:  # a decoder bug must not stop the loop: counted and logged
                log.exception("decode failed", extra=fields(exporter=str(src)))
                try:
                    self.stats(str(src[0]), 0, now_ms).error("internal_error")
                except Exception:
                    pass
        batches = []
        if v5_parts:
            batches.append(self._v5_batch(v5_parts))
        batches.extend(self._templated.finish())
        return FlowBatch.concat(batches)

    def expire(self, now_ms: int) -> None:
        self._templated.expire(now_ms)

    def exporter_stats(self) -> list[dict]:
        pending = self._templated.pending_by_stats_key()
        templates = self._templated.templates_by_stats_key()
        out = []
        for key, s in self._stats.items():
            out.append({
                "exporter": s.exporter, "observation_domain": s.observation_domain, "version": s.version,
                "packets": s.packets, "flows": s.flows, "decode_errors": dict(s.decode_errors),
                "sequence_lost": s.sequence_lost, "sequence_backward": s.sequence_backward,
                "templates": templates.get(key, 0), "pending_records": pending.get(key, 0),
                "pending_expired": s.pending_expired, "sampling_unknown": s.sampling_unknown,
                "first_seen": s.first_seen, "last_seen": s.last_seen,
            })
        return out

    def templates_state(self) -> dict:
        return self._templated.state()

    def load_templates_state(self, state: dict) -> int:
        return self._templated.load_state(state)

    # -- shared helpers (used by the templated decoder too) ------------------------------------

    def stats(self, exporter: str, domain: int, now_ms: int) -> ExporterStats:
        key = (exporter, domain)
        s = self._stats.get(key)
        if s is None:
            if len(self._stats) >= MAX_EXPORTER_STATS:
                key = ("overflow", 0)
                s = self._stats.get(key)
                if s is None:
                    s = self._stats[key] = ExporterStats("overflow", 0, now_ms, self._errlog)
                s.last_seen = now_ms
                return s
            s = self._stats[key] = ExporterStats(exporter, domain, now_ms, self._errlog)
        s.last_seen = now_ms
        return s

    def sequence(self, stream: tuple, sequence: int, units: int, stats: ExporterStats) -> None:
        self._seq.observe(stream, sequence, units, stats)

    def _source(self, src) -> tuple[str, int, bytes]:
        """(host text, port, 16-byte address) of a recvfrom source, cached."""
        s = self._sources.get(src)
        if s is None:
            host = str(src[0]).split("%", 1)[0]
            try:
                raw = addr.to_bytes(host)
                host = addr.to_text(raw)
            except Exception:
                raw = bytes(16)
            if len(self._sources) >= MAX_EXPORTER_STATS:
                self._sources.clear()
            s = self._sources[src] = (host, int(src[1]) if len(src) > 1 else 0, raw)
        return s

    def _source_addr(self, host: str) -> bytes:
        """16-byte address of an exporter given as text (as kept in template keys)."""
        try:
            return addr.to_bytes(host)
        except Exception:
            return bytes(16)

    # -- NetFlow v5 ----------------------------------------------------------------------------

    def _v5(self, buf, source, now_ms: int, parts: list) -> None:
        host = source[0]
        size = len(buf)
        if size < v5.HEADER_LEN:
            self.stats(host, 0, now_ms).error("truncated_header")
            return
        _v, count, uptime, secs, nsecs, seq, etype, eid, sampling = v5.HEADER.unpack_from(buf, 0)
        domain = (etype << 8) | eid
        st = self._stats.get((host, domain)) or self.stats(host, domain, now_ms)
        st.last_seen = now_ms
        end = v5.HEADER_LEN + count * v5.RECORD_LEN
        if count == 0 or end > size:
            st.error("zero_count" if count == 0 else "truncated_records")
            return
        st.version = 5
        st.packets += 1
        st.flows += count
        self._seq.observe((host, source[1], 5, domain), seq, count, st)
        interval = sampling & 0x3FFF  # top two bits are the sampling mode
        parts.append((buf[v5.HEADER_LEN:end], count,
                      (uptime, secs * 1000 + nsecs // 1_000_000, interval or 1, domain), source[2]))

    def _v5_batch(self, parts: list) -> FlowBatch:
        raw = b"".join([p[0] for p in parts])
        counts = np.fromiter((p[1] for p in parts), dtype=np.int64, count=len(parts))
        headers = np.array([p[2] for p in parts], dtype=np.int64)
        cols = v5.decode_records(raw, counts, headers)
        exporters = np.frombuffer(b"".join([p[3] for p in parts]), dtype=ADDR)
        cols["exporter"] = np.repeat(exporters, counts) if len(parts) > 1 else np.repeat(exporters, counts[0])
        return FlowBatch(cols, len(cols["bytes"]))
