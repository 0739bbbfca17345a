"""The v9/IPFIX template store: compiled templates keyed by (exporter address, UDP source port,
version, observation domain / source id, template id), so two exporters or two line cards reusing
an id never mix; a transport session is the key without the template id.

Bounds: at most max_templates per exporter, MAX_FIELDS_PER_EXPORTER fields per exporter,
fields_total_max fields in all, and max_sessions sessions holding templates. ``over_cap`` names the
session to evict (the least recently refreshed other one) when a new template would pass a bound;
the caller evicts it whole (templates, options state, held data, numbering) and asks again. The
store also keeps each session's last refresh time (oldest first: the lifetime and eviction order),
the JSON entry of each template for the templates file, and the bytes of each session's last
template set (a datagram repeating them changes nothing, so a run of such datagrams can skip them).
"""
from __future__ import annotations

import json
from collections import OrderedDict

from .fields import SAMPLING_ROLES
from .templates import Template

MAX_FIELDS_PER_TEMPLATE = 8192
MAX_FIELDS_PER_EXPORTER = 131072  # bounds template memory however the fields are spread over ids
REFRESH_SAVE_MS = 60_000          # a session's refresh time is worth saving again once per minute


def announces_sampling(template) -> bool:
    """An options template whose data will carry a sampling rate for its session."""
    return template is not None and template.options and any(role in SAMPLING_ROLES for role in template.roles)


class TemplateStore:
    def __init__(self, max_templates_per_exporter: int, fields_total_max: int, max_sessions: int):
        self.max_templates = max_templates_per_exporter
        self.fields_total_max = fields_total_max
        self.max_sessions = max_sessions
        self.templates: dict[tuple, Template] = {}
        self._per_host: dict[str, int] = {}
        self._per_host_fields: dict[str, int] = {}
        self.total_fields = 0
        # session -> template ids it holds; session -> last template (re)definition, oldest first
        self._session_tids: dict[tuple, set] = {}
        self.refreshed: OrderedDict[tuple, int] = OrderedDict()
        self.sampling_sessions: set = set()  # sessions with an options template announcing sampling
        self.fragments: dict[tuple, str] = {}  # template key -> its JSON entry in the templates file
        # session -> the bytes (set header included) of the last template set walked for it, when
        # every record in it defined a template successfully: the same bytes again change nothing
        self.template_sets: dict[tuple, bytes] = {}
        self.generation = 0  # bumped whenever what the templates file holds changes

    def get(self, key: tuple) -> Template | None:
        return self.templates.get(key)

    def __len__(self) -> int:
        return len(self.templates)

    def touch(self, session: tuple, when: int) -> None:
        """A template of ``session`` was (re)defined: it is the most recently refreshed one now."""
        refreshed = self.refreshed
        before = refreshed.get(session)
        refreshed[session] = when
        refreshed.move_to_end(session)
        if before is None or before // REFRESH_SAVE_MS != when // REFRESH_SAVE_MS:
            self.generation += 1  # the saved refresh time is at most this much behind

    def over_cap(self, session: tuple, key: tuple, template: Template) -> tuple | None:
        """None when ``template`` fits under every bound as ``key``; else (session to evict first
        or None when there is none, the reason it would be evicted)."""
        old = self.templates.get(key)
        host = session[0]
        added = len(template.fields) - (len(old.fields) if old is not None else 0)
        over_host = (old is None and self._per_host.get(host, 0) >= self.max_templates) or \
            self._per_host_fields.get(host, 0) + added > MAX_FIELDS_PER_EXPORTER
        over_all = self.total_fields + added > self.fields_total_max or \
            (session not in self._session_tids and len(self._session_tids) >= self.max_sessions)
        if not (over_host or over_all):
            return None
        if over_host:
            return next((s for s in self.refreshed if s[0] == host and s != session), None), "exporter_cap"
        reason = "global_fields" if self.total_fields + added > self.fields_total_max else "session_cap"
        return next((s for s in self.refreshed if s != session), None), reason

    def install(self, key: tuple, template: Template, when: int) -> Template:
        """Hold ``template`` as ``key`` (bounds checked by the caller); an equal one already held
        is kept, compiled. Returns the template held."""
        session, host = key[:4], key[0]
        old = self.templates.get(key)
        added = len(template.fields) - (len(old.fields) if old is not None else 0)
        if old is None:
            self._per_host[host] = self._per_host.get(host, 0) + 1
            self._session_tids.setdefault(session, set()).add(key[4])
        elif old.same_as(template):
            template = old  # a refresh: keep the compiled one
        if template is not old:
            self.template_sets.pop(session, None)  # the session's templates changed
            self.fragments[key] = json.dumps(
                {"exporter": key[0], "port": key[1], "version": key[2], "domain": key[3], "template_id": key[4],
                 "options": template.options, "scope_count": template.scope_count,
                 "fields": template.key_fields()}, separators=(",", ":"))
            self.generation += 1
            if announces_sampling(template):
                self.sampling_sessions.add(session)
        self._per_host_fields[host] = self._per_host_fields.get(host, 0) + added
        self.total_fields += added
        self.templates[key] = template
        self.touch(session, when)
        return template

    def drop(self, key: tuple) -> None:
        """Withdraw one template (a withdrawal, an eviction)."""
        self.template_sets.pop(key[:4], None)
        t = self.templates.pop(key, None)
        if t is None:
            return
        host, session = key[0], key[:4]
        self._per_host[host] = max(0, self._per_host.get(host, 1) - 1)
        self._per_host_fields[host] = max(0, self._per_host_fields.get(host, 0) - len(t.fields))
        self.total_fields = max(0, self.total_fields - len(t.fields))
        self.fragments.pop(key, None)
        tids = self._session_tids.get(session)
        if tids is not None:
            tids.discard(key[4])
            if not tids:
                del self._session_tids[session]
                self.refreshed.pop(session, None)
        if session in self.sampling_sessions and not any(
                announces_sampling(self.templates.get(session + (tid,)))
                for tid in self._session_tids.get(session, ())):
            self.sampling_sessions.discard(session)  # its last sampling options template is gone
        self.generation += 1

    def withdraw_all(self, session: tuple, options: bool) -> None:
        """Every (options) template of a session (an IPFIX withdrawal of all)."""
        for key in [k for k, t in self.templates.items() if k[:4] == session and t.options == options]:
            self.drop(key)

    def drop_session(self, session: tuple) -> int:
        """Every template of a session; returns how many there were."""
        tids = self._session_tids.pop(session, ())
        for tid in list(tids):
            self.drop(session + (tid,))
        self.refreshed.pop(session, None)
        self.sampling_sessions.discard(session)
        self.template_sets.pop(session, None)
        self.generation += 1
        return len(tids)

    def oldest_refresh(self) -> tuple | None:
        """(session, refresh ms) of the least recently refreshed session, None when none."""
        return next(iter(self.refreshed.items()), None)

    def remember_template_set(self, session: tuple, data: bytes) -> None:
        if len(self.template_sets) >= self.max_sessions:
            self.template_sets.clear()
        self.template_sets[session] = data

    def by_stats_key(self) -> dict:
        """(exporter, domain) -> templates held."""
        out: dict = {}
        for k in self.templates:
            sk = (k[0], k[3])
            out[sk] = out.get(sk, 0) + 1
        return out
