"""Export datagrams -> FlowBatch: picks the decoder by the version field and keeps per-exporter state.

NetFlow v5, v9, IPFIX and sFlow v5 (told apart by the first word: 00 00 00 05) may arrive in one
group, on any of the collector's ports.

The collector service hands a group of datagrams (with their UDP sources) to ``Decoder.decode`` and
publishes the batch it returns. All protocol state (templates, sampling rates, records waiting for a
template, sequence numbers, counters) lives in the Decoder instance; the parsers in
``flowlens_collector.decoders`` are pure. Bad input is counted per exporter and reason, never raised.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from flowmodel import addr
from flowmodel.logs import RateLimitedLog, fields
from flowmodel.schema import ADDR, FlowBatch

from . import flowtimes, sflow_run
from .decoders import v5
from .decoders.stats import ExporterStats, SequenceTracker
from .decoders.templated import TemplatedDecoder
from .exporters import ExporterTable

log = logging.getLogger(__name__)

# after the group's last datagram, so header/version reads never run off the end (and sFlow's
# decoder can read the group in place)
_PAD = bytes(max(v5.RECORD_LEN, sflow_run.sflow.PAD))
# Caches and sequence streams beside the exporter table are bounded at this many times
# max_exporters (a source may use several ports and versions): past it they start again empty.
# Transport sessions with templates (each template ~6 KB with its compiled dtype) are bounded at
# max_exporters: at the bound the least recently refreshed session goes (counted, session_cap).
STATE_PER_EXPORTER = 4
RUN_ATTEMPTS = 3  # tries of the array path per run of v9/IPFIX datagrams (see Decoder._templated_run)
_V5, _TEMPLATED, _SFLOW = 0, 1, 2  # kinds of datagram runs in a group


def _versions(blob: bytes, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The version field of each datagram; -1 when it is shorter than 2 bytes."""
    u8 = np.frombuffer(blob, dtype=np.uint8)
    versions = (u8[offsets].astype(np.int32) << 8) | u8[offsets + 1]
    versions[lengths < 2] = -1
    return versions


