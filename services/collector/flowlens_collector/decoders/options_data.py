"""Options data records of NetFlow v9 and IPFIX: what they tell about their transport session
(boot time, sampling rates per sampler) into its ``producer.Session``, and interface names into
the collector's interface table. The templated decoder owns the sessions and passes them in.
"""
from __future__ import annotations

import numpy as np

from . import ifnames
from .fields import SAMPLER_ID_ROLES, SAMPLING_ROLES, rate_from
from .producer import Session
from .template_state import MAX_EPOCH_MS, MAX_SAMPLERS_PER_SESSION, MAX_SAMPLING_RATE
from .templates import Template, _uint


def whole_records(t: Template, body) -> tuple:
    """(record bytes, record count) of one options data set; a truncated tail is left out."""
    if t.variable:
        raw, n, _truncated = t.project(body)
        return raw, n
    n = len(body) // t.record_len
    return body[:n * t.record_len], n


def learn_interfaces(interfaces: ifnames.InterfaceTable, exporter: str, t: Template, body, st) -> None:
    """Interface names the records carry, when the template has their fields; counted when a cap bites."""
    spot = ifnames.layout(t.fields, t.scope_count)
    if spot is not None and interfaces.learn(exporter, ifnames.records(t.fields, spot, body)):
        st.error("interface_names_cap")  # names.max_interfaces or collector.max_exporters reached


def apply_session_options(t: Template, raw, n: int, session: Session, st) -> None:
    """Boot time and sampling rates of ``n`` records into ``session``; out-of-range values are
    counted on ``st`` and skipped."""
    rec = np.frombuffer(bytes(raw), dtype=t.dtype, count=n)
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
