"""The array path of the templated decoder: a run of datagrams of one transport session, each one
header and one data set of the same known fixed-length template (optionally after a repeat of the
session's last template set), joins the template's group as one gathered block, with counters and
sequence numbers taken from arrays rather than walked per datagram (templated.py walks the rest).
"""
from __future__ import annotations

import numpy as np

from . import ipfix, netflow9
from .v5 import gather as _gather


def single_set_run(dec, blob, offsets, lengths, head, data_off, set_id, source, now_ms) -> bool:
    """Datagrams of one source, version, domain and data set id into ``dec`` (a TemplatedDecoder);
    see TemplatedDecoder.single_set_run. False, having done nothing, when the run does not qualify."""
    host, port = source[0], source[1]
    version = int(head["version"][0])
    ipfix_msg = version == 10
    domain = int(head["w3"][0] if ipfix_msg else head["w4"][0])
    session = (host, port, version, domain)
    key = session + (set_id,)
    t = dec.store.templates.get(key)
    if t is None or not t.record_len or t.options or t.variable:
        return False
    mode = None
    if ipfix_msg:
        info = dec.numbering.known(session)
        if info is None:
            return False
    hlen = ipfix.HEADER_LEN if ipfix_msg else netflow9.HEADER_LEN
    with_templates = data_off != hlen
    if with_templates.any() and not repeats_template_set(blob, offsets[with_templates], hlen,
                                                         data_off[with_templates],
                                                         dec.store.template_sets.get(session)):
        return False
    rl = t.record_len
    m = len(offsets)
    counts = (lengths - data_off - 4) // rl
    total = int(counts.sum())
    if ipfix_msg:
        mode = dec.numbering.run_mode(session, info, head["w2"].astype(np.int64), counts, now_ms)
        if mode is None:
            return False
    if with_templates.any():
        dec.store.touch(session, dec._now)
    st = dec.acct.stats(host, domain, now_ms)
    st.version = version
    st.packets += m
    st.flows += total
    if ipfix_msg:
        seqs = head["w2"].astype(np.int64)
        if mode != "all":  # inclusive numbering: the number after this message's records
            seqs = (seqs - counts) & 0xFFFFFFFF
        dec.acct.sequence_many(session, seqs, counts, st)
        export_ms = head["w1"].astype(np.int64) * 1000
        uptime = None
    else:
        dec.acct.sequence_many(session, head["w3"], np.ones(m, dtype=np.int64), st)
        export_ms = head["w2"].astype(np.int64) * 1000
        uptime = head["w1"].astype(np.int64)
    if total == 0:
        return True
    body = run_records(blob, offsets, data_off, counts, rl)
    g = dec._groups.get(key)
    if g is None or g.template is not t:
        g = dec._new_group(key, t)
    g.bodies.append(body)
    g.meta.append((counts, export_ms, uptime if uptime is not None else -1))
    return True


def repeats_template_set(blob, offsets, hlen: int, data_off, known: bytes | None) -> bool:
    """Whether each datagram at ``offsets`` carries, right after its header, exactly ``known``
    (the session's last template set), so walking it again would change nothing."""
    if known is None or not (data_off == hlen + len(known)).all():
        return False
    sets = _gather(blob, offsets + hlen, len(known))
    return bool((sets == np.frombuffer(known, dtype=np.uint8)).all())


def run_records(blob, offsets, data_off, counts, record_len: int) -> np.ndarray:
    """The record bytes of every datagram's data set, in order, as one array: a strided copy when
    the datagrams are evenly spaced and alike, a gather otherwise."""
    m = len(offsets)
    first = int(offsets[0]) + int(data_off[0]) + 4
    stride = int(offsets[1] - offsets[0]) if m > 1 else 0
    if (counts == counts[0]).all() and (data_off == data_off[0]).all() and \
            (m < 3 or (offsets[2:] - offsets[1:-1] == stride).all()):
        return np.ndarray((m, int(counts[0]) * record_len), dtype=np.uint8, buffer=blob, offset=first,
                          strides=(stride, 1)).copy()
    total = int(counts.sum())
    base = np.cumsum(counts) - counts
    starts = np.repeat(offsets + data_off + 4 - base * record_len, counts) + \
        np.arange(0, total * record_len, record_len, dtype=np.int64)
    return _gather(blob, starts, record_len)
