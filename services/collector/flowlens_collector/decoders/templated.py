"""NetFlow v9 and IPFIX: per-transport-session template state, options (sampling, boot time), records
held until their template arrives, and the grouping of data sets so each template's records of one
decode call go through a single ``frombuffer``.

Keys: a template is keyed by (exporter address, UDP source port, version, observation domain /
source id, template id), so two exporters or two line cards reusing an id never mix. A transport
session is the key without the template id.

Bounds (all counted per exporter when they bite, see flowlens_collector.decode.Decoder.exporter_stats):
templates of a session not refreshed within the template lifetime expire; at the per-exporter
template or field cap, the global field cap, or the cap on sessions holding templates (the
collector's max_exporters), the least recently refreshed session is evicted whole; held data sets are charged their length plus PENDING_SET_OVERHEAD (and a new queue
PENDING_QUEUE_OVERHEAD) against a per-exporter and a global byte budget, the oldest queue going first when the global one is full.
"""
from __future__ import annotations

import json
import struct
from collections import OrderedDict, deque

import numpy as np

from flowmodel.schema import FLOW_COLUMNS, HINT_CONST, FlowBatch

from . import biflow, ipfix, netflow9
from .fields import SAMPLER_ID_ROLES, SAMPLING_ROLES, rate_from
from .templates import Template, _uint
from .v5 import gather as _gather

_HH = struct.Struct(">HH")
MAX_SAMPLERS_PER_SESSION = 1024
MAX_SESSIONS = 65536
# what one held data set costs beyond its bytes (bytes object, tuple, ints, deque slot: 92 B per
# 1-byte set measured with tracemalloc): charged so floods of tiny sets are bounded too
PENDING_SET_OVERHEAD = 128
PENDING_QUEUE_OVERHEAD = 1024  # a new queue (deque, key tuple, dict slot): ~1 KB measured with tracemalloc
MAX_FIELDS_PER_TEMPLATE = 8192
MAX_REMEMBERED_TEMPLATE_SET = 2048  # bytes; larger template sets are always walked
MAX_EPOCH_MS = 1 << 42            # ~2109: a systemInitTimeMilliseconds beyond is garbage, not a boot time
MAX_SAMPLING_RATE = 0xFFFFFFFF
MAX_FIELDS_PER_EXPORTER = 131072  # bounds template memory however the fields are spread over ids
STATE_FORMAT = 2                  # templates file: 2 adds sessions' refresh times and IPFIX numbering
IPFIX_MODES = ("all", "inclusive", "inclusive_flows")
REFRESH_SAVE_MS = 60_000          # a session's refresh time is worth saving again once per minute


def _bump(counts: dict, reason: str, n: int = 1) -> None:
    counts[reason] = counts.get(reason, 0) + n


class Session:
    """What an exporter told us through options data: its boot time and its sampling rates."""

    __slots__ = ("init_ms", "rate", "samplers")

    def __init__(self):
        self.init_ms: int | None = None
        self.rate: int | None = None           # rate for flows without a sampler id
        self.samplers: dict[int, int] = {}     # sampler / selector id -> rate


class _Group:
    """Data sets of one template within one decode call: record bytes and (count, export ms, uptime ms)."""

    __slots__ = ("template", "stats_key", "bodies", "meta", "session_state")

    def __init__(self, template, stats_key):
        self.template = template
        self.stats_key = stats_key
        # (init_ms, rate, samplers) of the session when options data changed them after these
        # records arrived; None = the session's state at the end of the call applies
        self.session_state: tuple | None = None
        self.bodies: list = []
        # per body (count, export ms, uptime ms): ints, or arrays per datagram for a run
        self.meta: list[tuple] = []


