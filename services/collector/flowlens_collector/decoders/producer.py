"""The v9/IPFIX producer: records of one template gathered in a decode call -> flow columns.

The templated decoder only frames datagrams and appends each data set's record bytes to its
template's ``Group``; at the end of the call ``materialise`` turns a group into one FlowBatch with a
single ``frombuffer``: the template's vectorised mapping (templates.py), the session's boot time and
sampling rates (``Session``, from options data), the exporter's columns, and for RFC 5103 biflow
templates the reverse halves (biflow.py).
"""
from __future__ import annotations

import numpy as np

from flowmodel.schema import FLOW_COLUMNS, HINT_CONST, FlowBatch

from . import biflow


class Session:
    """What an exporter told us through options data: its boot time and its sampling rates."""

    __slots__ = ("init_ms", "rate", "samplers")

    def __init__(self):
        self.init_ms: int | None = None
        self.rate: int | None = None           # rate for flows without a sampler id
        self.samplers: dict[int, int] = {}     # sampler / selector id -> rate


class Group:
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


def materialise(key: tuple, g: Group, session: Session | None, announced_sampling: bool, st, exporter) -> FlowBatch:
    """The flows of group ``g`` of template key ``key``. ``session``: the options state of its
    transport session (None: none received); ``announced_sampling``: the session has an options
    template announcing sampling (a rate not received yet is then unknown, 0, rather than 1);
    ``st``: its exporter's counters; ``exporter``: the exporter column value."""
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
    keep = t.account(rec, st)  # enterprise fields and NSEL events counted; NSEL creates dropped
    if keep is not None:
        rec, export_ms = rec[keep], export_ms[keep]
        uptime = uptime[keep] if uptime is not None else None
        n = len(rec)
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
        default = 0 if announced_sampling else 1
    if rates is not None:
        sampling = rates
    elif sampler is not None:
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
    cols["exporter"] = np.full(n, exporter)
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