class Decoder:
    """Stateful decoder of NetFlow v5, v9, IPFIX and sFlow v5 export datagrams into the flow schema."""

    def __init__(self, *, max_templates_per_exporter: int = 1024, pending_max_bytes: int = 2 << 20,
                 pending_max_age_ms: int = 1_800_000, pending_total_max_bytes: int = 4 << 20,
                 template_fields_total_max: int = 65536, template_lifetime_ms: int = 5_400_000,
                 max_time_ahead_ms: int | None = None, max_exporters: int = 1000):
        # flows ending further than this after now_ms are dropped (flowtimes); None: now_ms is not a
        # wall clock (tests, benches drive it), keep every time
        self.max_time_ahead_ms = max_time_ahead_ms
        self._errlog = RateLimitedLog(log, 10.0)
        # (exporter, domain) rows, at most max_exporters, the rest folded into one overflow row; a
        # row silent for a template lifetime makes room when the table is full
        self.exporters = ExporterTable(max_exporters, template_lifetime_ms, self._errlog)
        self.state_max = STATE_PER_EXPORTER * self.exporters.max_exporters  # caches, sequence streams
        self._sources: dict[tuple, tuple[str, int, bytes]] = {}
        self._exporter_addrs: dict[str, np.void] = {}
        self._seq = SequenceTracker(self.state_max)
        self._seq_restored_ms: dict[tuple, int] = {}  # stream -> its last packet before a restart (load_sequence_state)
        self._templated = TemplatedDecoder(self, max_templates_per_exporter=max_templates_per_exporter,
                                           pending_max_bytes=pending_max_bytes,
                                           pending_max_age_ms=pending_max_age_ms,
                                           pending_total_max_bytes=pending_total_max_bytes,
                                           template_fields_total_max=template_fields_total_max,
                                           template_lifetime_ms=template_lifetime_ms,
                                           max_sessions=self.exporters.max_exporters)
        # version field -> handler; one place decides which decoder a datagram goes to
        # (v5 never reaches it: runs of v5 datagrams are decoded as arrays by _v5_run)
        self._versions = {9: self._templated.v9, 10: self._templated.ipfix}

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
        if not n:
            return self._drop_future(FlowBatch.concat(self._templated.finish()), now_ms)
        if layout is None:
            # one copy of the whole group; v5 headers and records are read from it with array indexing
            parts = list(datagrams)
            parts.append(_PAD)
            blob = b"".join(parts)
            lengths = np.fromiter(map(len, datagrams), dtype=np.int64, count=n)
            offsets = np.cumsum(lengths) - lengths
        else:
            blob, offsets, lengths = layout
        stride = v5.even_stride(offsets) if lengths[0] >= 2 and (lengths == lengths[0]).all() else None
        versions = np.ndarray((n,), dtype=">u2", buffer=blob, offset=int(offsets[0]),
                              strides=(stride,)).astype(np.int32) \
            if stride is not None else _versions(blob, offsets, lengths)
        is_v5 = versions == 5
        v5_batches: list[FlowBatch] = []  # and sFlow's
        if is_v5.all():
            self._v5_run(blob, offsets, lengths, sources, now_ms, v5_batches)
        else:
            # runs of v5 datagrams and runs of sFlow datagrams are decoded together as arrays;
            # v9/IPFIX (and what is none of these) by the templated decoder, in order
            kinds = np.where(is_v5, _V5, _TEMPLATED)
            zero = versions == 0
            if zero.any():
                kinds[zero & sflow_run.is_sflow(blob, offsets, lengths)] = _SFLOW
            flags = kinds.tolist()
            i = 0
            while i < n:
                kind = flags[i]
                j = i + 1
                while j < n and flags[j] == kind:
                    j += 1
                if kind == _V5:
                    self._v5_run(blob, offsets[i:j], lengths[i:j], sources[i:j], now_ms, v5_batches)
                elif kind == _SFLOW:
                    self._sflow_run(blob, offsets[i:j], lengths[i:j], sources[i:j], now_ms, v5_batches)
                else:
                    self._templated_run(blob, offsets[i:j], lengths[i:j], versions[i:j], datagrams[i:j],
                                        sources[i:j], now_ms)
                i = j
        return self._drop_future(FlowBatch.concat(v5_batches + self._templated.finish()), now_ms)

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

    def sequence_state(self) -> list[list]:
        """What each exporter's sequence numbering expects next, for a restart to count the gap:
        [exporter, port, version, domain, expected next, last seen ms, IPFIX numbering or None] per
        stream. The time is the last packet of its (exporter, domain), or the restored one for a
        stream not heard from since the restart."""
        out = []
        restored = self._seq_restored_ms
        for stream, expected in self._seq.expected().items():
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
            self._seq.restore(stream, expected)
            self._seq_restored_ms[stream] = last
            restored += 1
        return restored

    # -- shared helpers (used by the templated decoder too) ------------------------------------

    def stats(self, exporter: str, domain: int, now_ms: int, seen: bool = True) -> ExporterStats:
        """The counters of (exporter, domain); ``seen`` False for bookkeeping that is not a packet
        from it (expiry, eviction): last_seen stays the time of its last packet."""
        return self.exporters.get(exporter, domain, now_ms, seen)

    def sequence(self, stream: tuple, sequence: int, units: int, stats: ExporterStats) -> None:
        self._seq.observe(stream, sequence, units, stats)

    def sequence_many(self, stream: tuple, sequences: np.ndarray, units: np.ndarray, stats: ExporterStats) -> None:
        self._seq.observe_many(stream, sequences, units, stats)

    def forget_sequence(self, stream: tuple) -> None:
        self._seq.forget(stream)

    def source(self, src) -> tuple[str, int, bytes]:
        """(host text, port, 16-byte address) of a recvfrom source, cached."""
        return self._sources.get(src) or self._source(src)

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
            if len(self._sources) >= self.state_max:
                self._sources.clear()
            s = self._sources[src] = (host, int(src[1]) if len(src) > 1 else 0, raw)
        return s

    def exporter_addr(self, host: str):
        """The exporter column value (an ADDR scalar) of an exporter given as text, cached."""
        a = self._exporter_addrs.get(host)
        if a is None:
            if len(self._exporter_addrs) >= self.state_max:
                self._exporter_addrs.clear()
            a = self._exporter_addrs[host] = np.frombuffer(self._source_addr(host), dtype=ADDR)[0]
        return a

    def _source_addr(self, host: str) -> bytes:
        """16-byte address of an exporter given as text (as kept in template keys)."""
        try:
            return addr.to_bytes(host)
        except Exception:
            return bytes(16)

    # -- NetFlow v9 / IPFIX --------------------------------------------------------------------

    def _templated_run(self, blob, offsets, lengths, versions, datagrams, sources, now_ms: int) -> None:
        """Consecutive datagrams that are not v5. Under load most carry one data set of a known
        fixed-length template, alone or after a repeat of their template set: runs of those (same
        source, version, domain and set id) go to the templated decoder as arrays; every other
        datagram is walked on its own, in order."""
        m = len(offsets)
        if m < 4:  # not worth the array set-up
            for k in range(m):
                self._other(datagrams[k], sources[k], int(versions[k]), now_ms)
            return
        try:
            if sources.count(sources[0]) == m:
                sid = np.zeros(m, dtype=np.int64)
                srcs = [sources[0]]
            else:
                ids: dict = {}
                sid = np.fromiter((ids.setdefault(s, len(ids)) for s in sources), dtype=np.int64, count=m)
                srcs = list(ids)
            segments = single_set_segments(blob, offsets, lengths, versions, sid)
        except Exception:  # a decoder bug must not stop the loop: every datagram takes the walk instead
            log.exception("run classification failed", extra=fields(exporter=str(sources[0]), datagrams=m))
            segments = [(0, m, None)]
        for a, b, info in segments:
            if info is not None:
                src = srcs[int(sid[a])]
                source = self._sources.get(src) or self._source(src)
                head, data_off, set_ids = info
                # A run the templated decoder cannot take yet (its template, the template set it
                # repeats or its IPFIX numbering not seen) usually can once its first datagram has
                # been walked: a few retries, each after walking one more datagram.
                for attempt in range(RUN_ATTEMPTS):
                    if b - a < 2:
                        break
                    try:
                        if self._templated.single_set_run(blob, offsets[a:b], lengths[a:b], head[a:b],
                                                          data_off[a:b], int(set_ids[a]), source, now_ms):
                            a = b
                            break
                    except Exception:
                        log.exception("run decode failed", extra=fields(exporter=source[0], datagrams=b - a))
                        self.stats(source[0], 0, now_ms).error("internal_error", b - a)
                        a = b
                        break
                    if attempt < RUN_ATTEMPTS - 1:
                        self._other(datagrams[a], sources[a], int(versions[a]), now_ms)
                        a += 1
            for k in range(a, b):
                self._other(datagrams[k], sources[k], int(versions[k]), now_ms)

    def _other(self, buf, src, version: int, now_ms: int) -> None:
        """One datagram that is not NetFlow v5 (or too short to say)."""
        try:
            source = self._sources.get(src) or self._source(src)
            if version < 0:
                self.stats(source[0], 0, now_ms).error("truncated_header")
                return
            handler = self._versions.get(version)
            if handler is None:
                self.stats(source[0], 0, now_ms).error("unsupported_version")
                return
            handler(buf, source, now_ms, None)
        except Exception:  # a decoder bug must not stop the loop: counted and logged
            log.exception("decode failed", extra=fields(exporter=str(src)))
            try:
                self.stats(str(src[0]), 0, now_ms).error("internal_error")
            except Exception:
                pass

    # -- sFlow v5 -------------------------------------------------------------------------------

    def _sflow_run(self, blob, offsets, lengths, sources, now_ms: int, out: list) -> None:
        """Consecutive sFlow datagrams: decoded as arrays and booked by sflow_run."""
        try:
            out.append(sflow_run.decode_run(self, blob, offsets, lengths, sources, now_ms))
        except Exception:  # a decoder bug must not stop the loop: counted and logged
            log.exception("sflow decode failed", extra=fields(exporter=str(sources[0]), datagrams=len(sources)))
            for src in sources:
                try:
                    self.stats(str(src[0]), 0, now_ms).error("internal_error")
                except Exception:
                    pass

    # -- NetFlow v5 ----------------------------------------------------------------------------

    def _v5_run(self, blob, offsets, lengths, sources, now_ms: int, out: list) -> None:
        """Consecutive v5 datagrams (``blob[offsets[i]:offsets[i] + lengths[i]]`` from ``sources[i]``).

        Headers are parsed and checked as arrays; Python loops only over the distinct sources,
        (exporter, engine) pairs and bad datagrams of the run.
        """
        try:
            self._v5_arrays(blob, offsets, lengths, sources, now_ms, out)
        except Exception:  # a decoder bug must not stop the loop: counted and logged
            log.exception("v5 decode failed", extra=fields(exporter=str(sources[0]), datagrams=len(sources)))
            for src in sources:
                try:
                    self.stats(str(src[0]), 0, now_ms).error("internal_error")
                except Exception:
                    pass

    def _v5_arrays(self, blob, offsets, lengths, sources, now_ms: int, out: list) -> None:
        n = len(offsets)
        # distinct sources: (host, port, raw address) each; under load one exporter fills the group
        known = self._sources
        if sources.count(sources[0]) == n:
            one = known.get(sources[0]) or self._source(sources[0])
            resolved, sid, host_of, port_of = [one], None, None, None
            host_list, port_list = [one[0]], [one[:2]]
        else:
            ids: dict = {}
            sid = np.array([ids.setdefault(s, len(ids)) for s in sources], dtype=np.int64)
            resolved = [known.get(s) or self._source(s) for s in ids]
            hosts: dict[str, int] = {}
            ports: dict[tuple, int] = {}
            host_of = np.array([hosts.setdefault(r[0], len(hosts)) for r in resolved], dtype=np.int64)[sid]
            port_of = np.array([ports.setdefault(r[:2], len(ports)) for r in resolved], dtype=np.int64)[sid]
            host_list, port_list = list(hosts), list(ports)
        hdr, status = v5.parse_headers(blob, offsets, lengths)
        domain = (hdr["engine_type"].astype(np.int64) << 8) | hdr["engine_id"]
        # stats per (exporter host, domain), created in the order their first datagram arrived
        if host_of is None and (n == 1 or (domain == domain[0]).all()):
            keys, inverse = [int(domain[0])], np.zeros(n, dtype=np.int64)
        else:
            skey = domain if host_of is None else (host_of << 16) | domain
            keys, inverse, _ = _first_seen(skey)
        stats = [self.stats(host_list[k >> 16], k & 0xFFFF, now_ms) for k in keys]
        valid = status == v5.OK
        if not valid.all():
            for i in np.flatnonzero(~valid).tolist():
                stats[inverse[i]].error(v5.REASONS[status[i]])
            if not valid.any():
                return
            hdr, domain, inverse, offsets = hdr[valid], domain[valid], inverse[valid], offsets[valid]
            if sid is not None:
                sid, port_of = sid[valid], port_of[valid]
        counts = hdr["count"].astype(np.int64)
        total = int(counts.sum())
        if len(stats) == 1:
            st = stats[0]
            st.version = 5
            st.packets += len(counts)
            st.flows += total
        else:
            packets = np.bincount(inverse, minlength=len(stats)).tolist()
            flows = np.bincount(inverse, weights=counts, minlength=len(stats)).tolist()
            for st, p, f in zip(stats, packets, flows):
                if p:
                    st.version = 5
                    st.packets += p
                    st.flows += int(f)
        # sequence numbers per (exporter host, port, engine), from arrays
        seqs = hdr["sequence"]
        tkey = domain if port_of is None else (port_of << 16) | domain
        if len(tkey) == 1 or (tkey == tkey[0]).all():
            host, port = port_list[int(tkey[0]) >> 16]
            self._seq.observe_many((host, port, 5, int(domain[0])), seqs, counts, stats[inverse[0]])
        else:
            tkeys, tinv, first = _first_seen(tkey)
            for k, key in enumerate(tkeys):
                sel = tinv == k
                host, port = port_list[key >> 16]
                self._seq.observe_many((host, port, 5, key & 0xFFFF), seqs[sel], counts[sel],
                                       stats[inverse[first[k]]])
        # records: one strided copy when every datagram is full-length and alike, else one gather
        size = int(lengths[0])
        stride = v5.even_stride(offsets) if len(counts) == n and size == v5.HEADER_LEN + int(counts[0]) * v5.RECORD_LEN \
            and (lengths == size).all() and (counts == counts[0]).all() else None
        if stride is not None:
            raw = np.ndarray((n, size - v5.HEADER_LEN), dtype=np.uint8, buffer=blob,
                             offset=int(offsets[0]) + v5.HEADER_LEN, strides=(stride, 1)).copy()
        else:
            base = np.cumsum(counts) - counts
            starts = np.repeat(offsets + v5.HEADER_LEN - base * v5.RECORD_LEN, counts) + \
                np.arange(0, total * v5.RECORD_LEN, v5.RECORD_LEN, dtype=np.int64)
            raw = v5.gather(blob, starts, v5.RECORD_LEN)
        sampling = hdr["sampling"] & 0x3FFF  # top two bits are the sampling mode
        sampling = np.where(sampling == 0, 1, sampling)
        cols = v5.decode_columns(raw.view(v5.RECORD_DTYPE).reshape(total), counts, hdr["uptime"],
                                 hdr["secs"].astype(np.int64) * 1000 + hdr["nsecs"] // 1_000_000,
                                 sampling, domain)
        if sid is None:
            cols["exporter"] = np.full(total, np.frombuffer(resolved[0][2], dtype=ADDR)[0])
        else:
            addrs = np.frombuffer(b"".join([r[2] for r in resolved]), dtype=ADDR)
            cols["exporter"] = np.repeat(addrs[sid], counts)
        out.append(FlowBatch(cols, total, hints=v5.hints_for(sampling, domain, sid is None)))


