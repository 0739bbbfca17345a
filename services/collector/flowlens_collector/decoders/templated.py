"""NetFlow v9 and IPFIX: datagrams framed into sets, templates defined, data sets grouped per template
so each template's records of one decode call go through a single ``frombuffer`` (producer.py).

The state lives in parts, each its own module: the template store (template_store.py), the data
sets waiting for their template (pending.py), the IPFIX sequence numbering (numbering.py), and per
session what options data said (producer.Session: boot time, sampling rates). Counters go to the
collector's Accounting (``acct``), passed in. Keys: a template is keyed by (exporter address, UDP
source port, version, observation domain / source id, template id); a transport session is the key
without the template id. Runs of alike datagrams take the array path (set_runs.py); options
data records are read by options_data.py.

Bounds (all counted per exporter when they bite): templates of a session not refreshed within the
template lifetime expire; at a template store cap or at the cap on sessions holding templates (the
collector's max_exporters), the least recently refreshed session is evicted whole; held data sets
are bounded in bytes per exporter and in all (pending.py).
"""
from __future__ import annotations

import json
import logging
import struct

from flowmodel.schema import FlowBatch

from . import ifnames, ipfix, netflow9, options_data, set_runs, template_state
from .numbering import IpfixNumbering
from .pending import PendingSets
from .producer import Group, Session, materialise
from .template_store import MAX_FIELDS_PER_TEMPLATE, TemplateStore
from .templates import Template

log = logging.getLogger(__name__)

_HH = struct.Struct(">HH")
MAX_SESSIONS = 65536
MAX_REMEMBERED_TEMPLATE_SET = 2048  # bytes; larger template sets are always walked


def _bump(counts: dict, reason: str, n: int = 1) -> None:
    counts[reason] = counts.get(reason, 0) + n


