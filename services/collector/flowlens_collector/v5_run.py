"""NetFlow v5 datagrams -> a FlowBatch, decoded as arrays, and their accounting.

A run of consecutive v5 datagrams is parsed with array indexing: headers checked together, records
copied in one strided copy (or one gather), then mapped to the flow schema by ``decoders.v5``.
Python loops only over the distinct sources, (exporter, engine) pairs and bad datagrams of the run.
"""
from __future__ import annotations

import numpy as np

from flowmodel.schema import ADDR, FlowBatch

from .decoders import v5


def decode_run(acct, blob, offsets: np.ndarray, lengths: np.ndarray, sources: list, now_ms: int) -> FlowBatch | None:
    """Decode the v5 datagrams ``blob[offsets[i]:offsets[i] + lengths[i]]`` received from
    ``sources[i]``, booking packets, flows, errors and sequence numbers on ``acct`` (the
    collector's Accounting). None when no datagram was valid."""
    n = len(offsets)
    # distinct sources: (host, port, raw address) each; under load one exporter fills the group
    if sources.count(sources[0]) == n:
        one = acct.source(sources[0])
        resolved, sid, host_of, port_of = [one], None, None, None
        host_list, port_list = [one[0]], [one[:2]]
    else:
        ids: dict = {}
        sid = np.array([ids.setdefault(s, len(ids)) for s in sources], dtype=np.int64)
        resolved = [acct.source(s) for s in ids]
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
    stats = [acct.stats(host_list[k >> 16], k & 0xFFFF, now_ms) for k in keys]
    valid = status == v5.OK
    if not valid.all():
        for i in np.flatnonzero(~valid).tolist():
            stats[inverse[i]].error(v5.REASONS[status[i]])
        if not valid.any():
            return None
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
        acct.sequence_many((host, port, 5, int(domain[0])), seqs, counts, stats[inverse[0]])
    else:
        tkeys, tinv, first = _first_seen(tkey)
        for k, key in enumerate(tkeys):
            sel = tinv == k
            host, port = port_list[key >> 16]
            acct.sequence_many((host, port, 5, key & 0xFFFF), seqs[sel], counts[sel],
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
    return FlowBatch(cols, total, hints=v5.hints_for(sampling, domain, sid is None))


def _first_seen(keys: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Distinct values of ``keys`` in order of first appearance, each element's index among them,
    and where each distinct value first appears."""
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return uniq[order].tolist(), rank[inverse.reshape(-1)], first[order]
