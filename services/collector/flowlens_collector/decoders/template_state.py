"""The templated decoder's state as the templates file keeps it across restarts: every template
(serialised once, when defined: template_store.fragments), and per transport session what options
data said (boot time, sampling rates), its last template refresh and its confirmed IPFIX numbering.
Loading checks every value; an entry that fails is skipped and counted (``state_rejected``).
"""
from __future__ import annotations

import json

from .numbering import MODES as IPFIX_MODES
from .templates import Template

STATE_FORMAT = 2                  # 2 adds sessions' refresh times and IPFIX numbering
MAX_SAMPLERS_PER_SESSION = 1024
MAX_EPOCH_MS = 1 << 42            # ~2109: a systemInitTimeMilliseconds beyond is garbage, not a boot time
MAX_SAMPLING_RATE = 0xFFFFFFFF


def state_text(dec) -> str:
    """The templates file as JSON text: each template's entry was serialised when it was
    defined, so this costs a join plus the (few) sessions, whatever the template count."""
    sessions = []
    keys = dict.fromkeys(dec.store.refreshed)
    keys.update(dict.fromkeys(dec.sessions))
    keys.update(dict.fromkeys(dec.numbering.confirmed()))
    for k in keys:
        s = dec.sessions.get(k)
        mode, confirmed = dec.numbering.saved(k)
        sessions.append({"exporter": k[0], "port": k[1], "version": k[2], "domain": k[3],
                         "init_ms": s.init_ms if s else None, "rate": s.rate if s else None,
                         "samplers": [[i, r] for i, r in s.samplers.items()] if s else [],
                         "refreshed_ms": dec.store.refreshed.get(k),
                         "ipfix_sequence": mode, "ipfix_sequence_confirmed": confirmed})
    return ('{"format":%d,"templates":[%s],"sessions":%s}'
            % (STATE_FORMAT, ",".join(dec.store.fragments.values()),
               json.dumps(sessions, separators=(",", ":"))))


def load_state(dec, state, now_ms: int) -> int:
    """Templates and sessions from a templates file (format 1 or 2). Each session keeps its
    last refresh time (format 1: now), so templates expire across restarts as they would have."""
    loaded = 0
    if not isinstance(state, dict):
        dec.state_rejected += 1
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
                s = dec.session(key)
                s.init_ms, s.rate = init_ms, rate
                s.samplers.update(samplers)
            if mode is not None:
                dec.numbering.restore(key, mode, bool(e.get("ipfix_sequence_confirmed")))
        except Exception:
            dec.state_rejected += 1
    entries = []
    for e in state.get("templates", []) or []:
        try:
            session = (str(e["exporter"]), int(e["port"]), int(e["version"]), int(e["domain"]))
            entries.append((refreshed.get(session, now_ms), session, e))
        except Exception:
            dec.state_rejected += 1
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
            st = dec.acct.stats(session[0], session[3], now_ms, seen=False)
            if dec.define(session, t, st, refreshed_ms=when):
                loaded += 1
            else:
                dec.state_rejected += 1
        except Exception:
            dec.state_rejected += 1
    return loaded
