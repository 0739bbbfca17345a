"""sFlow v5 datagrams -> a FlowBatch and per-agent accounting: the producer beside the pure decoder.

``decode_run`` hands a run of sFlow datagrams to ``decoders.sflow.decode`` (in place when they sit
4-aligned in the receive buffer with room after them, else copied by ``sflow.join``) and books
what it found on the owner's counters: per (agent address, sub-agent id) the datagrams, flows,
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
    u8 = np.frombuffer(blob, dtype=np.uint8)
    ok = lengths >= 4
    at = np.where(ok, offsets, 0)
    word = (u8[at].astype(np.int64) << 24) | (u8[at + 1].astype(np.int64) << 16) | \
        (u8[at + 2].astype(np.int64) << 8) | u8[at + 3]
    return ok & (word == sflow.VERSION)


def _in_place(blob, offsets: np.ndarray, lengths: np.ndarray):
    if len(offsets) and not (offsets & 3).any() and len(blob) - int((offsets + lengths).max()) >= sflow.PAD:
        return blob, offsets, lengths
    view = memoryview(blob)
    return sflow.join([view[o:o + n] for o, n in zip(offsets.tolist(), lengths.tolist())])


def decode_run(owner, blob, offsets: np.ndarray, lengths: np.ndarray, sources: list, now_ms: int) -> FlowBatch:
    """Decode the sFlow datagrams ``blob[offsets[i]:offsets[i] + lengths[i]]``; ``sources[i]`` is
    the (host text, port, 16-byte address) the datagram came from. ``owner`` gives the counters:
    ``stats(exporter, domain, now_ms)`` and ``sequence_many(stream, sequences, units, stats)``."""
    result = sflow.decode(*_in_place(blob, offsets, lengths), now_ms)
    dg = result.datagrams
    n = len(dg)
    # exporter of each datagram: its agent address, else (no agent, or a rejected header) its source
    agents = dg["agent"]
    zero = np.zeros(1, ADDR)[0]
    no_agent = (agents == zero) | (dg["status"] != sflow.OK)
    texts: dict[bytes, str] = {}
    hosts = [sources[i][0] if no_agent[i] else texts.setdefault(bytes(a), addr.to_text(bytes(a)))
             for i, a in enumerate(agents.tolist())]
    domains = np.where(no_agent, 0, dg["sub_agent"]).tolist()
    status, flows, seqs = dg["status"].tolist(), dg["flows"].tolist(), dg["sequence"]
    streams: dict[tuple, list[int]] = {}
    for i in range(n):
        st = owner.stats(hosts[i], domains[i], now_ms)
        if status[i] != sflow.OK:
            st.error(sflow.REASONS[status[i]])
            continue
        st.version = VERSION
        st.packets += 1
        st.flows += flows[i]
        streams.setdefault((hosts[i], sources[i][1], VERSION, domains[i]), []).append(i)
    for stream, idx in streams.items():
        sel = np.asarray(idx, dtype=np.int64)
        owner.sequence_many(stream, seqs[sel], np.ones(len(sel), np.int64), owner.stats(stream[0], stream[3], now_ms))
    batch = result.batch()
    if len(batch) and no_agent[result.flow_datagram].any():
        exporter = batch.columns["exporter"]
        rows = np.flatnonzero(no_agent[result.flow_datagram])
        exporter[rows] = np.frombuffer(b"".join(sources[int(d)][2] for d in result.flow_datagram[rows]), ADDR)
        batch.hints.pop("exporter", None)
    return batch
