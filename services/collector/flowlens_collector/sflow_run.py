"""sFlow v5 datagrams -> a FlowBatch and per-agent accounting: the producer beside the pure decoder.

``decode_run`` hands a run of sFlow datagrams to ``decoders.sflow.decode`` (in place when they sit
4-aligned in the receive buffer with room after them, else copied by ``sflow.join``) and books
what it found on the collector's Accounting: per (agent address, sub-agent id) the datagrams, flows,
and datagram sequence numbers (one unit per datagram, per UDP source port as for NetFlow); a
rejected datagram counts its reason on its agent, or on its UDP source when its header did not
say. The exporter column is the agent address, the UDP source where the agent gave none.
"""
from __future__ import annotations

import numpy as np

from flowmodel import addr
from flowmodel.schema import ADDR, FlowBatch

from .decoders import sflow

VERSION = sflow.FLOW_VERSION  # the version of sFlow streams and exporter rows (105)


def is_sflow(blob, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Which datagrams start with the sFlow v5 version word (00 00 00 05). NetFlow's version is
    16 bits and never 0, so these first two zero bytes tell the protocols apart."""
    ok = lengths >= 4
    at = offsets if ok.all() else np.where(ok, offsets, 0)
    if not (at & 3).any():  # 4-aligned (receive slots, sFlow's own lengths): one 32-bit gather
        word = np.frombuffer(blob, dtype=">u4", count=len(blob) // 4)[at >> 2]
    else:
        u8 = np.frombuffer(blob, dtype=np.uint8)
        word = (u8[at].astype(np.int64) << 24) | (u8[at + 1].astype(np.int64) << 16) | \
            (u8[at + 2].astype(np.int64) << 8) | u8[at + 3]
    return ok & (word == sflow.VERSION)


def _in_place(blob, offsets: np.ndarray, lengths: np.ndarray):
    if len(offsets) and not (offsets & 3).any() and len(blob) - int((offsets + lengths).max()) >= sflow.PAD:
        return blob, offsets, lengths
    view = memoryview(blob)
    return sflow.join([view[o:o + n] for o, n in zip(offsets.tolist(), lengths.tolist())])


def _same(values: np.ndarray) -> bool:
    return bool((values == values[0]).all())


_KEY = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("domain", "<u4"), ("source", "<i8")])


def decode_run(acct, blob, offsets: np.ndarray, lengths: np.ndarray, sources: list, now_ms: int,
               if_counters=None) -> FlowBatch:
    """Decode the sFlow datagrams ``blob[offsets[i]:offsets[i] + lengths[i]]`` received from
    ``sources[i]`` (recvfrom addresses). ``acct`` (the collector's Accounting) resolves sources and keeps the counters:
    ``source(src)`` -> (host text, port, 16-byte address), ``stats(exporter, domain, now_ms)`` and
    ``sequence_many(stream, sequences, units, stats)``. Python loops only over the distinct
    (agent, sub-agent, source) triples of the run. ``if_counters`` (a sflow_counters.CounterDeltas),
    when given, takes the if-counters records of the decoded datagrams."""
    n = len(offsets)
    if sources.count(sources[0]) == n:
        source_id, resolved = np.zeros(n, np.int64), [acct.source(sources[0])]
    else:
        ids: dict = {}
        source_id = np.fromiter((ids.setdefault(s, len(ids)) for s in sources), dtype=np.int64, count=n)
        resolved = [acct.source(s) for s in ids]
    result = sflow.decode(*_in_place(blob, offsets, lengths), now_ms)
    dg = result.datagrams
    ok = dg["status"] == sflow.OK
    agent = np.ascontiguousarray(dg["agent"]).view("<u8").reshape(n, 2)
    # no agent address (type 0, or a header too broken to say): counted on the UDP source instead
    no_agent = (agent[:, 0] == 0) & (agent[:, 1] == 0)
    sub_agent = dg["sub_agent"]
    if len(resolved) == 1 and _same(agent[:, 0]) and _same(agent[:, 1]) and _same(sub_agent):
        firsts, inverse = np.zeros(1, np.int64), None  # one agent from one source: the usual run
    else:
        key = np.empty(n, _KEY)
        key["hi"] = np.where(no_agent, 0, agent[:, 0])
        key["lo"] = np.where(no_agent, 0, agent[:, 1])
        key["domain"] = np.where(no_agent, 0, sub_agent)
        key["source"] = source_id
        _uniq, firsts, inverse = np.unique(key, return_index=True, return_inverse=True)
        order = np.argsort(firsts, kind="stable")  # rows are created in the order first heard
        firsts, rank = firsts[order], np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        inverse = rank[inverse.reshape(-1)]
    flows, seqs, status = dg["flows"], dg["sequence"], dg["status"]
    for k, i in enumerate(firsts.tolist()):
        sel = slice(None) if inverse is None else inverse == k
        host, port, _raw = resolved[int(source_id[i])]
        domain = 0
        if not no_agent[i]:
            host, domain = acct.address_text(agent[i].tobytes()), int(sub_agent[i])
        st = acct.stats(host, domain, now_ms)
        good = ok[sel]
        if good.all():
            decoded, good_seqs, good_flows = len(good), seqs[sel], flows[sel]
        else:
            for reason, count in zip(*np.unique(status[sel][~good], return_counts=True)):
                st.error(sflow.REASONS[int(reason)], int(count))
            if not good.any():
                continue
            good_seqs, good_flows = seqs[sel][good], flows[sel][good]
            decoded = len(good_seqs)
        st.version = VERSION
        st.packets += decoded
        st.flows += int(good_flows.sum())
        acct.sequence_many((host, port, VERSION, domain), good_seqs, np.ones(decoded, np.int64), st)
    if if_counters is not None and len(result.counters["if_index"]):
        _take_counters(if_counters, result, ok, no_agent, resolved, source_id, now_ms)
    batch = result.batch()
    if len(batch) and no_agent.any():
        rows = np.flatnonzero(no_agent[result.flow_datagram])
        if len(rows):
            raw = np.frombuffer(b"".join(r[2] for r in resolved), ADDR)
            batch.columns["exporter"][rows] = raw[source_id[result.flow_datagram[rows]]]
            batch.hints.pop("exporter", None)
    return batch


def _take_counters(if_counters, result, ok, no_agent, resolved, source_id, now_ms: int) -> None:
    """Hand each if-counters record of a decoded datagram to ``if_counters``: one call per record,
    a few per interface a minute (agents poll counters every 20-30 s)."""
    c, dg = result.counters, result.datagrams
    rows = [i for i, d in enumerate(c["datagram"].tolist()) if ok[d]]
    names = [n for n, _w, _s in sflow.IF_COUNTER_FIELDS]
    texts: dict[int, str] = {}
    for i in rows:
        d = int(c["datagram"][i])
        agent = texts.get(d)
        if agent is None:
            agent = texts[d] = resolved[int(source_id[d])][0] if no_agent[d] else addr.to_text(bytes(dg["agent"][d]))
        sample = {n: int(c[n][i]) for n in names}
        if_counters.add(agent, int(dg["sub_agent"][d]), int(dg["uptime_ms"][d]), int(c["sequence"][i]), sample, now_ms)