class TemplatedDecoder:
    def __init__(self, acct, *, max_templates_per_exporter: int, pending_max_bytes: int,
                 pending_max_age_ms: int, pending_total_max_bytes: int = 4 << 20,
                 template_fields_total_max: int = 65536, template_lifetime_ms: int = 5_400_000,
                 max_sessions: int = MAX_SESSIONS, interfaces: ifnames.InterfaceTable | None = None):
        self.acct = acct  # the collector's Accounting: stats, sequence numbers, exporter addresses
        self.template_lifetime_ms = template_lifetime_ms
        self.max_sessions = max_sessions  # options state, IPFIX numbering, last template sets: past it they start again
        self.store = TemplateStore(max_templates_per_exporter, template_fields_total_max, max_sessions)
        self.pending = PendingSets(acct, pending_max_bytes, pending_total_max_bytes, pending_max_age_ms)
        self.numbering = IpfixNumbering(acct, max_sessions)
        self.sessions: dict[tuple, Session] = {}
        self.interfaces = interfaces  # interface names options data carries (None: not kept)
        self._option_records = 0  # options data records in the message being walked
        self._held = 0            # data sets held in the message being walked
        self._groups: dict[tuple, Group] = {}
        self._define_failures = 0
        self._now = 0
        self.state_rejected = 0

    @property
    def templates(self) -> dict:
        return self.store.templates

    @property
    def generation(self) -> int:
        """Changes whenever the persisted state changes (templates, sessions, refreshes, numbering)."""
        return self.store.generation + self.numbering.generation

    # -- per call -----------------------------------------------------------------------------

    def begin(self, now_ms: int) -> None:
        self._now = now_ms
        self._groups = {}

    def v9(self, buf, source, now_ms) -> None:
        """One NetFlow v9 datagram from ``source`` (host text, port, ...)."""
        host, port = source[0], source[1]
        if len(buf) < netflow9.HEADER_LEN:
            self.acct.stats(host, 0, now_ms).error("truncated_header")
            return
        _v, _count, uptime, secs, seq, domain = netflow9.HEADER.unpack_from(buf, 0)
        st = self.acct.stats(host, domain, now_ms)
        st.version = 9
        st.packets += 1
        session = (host, port, 9, domain)
        self.acct.sequence(session, seq, 1, st)
        self._walk(buf, netflow9.HEADER_LEN, len(buf), session, st, secs * 1000, uptime)

    def ipfix(self, buf, source, now_ms) -> None:
        """One IPFIX message from ``source`` (host text, port, ...)."""
        host, port = source[0], source[1]
        if len(buf) < ipfix.HEADER_LEN:
            self.acct.stats(host, 0, now_ms).error("truncated_header")
            return
        _v, length, export_s, seq, domain = ipfix.HEADER.unpack_from(buf, 0)
        st = self.acct.stats(host, domain, now_ms)
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
            self.numbering.unknown(session)
        else:
            self.numbering.observe(session, seq, records, records - self._option_records, st)

    def single_set_run(self, blob, offsets, lengths, head, data_off, set_id, source, now_ms) -> bool:
        """Datagrams of one source, version, domain and data set id, each one header and one data
        set starting at ``data_off`` (after a template set when data_off is past the header; see
        flowlens_collector.templated_run.single_set_segments; ``head`` their RUN_HEAD rows).

        When the set's template is known, fixed-length and not an options template, every leading
        template set is byte for byte the one last processed for this session (so walking it again
        would change nothing), and for IPFIX the session's sequence numbering is known, their
        records join the template's group as one gathered block, with counters and sequence numbers
        from arrays (set_runs.py). False, having done nothing, otherwise: the caller then walks the datagrams.
        """
        return set_runs.single_set_run(self, blob, offsets, lengths, head, data_off, set_id, source, now_ms)

    def finish(self) -> list[FlowBatch]:
        """The flows of every group of this call."""
        out = []
        groups, self._groups = self._groups, {}
        sampling_sessions = self.store.sampling_sessions
        for key, g in groups.items():
            st = self.acct.stats(*g.stats_key, self._now)
            try:
                out.append(materialise(key, g, self.sessions.get(key[:4]), key[:4] in sampling_sessions, st,
                                       self.acct.exporter_addr(key[0])))
            except Exception:  # counted; one bad group must not cost the others
                log.exception("template group failed")
                st.error("internal_error")
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
        templates = self.store.templates
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
                    self.store.remember_template_set(session, bytes(buf[pos:nxt]))
                else:
                    self.store.template_sets.pop(session, None)
            else:
                st.error("reserved_set_id")
            pos = nxt
        return records

    def _new_group(self, key, t) -> Group:
        old = self._groups.get(key)
        if old is not None:  # template redefined within this call: keep the old records apart
            self._groups[key + ("old", id(old))] = old
        g = self._groups[key] = Group(t, (key[0], key[3]))
        return g

    def _template_events(self, events, session, st, options: bool) -> None:
        for ev in events:
            kind = ev[0]
            if kind == "error":
                st.error(ev[1])
            elif kind == "define":
                self.define(session, ev[1], st)
            elif kind == "withdraw":
                self.store.drop(session + (ev[1],))
            elif kind == "withdraw_all":
                self.store.withdraw_all(session, options)

    def define(self, session: tuple, template, st, refreshed_ms: int | None = None) -> bool:
        """Install a template (a Template, or a parser spec compiled here unless it is a refresh),
        then decode the data sets that waited for it.

        At a cap the least recently refreshed other session (of this exporter, or of any for the
        global field cap) is evicted whole and counted; only when none is left is the template refused."""
        when = self._now if refreshed_ms is None else refreshed_ms
        if isinstance(template, tuple):
            version, tid, fields, options, scope_count = template
            old = self.store.templates.get(session + (tid,))
            if (old is not None and old.fields == fields and old.options == options
                    and old.scope_count == scope_count):
                self.store.touch(session, when)
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
        while True:
            over = self.store.over_cap(session, key, template)
            if over is None:
                break
            victim, reason = over
            if victim is None:
                st.error("template_cap")
                self._define_failures += 1
                return False
            self.evict_session(victim, reason)
        self.store.install(key, template, when)
        for body, export_ms, uptime, _received in self.pending.take(key):
            self._data_set(key, body, st, export_ms, uptime)
        return True

    def evict_session(self, session: tuple, reason: str) -> None:
        """Forget everything of one transport session: templates, options state, held data,
        sequence numbering. Templates and held data sets are counted on its exporter by reason."""
        st = self.acct.stats(session[0], session[3], self._now, seen=False)
        dropped = self.store.drop_session(session)
        if dropped:
            _bump(st.templates_dropped, reason, dropped)
        self.sessions.pop(session, None)
        self.numbering.forget(session)
        self.acct.forget_sequence(session)
        self.pending.drop_session(session, "session_evicted", self._now)

    def _data_set(self, key: tuple, body, st, export_ms: int, uptime) -> int:
        t = self.store.templates.get(key)
        if t is None:
            if len(body):  # a data set with no records waits for nothing
                self._held += 1
                self.pending.hold(key, body, st, export_ms, uptime, self._now)
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
        raw, n = options_data.whole_records(t, body)
        if n == 0:
            return 0
        if self.interfaces is not None:
            options_data.learn_interfaces(self.interfaces, key[0], t, body, st)
        session = self.session(key[:4])
        before = (session.init_ms, session.rate, dict(session.samplers))
        options_data.apply_session_options(t, raw, n, session, st)
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

    def session(self, skey: tuple) -> Session:
        s = self.sessions.get(skey)
        if s is None:
            if len(self.sessions) >= self.max_sessions:
                self.sessions.clear()
            s = self.sessions[skey] = Session()
        return s

    def expire(self, now_ms: int) -> None:
        """Held data sets older than the pending age, and templates of sessions not refreshed
        within the template lifetime (RFC 7011 s8.4), counted on their exporter."""
        self._now = now_ms
        self.pending.expire(now_ms)
        if self.template_lifetime_ms > 0:
            stale = now_ms - self.template_lifetime_ms
            while True:
                oldest = self.store.oldest_refresh()
                if oldest is None or oldest[1] > stale:
                    break
                self.evict_session(oldest[0], "lifetime")

    # -- introspection and persistence --------------------------------------------------------

    def ipfix_numbering(self, session) -> str | None:
        """The IPFIX sequence numbering used for ``session`` ("all", "inclusive", ...), None if none yet."""
        return self.numbering.mode(session)

    def templates_by_stats_key(self) -> dict:
        return self.store.by_stats_key()

    def pending_by_stats_key(self) -> dict:
        """(exporter, domain) -> [data sets held, their bytes]."""
        return self.pending.by_stats_key()

    def state_text(self) -> str:
        """The templates file as JSON text (template_state.py)."""
        return template_state.state_text(self)

    def state(self) -> dict:
        return json.loads(self.state_text())

    def load_state(self, state, now_ms: int) -> int:
        """Templates and sessions from a templates file (template_state.py); returns the templates loaded."""
        self._now = now_ms
        return template_state.load_state(self, state, now_ms)
