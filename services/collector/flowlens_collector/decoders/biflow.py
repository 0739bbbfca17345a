"""RFC 5103 biflow records as two flows: the forward half as exported, the reverse half with the
endpoints swapped and the reverse elements' counters, flags and times.

A biflow record (softflowd -b, ipfixprobe, YAF) carries one connection's two directions: its key
fields (addresses, ports, protocol) name the forward direction, and reverse information elements
(enterprise 29305, the IANA id of the forward element) the other one. Totals and top talkers must
see both, so the reverse direction becomes a flow of its own: source and destination (address,
port, AS, prefix length) and input and output interface swapped, bytes and packets from the
reverse counters, TCP flags, TOS, next hop and VLAN from their reverse elements (0 without one),
times from reverse times when the record has them (else the forward ones), and flowDirection
flipped (traffic that came in on the observed interface went out of it the other way). A record
whose reverse counters are both zero carried nothing back and stays one flow. ``biflow`` marks
the halves: 1 forward, 2 reverse.
"""
from __future__ import annotations

import numpy as np

from flowmodel.schema import FlowBatch

from .templates import Template, _addr, _uint

FORWARD, REVERSE = 1, 2
# columns the reverse half takes from the other end of the forward record
SWAPPED = (("src_addr", "dst_addr"), ("src_port", "dst_port"), ("input_if", "output_if"),
           ("src_as", "dst_as"), ("src_mask", "dst_mask"))
# columns both halves share (the record's key and where it was observed)
SHARED = ("protocol", "sampling_rate", "exporter", "observation_domain", "flow_version")
_TIME_ROLES = ("start_ms", "end_ms", "start_sec", "end_sec", "start_us", "end_us", "start_ns", "end_ns",
               "start_delta_us", "end_delta_us", "start_uptime", "end_uptime")


def reverse_counters(t: Template, rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reverse (bytes, packets) of records ``rec``: delta counts, else totals, else 0."""
    r = t.roles
    n = len(rec)
    out = []
    for delta, total in (("rev_octets", "rev_octets_total"), ("rev_packets", "rev_packets_total")):
        role = delta if delta in r else total if total in r else None
        out.append(_uint(rec[role]) if role is not None else np.zeros(n, np.uint64))
    return out[0], out[1]


def split(t: Template, rec: np.ndarray, batch: FlowBatch, export_ms: np.ndarray, uptime_ms, init_ms) -> FlowBatch:
    """``batch`` (the forward halves of records ``rec`` of biflow template ``t``, in order) marked
    FORWARD, followed by the REVERSE halves of the records whose reverse counters are not zero."""
    n = batch.count
    cols = batch.columns
    cols["biflow"] = np.full(n, FORWARD, np.uint8)
    hints = dict(batch.hints)
    hints.pop("biflow", None)
    forward = FlowBatch(cols, n, hints=hints)
    rbytes, rpackets = reverse_counters(t, rec)
    idx = np.flatnonzero((rbytes > 0) | (rpackets > 0))
    if not len(idx):
        return forward
    r = t.roles
    sub = rec[idx]
    out: dict[str, np.ndarray] = {}
    for a, b in SWAPPED:
        out[a], out[b] = cols[b][idx], cols[a][idx]
    for name in SHARED:
        out[name] = cols[name][idx]
    out["bytes"], out["packets"] = rbytes[idx], rpackets[idx]
    for col, roles, dt in (("tcp_flags", ("rev_tcp_flags",), np.uint8), ("tos", ("rev_tos",), np.uint8),
                           ("vlan", ("rev_vlan", "rev_dot1q_vlan"), np.uint16),
                           ("input_if", ("rev_input_if",), np.uint32), ("output_if", ("rev_output_if",), np.uint32)):
        role = next((x for x in roles if x in r), None)
        if role is not None:
            out[col] = _uint(sub[role]).astype(dt)
    for role in ("rev_next_hop_v4", "rev_next_hop_v6"):
        if role in r:
            out["next_hop"] = _addr(sub[role])
            break
    d = cols["direction"][idx]
    out["direction"] = np.where(d <= 1, 1 - d, d).astype(np.uint8)  # 255 (unknown) stays
    _icmp(t, sub, out)
    if any("rev_" + role in r for role in _TIME_ROLES):
        start, end, _unknown = t._times(rec, n, export_ms, uptime_ms, init_ms, prefix="rev_")
        out["time_start"], out["time_end"] = start[idx], end[idx]
    else:
        out["time_start"], out["time_end"] = cols["time_start"][idx], cols["time_end"][idx]
    out["biflow"] = np.full(len(idx), REVERSE, np.uint8)
    # the reverse half keeps the forward's promises about shared columns, and about IPv4-only
    # addresses for the other end
    rhints = {k: v for k, v in hints.items() if k in SHARED}
    for a, b in (("src_addr", "dst_addr"), ("dst_addr", "src_addr")):
        if b in hints:
            rhints[a] = hints[b]
    return FlowBatch.concat([forward, FlowBatch(out, len(idx), hints=rhints)])


def _icmp(t: Template, sub: np.ndarray, out: dict) -> None:
    """ICMP type and code of the reverse halves: the reverse type/code element, else (when the
    template has no ICMP elements at all) the exporter's type*256+code in the reverse destination
    port, as for the forward half; else unknown (0)."""
    r = t.roles
    proto = out["protocol"]
    is_icmp = (proto == 1) | (proto == 58)
    role = "rev_icmp_type_code" if "rev_icmp_type_code" in r else \
        "rev_icmp_type_code_v6" if "rev_icmp_type_code_v6" in r else None
    if role is not None:
        tc = _uint(sub[role])
    elif not any(x in r for x in ("icmp_type_code", "icmp_type_code_v6", "icmp_type", "icmp_type_v6")):
        tc = out["dst_port"].astype(np.uint64)
    else:
        return
    out["icmp_type"] = np.where(is_icmp, (tc >> np.uint64(8)) & np.uint64(0xFF), 0).astype(np.uint8)
    out["icmp_code"] = np.where(is_icmp, tc & np.uint64(0xFF), 0).astype(np.uint8)