class TemplatedDecoder:
    def __init__(self, owner, *, max_templates_per_exporter: int, pending_max_bytes: int,
                 pending_max_age_ms: int, pending_total_max_bytes: int = 4 << 20,
                 template_fields_total_max: int = 65536, template_lifetime_ms: int = 5_400_000,
                 max_sessions: int = MAX_SESSIONS):
        self._owner = owner  # the Decoder: stats(), sequence() and forget_sequence()
        self._seq_observe = owner.sequence
        self.max_templates = max_templates_per_exporter
        self.pending_max_bytes = pending_max_bytes
        self.pending_total_max_bytes = pending_total_max_bytes
        self.pending_max_age_ms = pending_max_age_ms
        self.template_fields_total_max = template_fields_total_max
        self.template_lifetime_ms = template_lifetime_ms
        self.max_sessions = max_sessions  # options state, IPFIX numbering, last template sets: past it they start again
        self.templates: dict[tuple, Template] = {}
        self._per_host: dict[str, int] = {}
        self._per_host_fields: dict[str, int] = {}
        self._total_fields = 0
        # session -> template ids it holds; session -> last template (re)definition, oldest first
        self._session_tids: dict[tuple, set] = {}
        self._refreshed: OrderedDict[tuple, int] = OrderedDict()
        self._sampling_sessions: set = set()  # sessions with an options template announcing sampling
        self._fragments: dict[tuple, str] = {}  # template key -> its JSON entry in the templates file
        self.generation = 0  # bumped whenever the persisted state changes
        self.sessions: dict[tuple, Session] = {}
        self.pending: dict[tuple, deque] = {}        # template key -> (body, export_ms, uptime, received_ms)
        self._pending_bytes: dict[str, int] = {}     # per exporter, charged (length + overhead)
        self._pending_total = 0
        # session -> [mode, confirmed, previous sequence or None, its records, its flow records]
        self._ipfix_mode: dict[tuple, list] = {}
        self._option_records = 0  # options data records in the message being walked
        self._held = 0            # data sets held in the message being walked
        self._groups: dict[tuple, _Group] = {}
        # session -> the bytes (set header included) of the last template set walked for it, when
        # every record in it defined a template successfully: the same bytes again change nothing
        self._template_sets: dict[tuple, bytes] = {}
        self._define_failures = 0
        self._now = 0
        self.state_rejected = 0

    # -- per call -----------------------------------------------------------------------------

    def begin(self, now_ms: int) -> None:
        self._now = now_ms
        self._groups = {}

    def v9(self, buf, source, now_ms, _parts) -> None:
        host, port = source[0], source[1]
        if len(buf) < netflow9.HEADER_LEN:
            self._owner.stats(host, 0, now_ms).error("truncated_header")
            return
        _v, _count, uptime, secs, seq, domain = netflow9.HEADER.unpack_from(buf, 0)
        st = self._owner.stats(host, domain, now_ms)
        st.version = 9
        st.packets += 1
        session = (host, port, 9, domain)
        self._seq_observe(session, seq, 1, st)
        self._walk(buf, netflow9.HEADER_LEN, len(buf), session, st, secs * 1000, uptime)

    def ipfix(self, buf, source, now_ms, _parts) -> None:
        host, port = source[0], source[1]
        if len(buf) < ipfix.HEADER_LEN:
            self._owner.stats(host, 0, now_ms).error("truncated_header")
            return
        _v, length, export_s, seq, domain = ipfix.HEADER.unpack_from(buf, 0)
        st = self._owner.stats(host, domain, now_ms)
        st.version = 10
        if length < ipfix.HEADER_LEN or length > len(buf):
            st.error("length_past_end" if length > len(buf) else "bad_message_length")
            return
        st.packets += 1
        session = (host, port, 10, domain)
        self._option_records = 0
        self._held = 0
        records = self._walk(buf, ipfix.HEADER_LEN, length, session, st, export_s * 1000, -1)
        if self._held:
            # records of held sets are unknown until their template comes: this message says
            # nothing about gaps, and the next one starts the count afresh
            self._sequence_unknown(session)
        else:
            self._ipfix_sequence(session, seq, records, records - self._option_records, st)

    def single_set_run(self, blob, offsets, lengths, head, data_off, set_id, source, now_ms) -> bool:
        """Datagrams of one source, version, domain and data set id, each one header and one data
        set starting at ``data_off`` (after a template set when data_off is past the header; see
        flowlens_collector.decode.single_set_segments; ``head`` their RUN_HEAD rows).

        When the set's template is known, fixed-length and not an options template, every leading
        template set is byte for byte the one last processed for this session (so walking it again
        would change nothing), and for IPFIX the session's sequence numbering is known, their
        records join the template's group as one gathered block, with counters and sequence numbers
        from arrays. False, having done nothing, otherwise: the caller then walks the datagrams.
        """
        host, port = source[0], source[1]
        version = int(head["version"][0])
        ipfix_msg = version == 10
        domain = int(head["w3"][0] if ipfix_msg else head["w4"][0])
        session = (host, port, version, domain)
        key = session + (set_id,)
        t = self.templates.get(key)
        if t is None or not t.record_len or t.options or t.variable:
            return False
        mode = None
        if ipfix_msg:
            info = self._ipfix_mode.get(session)
            if info is None or info[2] is None:
                return False
        hlen = ipfix.HEADER_LEN if ipfix_msg else netflow9.HEADER_LEN
        with_templates = data_off != hlen
        if with_templates.any():
            known = self._template_sets.get(session)
            if known is None or not (data_off[with_templates] == hlen + len(known)).all():
                return False
            sets = _gather(blob, offsets[with_templates] + hlen, len(known))
            if not (sets == np.frombuffer(known, dtype=np.uint8)).all():
                return False
        rl = t.record_len
        m = len(offsets)
        counts = (lengths - data_off - 4) // rl
        total = int(counts.sum())
        if ipfix_msg:
            mode = self._run_mode(session, info, head["w2"].astype(np.int64), counts)
            if mode is None:
                return False
        if with_templates.any():
            self._touch(session)
        st = self._owner.stats(host, domain, now_ms)
        st.version = version
        st.packets += m
        st.flows += total
        if ipfix_msg:
            seqs = head["w2"].astype(np.int64)
            if mode != "all":  # inclusive numbering: the number after this message's records
                seqs = (seqs - counts) & 0xFFFFFFFF
            self._owner.sequence_many(session, seqs, counts, st)
            export_ms = head["w1"].astype(np.int64) * 1000
            uptime = None
        else:
            self._owner.sequence_many(session, head["w3"], np.ones(m, dtype=np.int64), st)
            export_ms = head["w2"].astype(np.int64) * 1000
            uptime = head["w1"].astype(np.int64)
        if total == 0:
            return True
        first = int(offsets[0]) + int(data_off[0]) + 4
        stride = int(offsets[1] - offsets[0]) if m > 1 else 0
        if (counts == counts[0]).all() and (data_off == data_off[0]).all() and \
                (m < 3 or (offsets[2:] - offsets[1:-1] == stride).all()):
            body = np.ndarray((m, int(counts[0]) * rl), dtype=np.uint8, buffer=blob, offset=first,
                              strides=(stride, 1)).copy()
        else:
            base = np.cumsum(counts) - counts
            starts = np.repeat(offsets + data_off + 4 - base * rl, counts) + np.arange(0, total * rl, rl, dtype=np.int64)
            body = _gather(blob, starts, rl)
        g = self._groups.get(key)
        if g is None or g.template is not t:
            g = self._new_group(key, t)
        g.bodies.append(body)
        g.meta.append((counts, export_ms, uptime if uptime is not None else -1))
        return True

    def finish(self) -> list[FlowBatch]:
        out = []
        groups, self._groups = self._groups, {}
        for key, g in groups.items():
            try:
                out.append(self._materialise(key, g))
            except Exception:  # counted; one bad group must not cost the others
                import logging
                logging.getLogger(__name__).exception("template group failed")
                self._owner.stats(*g.stats_key, self._now).error("internal_error")
        return out

    # -- set walking --------------------------------------------------------------------------

    def _walk(self, buf, pos: int, end: int, session: tuple, st, export_ms: int, uptime: int) -> int:
        """Walk the sets of one message by their lengths (the v9 Count is only a hint). Returns data records.

        ``uptime`` is the v9 header sysUptime, -1 for IPFIX. Data sets of a known fixed-length template
        take the inlined fast path: their whole records are appended to the template's group.
        """
        version = session[2]
        tset, oset = (0, 1) if version == 9 else (2, 3)
        records = 0
        templates = self.templates
        groups = self._groups
        unpack = _HH.unpack_from
        while pos + 4 <= end:
            set_id, length = unpack(buf, pos)
            if length < 4:
                if set_id == 0 and length == 0 and not any(buf[pos:end]):
                    break  # trailing zero padding
                st.error("bad_set_length")
                break
            nxt = pos + length
            if nxt > end:
                st.error("set_past_end")
                break
            if set_id >= 256:
                key = session + (set_id,)
                t = templates.get(key)
                if t is not None and t.record_len and not t.options:
                    rl = t.record_len
                    n = (length - 4) // rl
                    if n:
                        g = groups.get(key)
                        if g is None or g.template is not t:
                            g = self._new_group(key, t)
                        g.bodies.append(buf[pos + 4:pos + 4 + n * rl])
                        g.meta.append((n, export_ms, uptime))
                        st.flows += n
                        records += n
                else:
                    records += self._data_set(key, buf[pos + 4:nxt], st, export_ms, uptime)
            elif set_id == tset or set_id == oset:
                body = buf[pos + 4:nxt]
                if version == 9:
                    events = (netflow9.parse_templates(body) if set_id == tset
                              else netflow9.parse_options_templates(body))
                else:
                    events = ipfix.parse_templates(body, options=(set_id == oset))
                failures = self._define_failures
                self._template_events(events, session, st, options=(set_id == oset))
                if set_id == tset and events and length <= MAX_REMEMBERED_TEMPLATE_SET and \
                        self._define_failures == failures and all(ev[0] == "define" for ev in events):
                    if len(self._template_sets) >= self.max_sessions:
                        self._template_sets.clear()
                    self._template_sets[session] = bytes(buf[pos:nxt])
                else:
                    self._template_sets.pop(session, None)
            else:
                st.error("reserved_set_id")
            pos = nxt
        return records

    def _new_group(self, key, t) -> _Group:
        old = self._groups.get(key)
        if old is not None:  # template redefined within this call: keep the old records apart
            self._groups[key + ("old", id(old))] = old
        g = self._groups[key] = _Group(t, (key[0], key[3]))
        return g

    def _template_events(self, events, session, st, options: bool) -> None:
        host = session[0]
        for ev in events:
            kind = ev[0]
            if kind == "error":
                st.error(ev[1])
            elif kind == "define":
                self.define(session, ev[1], st)
            elif kind == "withdraw":
                self._drop(session + (ev[1],))
            elif kind == "withdraw_all":
                for key in [k for k, t in self.templates.items() if k[:4] == session and t.options == options]:
                    self._drop(key)
        del host

    def define(self, session: tuple, template, st, refreshed_ms: int | None = None) -> bool:
        """Install a template (a Template, or a parser spec compiled here unless it is a refresh).

        At a cap the least recently refreshed other session (of this exporter, or of any for the
        global field cap) is evicted whole and counted; only when none is left is the template refused."""
        when = self._now if refreshed_ms is None else refreshed_ms
        if isinstance(template, tuple):
            version, tid, fields, options, scope_count = template
            old = self.templates.get(session + (tid,))
            if (old is not None and old.fields == fields and old.options == options
                    and old.scope_count == scope_count):
                self._touch(session, when)
                return True  # refresh of what we hold: nothing to compile, nothing pending
            template = Template(version, tid, fields, options=options, scope_count=scope_count)
        key = session + (template.template_id,)
        if template.record_len == 0:
            st.error("zero_length_template")
            self._define_failures += 1
            return False
        if len(template.fields) > MAX_FIELDS_PER_TEMPLATE:
            st.error("too_many_fields")
            self._define_failures += 1
            return False
        old = self.templates.get(key)
        host = session[0]
        added = len(template.fields) - (len(old.fields) if old is not None else 0)
        if not self._make_room(session, old is None, added):
            st.error("template_cap")
            self._define_failures += 1
            return False
        if old is None:
            self._per_host[host] = self._per_host.get(host, 0) + 1
            self._session_tids.setdefault(session, set()).add(template.template_id)
        elif old.same_as(template):
            template = old  # a refresh: keep the compiled one
        if template is not old:
            self._template_sets.pop(session, None)  # the session's templates changed
            self._fragments[key] = json.dumps(
                {"exporter": key[0], "port": key[1], "version": key[2], "domain": key[3], "template_id": key[4],
                 "options": template.options, "scope_count": template.scope_count,
                 "fields": template.key_fields()}, separators=(",", ":"))
            self.generation += 1
            if _announces_sampling(template):
                self._sampling_sessions.add(session)
        self._per_host_fields[host] = self._per_host_fields.get(host, 0) + added
        self._total_fields += added
        self.templates[key] = template
        self._touch(session, when)
        held = self.pending.pop(key, None)
        if held:
            self._release_pending_bytes(session[0], PENDING_QUEUE_OVERHEAD)
            for body, export_ms, uptime, _received in held:
                self._release_pending_bytes(session[0], len(body) + PENDING_SET_OVERHEAD)
                self._data_set(key, body, st, export_ms, uptime)
        return True

    def _touch(self, session: tuple, when: int | None = None) -> None:
        """A template of ``session`` was (re)defined: it is the most recently refreshed one now."""
        refreshed = self._refreshed
        if when is None:
            when = self._now
        before = refreshed.get(session)
        refreshed[session] = when
        refreshed.move_to_end(session)
        if before is None or before // REFRESH_SAVE_MS != when // REFRESH_SAVE_MS:
            self.generation += 1  # the saved refresh time is at most this much behind

    def _make_room(self, session: tuple, new_template: bool, added: int) -> bool:
        host = session[0]
        while True:
            over_host = (new_template and self._per_host.get(host, 0) >= self.max_templates) or \
                self._per_host_fields.get(host, 0) + added > MAX_FIELDS_PER_EXPORTER
            over_all = self._total_fields + added > self.template_fields_total_max or \
                (session not in self._session_tids and len(self._session_tids) >= self.max_sessions)
            if not (over_host or over_all):
                return True
            if over_host:
                victim = next((s for s in self._refreshed if s[0] == host and s != session), None)
                reason = "exporter_cap"
            else:
                victim = next((s for s in self._refreshed if s != session), None)
                reason = "global_fields" if self._total_fields + added > self.template_fields_total_max else "session_cap"
            if victim is None:
                return False
            self.evict_session(victim, reason)

    def evict_session(self, session: tuple, reason: str) -> None:
        """Forget everything of one transport session: templates, options state, held data,
        sequence numbering. Templates and held data sets are counted on its exporter by reason."""
        tids = self._session_tids.pop(session, ())
        st = self._owner.stats(session[0], session[3], self._now, seen=False)
        for tid in list(tids):
            self._drop(session + (tid,))
        if tids:
            _bump(st.templates_dropped, reason, len(tids))
        self._refreshed.pop(session, None)
        self.sessions.pop(session, None)
        self._sampling_sessions.discard(session)
        self._ipfix_mode.pop(session, None)
        self._template_sets.pop(session, None)
        self._owner.forget_sequence(session)
        for key in [k for k in self.pending if k[:4] == session]:
            self._drop_queue(key, "session_evicted")
        self.generation += 1

    def _drop(self, key: tuple) -> None:
        self._template_sets.pop(key[:4], None)
        t = self.templates.pop(key, None)
        if t is not None:
            host, session = key[0], key[:4]
            self._per_host[host] = max(0, self._per_host.get(host, 1) - 1)
            self._per_host_fields[host] = max(0, self._per_host_fields.get(host, 0) - len(t.fields))
            self._total_fields = max(0, self._total_fields - len(t.fields))
            self._fragments.pop(key, None)
            tids = self._session_tids.get(session)
            if tids is not None:
                tids.discard(key[4])
                if not tids:
                    del self._session_tids[session]
                    self._refreshed.pop(session, None)
            if session in self._sampling_sessions and not any(
                    _announces_sampling(self.templates.get(session + (tid,)))
                    for tid in self._session_tids.get(session, ())):
                self._sampling_sessions.discard(session)  # its last sampling options template is gone
            self.generation += 1

    def _data_set(self, key: tuple, body, st, export_ms: int, uptime) -> int:
        t = self.templates.get(key)
        if t is None:
            self._hold(key, body, st, export_ms, uptime)
            return 0
        if t.options:
            n = self._options_data(key, t, body, st)
            self._option_records += n
            return n
        if t.variable:
            raw, n, truncated = t.project(body)
            if truncated:
                st.error("truncated_record")
        else:
            n = len(body) // t.record_len
            raw = body[:n * t.record_len]
        if n == 0:
            return 0
        g = self._groups.get(key)
        if g is None or g.template is not t:
            g = self._new_group(key, t)
        g.bodies.append(raw)
        g.meta.append((n, export_ms, uptime))
        st.flows += n
        return n

    def _options_data(self, key, t: Template, body, st) -> int:
        if t.variable:
            raw, n, _trunc = t.project(body)
        else:
            n = len(body) // t.record_len
            raw = body[:n * t.record_len]
        if n == 0:
            return 0
        rec = np.frombuffer(bytes(raw), dtype=t.dtype, count=n)
        session = self._session(key[:4])
        before = (session.init_ms, session.rate, dict(session.samplers))
        cols = {role: _uint(rec[role]).tolist() for role in t.roles
                if role in SAMPLING_ROLES or role in SAMPLER_ID_ROLES or role == "system_init_ms"}
        for i in range(n):
            values = {role: v[i] for role, v in cols.items()}
            if "system_init_ms" in values:
                if 0 <= values["system_init_ms"] <= MAX_EPOCH_MS:
                    session.init_ms = int(values["system_init_ms"])
                else:
                    st.error("bad_system_init_time")
            rate = rate_from(values)
            if rate is None:
                continue
            if rate > MAX_SAMPLING_RATE:  # the sampling_rate column is 32-bit; no real sampler is 1 in 4 billion
                st.error("bad_sampling_rate")
                continue
            sid = values.get("sampler_id", values.get("selector_id"))
            if sid is None:
                session.rate = int(rate)
            elif sid in session.samplers or len(session.samplers) < MAX_SAMPLERS_PER_SESSION:
                session.samplers[int(sid)] = int(rate)
            else:
                st.error("sampler_cap")
        if (session.init_ms, session.rate, session.samplers) != before:
            self._detach_groups(key[:4], before)
        return n

    def _detach_groups(self, skey: tuple, state: tuple) -> None:
        """Options data just changed a session's boot time or rates: the records of this call that
        arrived before it keep the state they arrived under (as decoding one datagram per call
        would), and later records start new groups."""
        for k in [k for k, g in self._groups.items() if k[:4] == skey and g.session_state is None]:
            g = self._groups.pop(k)
            g.session_state = state
            self._groups[k + ("before_options", id(g))] = g

    def _session(self, skey: tuple) -> Session:
        s = self.sessions.get(skey)
        if s is None:
            if len(self.sessions) >= self.max_sessions:
                self.sessions.clear()
            s = self.sessions[skey] = Session()
        return s

    # -- records waiting for their template ---------------------------------------------------

    def _hold(self, key, body, st, export_ms, uptime) -> None:
        size = len(body)
        if not size:
            return  # a data set with no records waits for nothing
        self._held += 1
        host = key[0]
        charge = size + PENDING_SET_OVERHEAD + (0 if key in self.pending else PENDING_QUEUE_OVERHEAD)
        if self._pending_bytes.get(host, 0) + charge > self.pending_max_bytes:
            _bump(st.pending_dropped, "exporter_bound")
            return
        if charge > self.pending_total_max_bytes:  # would not fit even alone: drop nobody else for it
            _bump(st.pending_dropped, "global_bound")
            return
        while self._pending_total + charge > self.pending_total_max_bytes and self.pending:
            self._drop_queue(next(iter(self.pending)), "global_bound")  # the oldest queue goes first
        if self._pending_total + charge > self.pending_total_max_bytes:
            _bump(st.pending_dropped, "global_bound")
            return
        q = self.pending.get(key)
        if q is None:
            q = self.pending[key] = deque()
        q.append((bytes(body), export_ms, uptime, self._now))
        self._pending_bytes[host] = self._pending_bytes.get(host, 0) + charge
        self._pending_total += charge

    def _release_pending_bytes(self, host, charged) -> None:
        self._pending_total = max(0, self._pending_total - charged)
        left = self._pending_bytes.get(host, 0) - charged
        if left > 0:
            self._pending_bytes[host] = left
        else:
            self._pending_bytes.pop(host, None)

    def _drop_queue(self, key, reason: str) -> None:
        q = self.pending.pop(key, None)
        if not q:
            return
        self._release_pending_bytes(key[0], sum(len(e[0]) for e in q) + PENDING_SET_OVERHEAD * len(q)
                                    + PENDING_QUEUE_OVERHEAD)
        _bump(self._owner.stats(key[0], key[3], self._now, seen=False).pending_dropped, reason, len(q))

    def expire(self, now_ms: int) -> None:
        """Held data sets older than the pending age, and templates of sessions not refreshed
        within the template lifetime (RFC 7011 s8.4), counted on their exporter."""
        self._now = now_ms
        cutoff = now_ms - self.pending_max_age_ms
        for key in list(self.pending):
            q = self.pending[key]
            dropped = 0
            while q and q[0][3] <= cutoff:
                body = q.popleft()[0]
                self._release_pending_bytes(key[0], len(body) + PENDING_SET_OVERHEAD)
                dropped += 1
            if dropped:
                self._owner.stats(key[0], key[3], now_ms, seen=False).pending_expired += dropped
            if not q:
                del self.pending[key]
                self._release_pending_bytes(key[0], PENDING_QUEUE_OVERHEAD)
        if self.template_lifetime_ms > 0:
            stale = now_ms - self.template_lifetime_ms
            refreshed = self._refreshed
            while refreshed:
                session, when = next(iter(refreshed.items()))
                if when > stale:
                    break
                self.evict_session(session, "lifetime")


    # -- groups -> columns --------------------------------------------------------------------

    def _materialise(self, key, g: _Group) -> FlowBatch:
        t = g.template
        raw = g.bodies[0] if len(g.bodies) == 1 else b"".join(g.bodies)
        if isinstance(raw, memoryview):
            raw = raw.tobytes()  # a view of the collector's receive slots: the columns must not alias it
        # per body (count, export ms, uptime): ints from walked datagrams, arrays from runs
        cl: list = []
        el: list = []
        ul: list = []
        for c, e, u in g.meta:
            if type(c) is int:
                cl.append(c)
                el.append(e)
                ul.append(u)
            else:
                cl.extend(c.tolist())
                el.extend(e.tolist())
                ul.extend(u.tolist() if type(u) is not int else [u] * len(c))
        counts = np.array(cl, dtype=np.int64)
        n = int(counts.sum())
        spread = int(counts[0]) if (counts == counts[0]).all() else counts
        export_ms = np.repeat(np.array(el, dtype=np.int64), spread)
        uptime = np.repeat(np.array(ul, dtype=np.int64), spread) if t.version == 9 else None
        rec = np.frombuffer(raw, dtype=t.dtype, count=n)
        st = self._owner.stats(*g.stats_key, self._now)
        keep = t.account(rec, st)  # enterprise fields and NSEL events counted; NSEL creates dropped
        if keep is not None:
            rec, export_ms = rec[keep], export_ms[keep]
            uptime = uptime[keep] if uptime is not None else None
            n = len(rec)
        session = self.sessions.get(key[:4])
        if g.session_state is not None:
            session = Session()
            session.init_ms, session.rate, session.samplers = g.session_state
        init_ms = session.init_ms if session is not None else None
        cols, sampler, rates, unknown_base = t.to_columns(rec, export_ms, uptime, init_ms)
        if unknown_base:  # decoded, with times anchored at the export time: not a decode error
            st.time_unknown += unknown_base
        if session is not None and session.rate is not None:
            default = session.rate
        else:  # a session that announced sampling options but sent no rate yet: rate unknown (0)
            default = 0 if key[:4] in self._sampling_sessions else 1
        if rates is not None:
            sampling = rates
        elif sampler is not None:
            sampling = np.full(n, default, dtype=np.uint32)
            samplers = session.samplers if session is not None else {}
            ids, inverse = np.unique(sampler, return_inverse=True)
            lut = np.array([samplers.get(int(i), default if i == 0 else 0) for i in ids], dtype=np.uint32)
            sampling = lut[inverse.reshape(-1)]
            unknown = int(np.count_nonzero(sampling == 0))
            if unknown:
                st.sampling_unknown += unknown
        else:
            sampling = np.full(n, default, dtype=np.uint32)
            if not default:
                st.sampling_unknown += n
        cols["sampling_rate"] = sampling
        cols["exporter"] = np.full(n, self._owner.exporter_addr(key[0]))
        cols["observation_domain"] = np.full(n, key[3], dtype=np.uint32)
        cols["flow_version"] = np.full(n, t.version, dtype=np.uint8)
        hints = dict(t.hints)  # the template's IPv4-only address columns
        hints.update(exporter=HINT_CONST, observation_domain=HINT_CONST, flow_version=HINT_CONST)
        hints.update((name, HINT_CONST) for name in FLOW_COLUMNS if name not in cols)  # FlowBatch fills one default
        if rates is None and sampler is None:
            hints["sampling_rate"] = HINT_CONST
        batch = FlowBatch(cols, n, hints=hints)
        if t.biflow:  # RFC 5103: the reverse direction is a flow of its own
            batch = biflow.split(t, rec, batch, export_ms, uptime, init_ms)
            st.reverse_flows += batch.count - n
        return batch

    # -- sequence numbers ---------------------------------------------------------------------

    # IPFIX counts all data records before this message (RFC 7011). softflowd counts them including
    # this message and leaves its options records out. Which numbering a stream uses is guessed from
    # its first message (seq == its own records: inclusive) and confirmed or corrected by the first
    # two consecutive messages whose steps fit one numbering only (record counts that differ, such as
    # a template refresh without data): a stream first seen mid-way (a collector restart) starts
    # from the guess "all" and is switched without counting a loss. A confirmed numbering is kept
    # with the templates. Modes: "all" (RFC), "inclusive" (seq includes the message's records),
    # "inclusive_flows" (its flow records, options records not counted).

    def _ipfix_sequence(self, session, seq, records, flow_records, st) -> None:
        info = self._ipfix_mode.get(session)
        if info is None:
            if len(self._ipfix_mode) >= self.max_sessions:
                self._ipfix_mode.clear()
            if records > 0 and seq == records:
                mode = "inclusive"
            elif flow_records > 0 and seq == flow_records:
                mode = "inclusive_flows"
            else:
                mode = "all"
            info = self._ipfix_mode[session] = [mode, False, None, 0, 0]
        elif info[2] is not None and (not info[1] or (info[0] != "all" and records != flow_records)):
            # unconfirmed, or an inclusive numbering meeting options records (which tell the two apart)
            pseq, prec = info[2], info[3]
            fits = [m for m, expected in (("all", pseq + prec), ("inclusive", pseq + records),
                                          ("inclusive_flows", pseq + flow_records))
                    if seq == expected & 0xFFFFFFFF]
            if fits and info[0] not in fits:
                self._switch_mode(session, info, fits[0], st)
                self.generation += 1
            if not info[1] and fits and (fits == ["all"] or "all" not in fits):
                info[1] = True  # RFC or inclusive numbering: only a loss or a reset can tell otherwise now
                self.generation += 1
        mode = info[0]
        if mode == "inclusive":
            self._seq_observe(session, (seq - records) & 0xFFFFFFFF, records, st)
        elif mode == "inclusive_flows":
            self._seq_observe(session, (seq - flow_records) & 0xFFFFFFFF, flow_records, st)
        else:
            self._seq_observe(session, seq, records, st)
        info[2], info[3], info[4] = seq, records, flow_records

    def _switch_mode(self, session, info, mode, st) -> None:
        """The guessed numbering did not fit: forget what the tracker expects and replay the
        previous message under the new numbering (a stream's first message counts nothing)."""
        info[0] = mode
        self._owner.forget_sequence(session)
        pseq, prec, pflow = info[2], info[3], info[4]
        if mode == "inclusive":
            self._seq_observe(session, (pseq - prec) & 0xFFFFFFFF, prec, st)
        elif mode == "inclusive_flows":
            self._seq_observe(session, (pseq - pflow) & 0xFFFFFFFF, pflow, st)
        else:
            self._seq_observe(session, pseq, prec, st)

    def _run_mode(self, session, info, seqs: np.ndarray, counts: np.ndarray) -> str:
        """The numbering for a run of single-data-set messages (records = flow records = counts),
        confirming or correcting an unconfirmed guess from the run's steps; remembers its last one."""
        if not info[1]:
            p_seq = np.concatenate(([info[2]], seqs[:-1]))
            p_rec = np.concatenate(([info[3]], counts[:-1]))
            fit_all = seqs == (p_seq + p_rec) & 0xFFFFFFFF
            fit_inc = seqs == (p_seq + counts) & 0xFFFFFFFF
            only_all, only_inc = bool((fit_all & ~fit_inc).any()), bool((fit_inc & ~fit_all).any())
            if only_all != only_inc:
                mode = "all" if only_all else (info[0] if info[0] != "all" else "inclusive")
                if mode != info[0]:
                    st = self._owner.stats(session[0], session[3], self._now)
                    self._switch_mode(session, info, mode, st)
                info[1] = True
                self.generation += 1
        info[2], info[3], info[4] = int(seqs[-1]), int(counts[-1]), int(counts[-1])
        return info[0]

    def ipfix_numbering(self, session) -> str | None:
        """The IPFIX sequence numbering used for ``session`` ("all", "inclusive", ...), None if none yet."""
        info = self._ipfix_mode.get(session)
        return info[0] if info else None

    def _sequence_unknown(self, session) -> None:
        self._owner.forget_sequence(session)
        info = self._ipfix_mode.get(session)
        if info is not None:
            info[2] = None

    # -- introspection and persistence --------------------------------------------------------

    def templates_by_stats_key(self) -> dict:
        out: dict = {}
        for k in self.templates:
            sk = (k[0], k[3])
            out[sk] = out.get(sk, 0) + 1
        return out

    def pending_by_stats_key(self) -> dict:
        """(exporter, domain) -> [data sets held, their bytes]."""
        out: dict = {}
        for k, q in self.pending.items():
            sk = (k[0], k[3])
            v = out.get(sk)
            if v is None:
                v = out[sk] = [0, 0]
            v[0] += len(q)
            v[1] += sum(len(e[0]) for e in q)
        return out

    def state_text(self) -> str:
        """The templates file as JSON text: each template's entry was serialised when it was
        defined, so this costs a join plus the (few) sessions, whatever the template count."""
        sessions = []
        keys = dict.fromkeys(self._refreshed)
        keys.update(dict.fromkeys(self.sessions))
        keys.update(dict.fromkeys(k for k, v in self._ipfix_mode.items() if v[1]))
        for k in keys:
            s = self.sessions.get(k)
            mode = self._ipfix_mode.get(k)
            sessions.append({"exporter": k[0], "port": k[1], "version": k[2], "domain": k[3],
                             "init_ms": s.init_ms if s else None, "rate": s.rate if s else None,
                             "samplers": [[i, r] for i, r in s.samplers.items()] if s else [],
                             "refreshed_ms": self._refreshed.get(k),
                             "ipfix_sequence": mode[0] if mode else None,
                             "ipfix_sequence_confirmed": bool(mode and mode[1])})
        return ('{"format":%d,"templates":[%s],"sessions":%s}'
                % (STATE_FORMAT, ",".join(self._fragments.values()), json.dumps(sessions, separators=(",", ":"))))

    def state(self) -> dict:
        return json.loads(self.state_text())

    def load_state(self, state, now_ms: int) -> int:
        """Templates and sessions from a templates file (format 1 or 2). Each session keeps its
        last refresh time (format 1: now), so templates expire across restarts as they would have."""
        self._now = now_ms
        loaded = 0
        if not isinstance(state, dict):
            self.state_rejected += 1
            return 0
        refreshed: dict = {}
        for e in state.get("sessions", []) or []:
            try:
                key = (str(e["exporter"]), int(e["port"]), int(e["version"]), int(e["domain"]))
                init_ms = None if e.get("init_ms") is None else int(e["init_ms"])
                rate = None if e.get("rate") is None else int(e["rate"])
                samplers = {int(i): int(r) for i, r in (e.get("samplers") or [])[:MAX_SAMPLERS_PER_SESSION]}
                if (init_ms is not None and not 0 <= init_ms <= MAX_EPOCH_MS) or \
                        any(not 0 < r <= MAX_SAMPLING_RATE for r in [*samplers.values(), *([rate] if rate else [])]):
                    raise ValueError("session values out of range")
                mode = e.get("ipfix_sequence")
                if mode is not None and (mode not in IPFIX_MODES or key[2] != 10):
                    raise ValueError("ipfix sequence mode")
                if e.get("refreshed_ms") is not None:
                    refreshed[key] = min(max(0, int(e["refreshed_ms"])), now_ms)
                if init_ms is not None or rate is not None or samplers:
                    s = self._session(key)
                    s.init_ms, s.rate = init_ms, rate
                    s.samplers.update(samplers)
                if mode is not None:
                    self._ipfix_mode[key] = [mode, bool(e.get("ipfix_sequence_confirmed")), None, 0, 0]
            except Exception:
                self.state_rejected += 1
        entries = []
        for e in state.get("templates", []) or []:
            try:
                session = (str(e["exporter"]), int(e["port"]), int(e["version"]), int(e["domain"]))
                entries.append((refreshed.get(session, now_ms), session, e))
            except Exception:
                self.state_rejected += 1
        entries.sort(key=lambda x: x[0])  # least recently refreshed first: the eviction order
        for when, session, e in entries:
            try:
                if session[2] not in (9, 10):
                    raise ValueError("version")
                fields = [(int(a), int(b), int(c)) for a, b, c in e["fields"]]
                if not fields or len(fields) > 16384 or any(not (0 <= x < 2**32) for f in fields for x in f):
                    raise ValueError("fields")
                tid = int(e["template_id"])
                if not 256 <= tid <= 65535:
                    raise ValueError("template id")
                t = Template(session[2], tid, fields, options=bool(e.get("options")),
                             scope_count=int(e.get("scope_count", 0)))
                st = self._owner.stats(session[0], session[3], now_ms, seen=False)
                if self.define(session, t, st, refreshed_ms=when):
                    loaded += 1
                else:
                    self.state_rejected += 1
            except Exception:
                self.state_rejected += 1
        return loaded


def _announces_sampling(template) -> bool:
    """An options template whose data will carry a sampling rate for its session."""
    return template is not None and template.options and any(role in SAMPLING_ROLES for role in template.roles)