RUN_HEAD = np.dtype([("version", ">u2"), ("count", ">u2"), ("w1", ">u4"), ("w2", ">u4"), ("w3", ">u4"),
                     ("w4", ">u4"), ("set_id", ">u2"), ("set_len", ">u2")])
RUN_HEAD_LEN = RUN_HEAD.itemsize  # 24: a v9 header and its first set header; an IPFIX one and 4 more bytes


def single_set_segments(blob, offsets: np.ndarray, lengths: np.ndarray, versions: np.ndarray, sid: np.ndarray):
    """Split consecutive v9/IPFIX datagrams into segments [a, b) for the array path.

    A datagram qualifies when it is one header and one data set (set id >= 256) running to its
    end (for IPFIX also to the message length), optionally after one template set: exporters
    such as nfreplay repeat their templates in every datagram, and the templated decoder lets
    such a datagram into the run only when that template set is byte for byte the one it last
    processed for the session. A segment is a run of qualifying datagrams with the same source,
    version, domain and data set id; its entry is (a, b, (headers, data_offsets, set_ids)) with
    ``headers`` a RUN_HEAD array of all datagrams (v9: w1 uptime, w2 secs, w3 sequence, w4 source
    id; IPFIX: ``count`` is the message length, w1 export time, w2 sequence, w3 domain) and
    ``data_offsets`` where each datagram's data set header starts; or (a, b, None) for datagrams
    that must be walked one by one.
    """
    m = len(offsets)
    head = v5.gather(blob, offsets, RUN_HEAD_LEN).view(RUN_HEAD).reshape(m)
    w4 = head["w4"]
    v0 = int(versions[0])
    uniform = (versions == v0).all()
    if uniform and v0 == 9:
        hlen, set1, len1, domain, tset = 20, head["set_id"].astype(np.int64), head["set_len"].astype(np.int64), w4, 0
        framed = lengths >= RUN_HEAD_LEN
    elif uniform and v0 == 10:
        # IPFIX: the first set header is bytes 16..19, which RUN_HEAD reads as w4
        hlen, set1, len1, domain, tset = 16, (w4 >> 16).astype(np.int64), (w4 & 0xFFFF).astype(np.int64), head["w3"], 2
        framed = (lengths >= 20) & (head["count"] == lengths)
    else:
        is9 = versions == 9
        hlen = np.where(is9, 20, 16)
        set1 = np.where(is9, head["set_id"], w4 >> 16).astype(np.int64)
        len1 = np.where(is9, head["set_len"], w4 & 0xFFFF).astype(np.int64)
        domain = np.where(is9, w4, head["w3"])
        tset = np.where(is9, 0, 2)
        framed = np.where(is9, lengths >= RUN_HEAD_LEN, (versions == 10) & (lengths >= 20) & (head["count"] == lengths))
    data_off = np.broadcast_to(np.asarray(hlen, dtype=np.int64), (m,))
    set_id, set_len = set1, len1
    refresh = (set1 == tset) & (len1 >= 8) & (hlen + len1 + 4 <= lengths)
    if refresh.any():
        second = v5.gather(blob, offsets + np.where(refresh, hlen + len1, 0), 4).view(">u2").reshape(m, 2)
        data_off = np.where(refresh, hlen + len1, hlen)
        set_id = np.where(refresh, second[:, 0], set1)
        set_len = np.where(refresh, second[:, 1], len1)
    ok = framed & (data_off + set_len == lengths) & (set_id >= 256)
    # a template set of another length than the previous one in front of the data: a new template,
    # so a new run (the templated decoder takes a run only if all its template sets are the same)
    with_set = np.flatnonzero(data_off != hlen)
    new_set = with_set[1:][data_off[with_set[1:]] != data_off[with_set[:-1]]] if len(with_set) > 1 else with_set[:0]
    if m > 1 and uniform and ok.all() and (sid == sid[0]).all() and (domain == domain[0]).all() \
            and (set_id == set_id[0]).all() and not len(new_set):
        return [(0, m, (head, data_off, set_id))]  # the usual case under load: one exporter, one template
    key = (sid << 48) ^ (versions.astype(np.int64) << 40) ^ (domain.astype(np.int64) << 8)
    same = (key[1:] == key[:-1]) & (set_id[1:] == set_id[:-1])
    change = np.flatnonzero((ok[1:] != ok[:-1]) | (ok[1:] & ~same)) + 1
    if len(new_set):
        change = np.union1d(change, new_set)
    bounds = [0, *change.tolist(), m]
    okl = ok.tolist()
    info = (head, data_off, set_id)
    return [(a, b, info if okl[a] else None) for a, b in zip(bounds[:-1], bounds[1:])]


def _first_seen(keys: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Distinct values of ``keys`` in order of first appearance, each element's index among them,
    and where each distinct value first appears."""
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return uniq[order].tolist(), rank[inverse.reshape(-1)], first[order]
