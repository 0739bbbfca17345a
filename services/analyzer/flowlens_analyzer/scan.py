"""Scan detection: vertical scans (one source, many ports of one host) and horizontal sweeps (one
source, one port, many hosts) per window, with SYN-only and few-packet flows as evidence. CRITICAL.
"""
from __future__ import annotations

import numpy as np

from . import ports
from .common import (Context, Finding, WindowView, addr_text, factorize_addr, flow_filter, unique_counts,
                     unique_sorted, window_evidence)
from .wording import fmt_int, fmt_pct

NAME = "scan"
SYN, ACK = 0x02, 0x10
# UDP services where one client legitimately talks to many hosts (resolvers, NTP, discovery).
_UDP_SWEEP_EXEMPT = {53, 123, 137, 443, 853, 1900, 5353}


# A vertical scan or a sweep needs this share of probe-like flows (at most 2 packets, or TCP SYN-only).
PROBE_SHARE = 0.5


def analyze(view: WindowView, ctx: Context, state: dict) -> list[Finding]:
    if not view.count:
        return []
    per_minute = max(1.0, view.seconds / 60.0)  # thresholds are per 60 s
    port_threshold = ctx["analysis.scan_threshold"] * per_minute
    host_threshold = ctx["analysis.sweep_threshold"] * per_minute
    proto = view["protocol"]
    candidate = (proto == 6) | (proto == 17) | (proto == 132)
    if not candidate.any():
        return []
    src_ids, src_u = view.factor("src_addr")
    dst_ids, dst_u = view.factor("dst_addr")
    # Common address ids for both columns (a flow's mirror has them swapped).
    common, _ = factorize_addr(np.concatenate([src_u, dst_u]))
    src_c, dst_c = common[:len(src_u)][src_ids], common[len(src_u):][dst_ids]
    # uint16 as they are (no int64 copies of the window): every key they go into starts from an int64 id
    sport = view["src_port"]
    dport = view["dst_port"]
    # A finding needs PROBE_SHARE of its flows probe-like: a source with fewer probe-like flows than that
    # share of the smaller threshold cannot raise one (most hosts stop here, before anything is sorted).
    n_ids = int(common.max()) + 1 if len(common) else 0
    all_flags = view["tcp_flags"]
    probe_like = candidate & ((view["packets"] <= 2) | ((proto == 6) & ((all_flags & (SYN | ACK)) == SYN)))
    eligible = np.bincount(src_c[probe_like], minlength=n_ids) >= PROBE_SHARE * min(port_threshold, host_threshold)
    # First pass over the eligible sources' TCP/UDP/SCTP flows: only sources above a threshold here can be
    # above it once the replies are left out, so the (costlier) reply test runs on their flows and their
    # peers' only.
    hot = _hot_sources(np.flatnonzero(candidate & eligible[src_c]), src_c, dst_c, dport, port_threshold,
                       host_threshold)
    if not len(hot):
        return []
    is_hot = np.zeros(n_ids, dtype=bool)
    is_hot[hot] = True
    rows = np.flatnonzero(candidate & (is_hot[src_c] | is_hot[dst_c]))
    flags = view["tcp_flags"][rows]
    syn_only_r = (proto[rows] == 6) & ((flags & (SYN | ACK)) == SYN)
    reply = _replies(view["time_start"][rows], src_c[rows], dst_c[rows], sport[rows], dport[rows], proto[rows],
                     syn_only_r)
    idx = rows[~reply]
    if not len(idx):
        return []
    s, d, p = src_c[idx], dst_c[idx], dport[idx]
    few = view["packets"][idx] <= 2
    syn_only = syn_only_r[~reply]
    addr_u = np.concatenate([src_u, dst_u])
    first = np.zeros(len(is_hot), np.int64)  # common id -> an index into addr_u
    first[common[::-1]] = np.arange(len(common))[::-1]
    nd = len(is_hot)
    findings = []

    # Vertical: unique (src, dst, port) triples, counted per (src, dst); probes must be probe-like.
    triple = (s * nd + d) * 65536 + p
    uniq_triple = unique_sorted(triple)
    pair, port_counts = unique_counts(uniq_triple // 65536)
    hot_pairs = port_counts >= port_threshold
    by_src: dict[int, list[tuple[int, int]]] = {}
    for pr, cnt in zip(pair[hot_pairs].tolist(), port_counts[hot_pairs].tolist()):
        pr_rows = (s == pr // nd) & (d == pr % nd)
        if max(float(few[pr_rows].mean()), float(syn_only[pr_rows].mean())) < PROBE_SHARE:
            continue  # many full sessions between two hosts (a busy client, a pool): not probing
        by_src.setdefault(pr // nd, []).append((pr % nd, cnt))
    for si, hosts in by_src.items():
        hosts.sort(key=lambda h: (-h[1], h[0]))
        di, nports = hosts[0]
        pr_rows = (s == si) & (d == di)
        findings.append(_vertical(view, ctx, first[si], first[di], addr_u, addr_u, nports, len(hosts), p[pr_rows],
                                  few[pr_rows], syn_only[pr_rows]))

    # Horizontal: unique (src, port, dst) triples, counted per (src, port).
    triple = (s * 65536 + p) * nd + d
    uniq_triple = unique_sorted(triple)
    sp, host_counts = unique_counts(uniq_triple // nd)
    for key, cnt in zip(sp[host_counts >= host_threshold].tolist(), host_counts[host_counts >= host_threshold].tolist()):
        si, port = key // 65536, key % 65536
        sel = (s == si) & (p == port)
        proto_main = int(np.bincount(proto[idx][sel]).argmax())
        n = int(sel.sum())
        few_share = float(few[sel].mean())
        syn_share = float(syn_only[sel].mean())
        if proto_main == 6 and max(few_share, syn_share) < PROBE_SHARE:
            continue  # many full TCP sessions to one service: a busy client or proxy, not a sweep
        if proto_main != 6 and (port in _UDP_SWEEP_EXEMPT or few_share < 0.8):
            continue
        findings.append(_sweep(view, ctx, first[si], addr_u, port, proto_main, cnt, n, few_share, syn_share))
    return findings


def _hot_sources(idx, src_c, dst_c, dport, port_threshold, host_threshold) -> np.ndarray:
    """Common ids of the sources with at least port_threshold ports on one host or host_threshold
    hosts on one port among the flows idx (replies not yet left out)."""
    if not len(idx):
        return np.zeros(0, np.int64)
    s, d, p = src_c[idx], dst_c[idx], dport[idx]
    nd = int(max(s.max(), d.max())) + 1
    pair, counts = unique_counts(unique_sorted((s * nd + d) * 65536 + p) // 65536)
    hot = [pair[counts >= port_threshold] // nd]
    sp, counts = unique_counts(unique_sorted((s * 65536 + p) * nd + d) // nd)
    hot.append(sp[counts >= host_threshold] // 65536)
    return np.unique(np.concatenate(hot))


def _replies(start, src, dst, sport, dport, proto, syn_only) -> np.ndarray:
    """Which flows answer another: a flow whose mirror (addresses and ports swapped, same protocol) began
    earlier, or at the same time when this one is not SYN-only and comes from the lower port (the
    service); without a mirror, a flow from a port its peer contacted (from any port) or from a port below
    1024 to one above. A SYN without ACK is never a reply."""
    n = len(src)
    if not n:
        return np.zeros(0, bool)
    es, ed = src * 65536 + sport, dst * 65536 + dport
    _, ends = np.unique(np.concatenate([es, ed]), return_inverse=True)
    m = int(ends.max()) + 1
    eid_s, eid_d = ends[:n].astype(np.int64), ends[n:].astype(np.int64)
    mult = 256 if m * m * 256 < (1 << 62) else 1  # protocol in the key unless that would overflow
    p = proto.astype(np.int64) if mult == 256 else 0
    fwd = (eid_s * m + eid_d) * mult + p
    rev = (eid_d * m + eid_s) * mult + p
    order = np.argsort(fwd, kind="stable")
    keys, first_start = _group_min(fwd[order], start[order].astype(np.int64))
    pos = np.minimum(np.searchsorted(keys, rev), len(keys) - 1)
    has_mirror = keys[pos] == rev
    mirror_start = first_start[pos]
    own = start.astype(np.int64)
    reply = has_mirror & ((mirror_start < own) | ((mirror_start == own) & (sport < dport)))
    # No mirror: was this source port contacted by the peer (any client port)?
    nd = int(max(src.max(), dst.max())) + 1
    if nd * nd * 65536 < (1 << 62):
        contacted = unique_sorted((dst * nd + src) * 65536 + dport)
        mine = (src * nd + dst) * 65536 + sport
        pos = np.minimum(np.searchsorted(contacted, mine), len(contacted) - 1)
        answered = contacted[pos] == mine
    else:
        answered = np.zeros(n, bool)
    reply |= ~has_mirror & (answered | ((sport < 1024) & (dport >= 1024)))
    return reply & ~syn_only


def _group_min(sorted_keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.empty(len(sorted_keys), dtype=bool)
    keep[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=keep[1:])
    starts = np.flatnonzero(keep)
    return sorted_keys[starts], np.minimum.reduceat(values, starts)


def _vertical(view, ctx, si, di, src_u, dst_u, nports, nhosts, port_col, few, syn_only) -> Finding:
    src, dst = addr_text(src_u[si]), addr_text(dst_u[di])
    secs = view.seconds
    flows = len(port_col)
    few_share, syn_share = float(few.mean()), float(syn_only.mean())
    lo, hi = int(port_col.min()), int(port_col.max())
    others = f" (and {nhosts - 1} more hosts)" if nhosts > 1 else ""
    desc = (f"{ctx.described(src)} contacted {fmt_int(nports)} ports on {ctx.described(dst)}{others} in {secs:g} s "
            f"(ports {lo}-{hi}, {fmt_pct(few_share)} of {fmt_int(flows)} flows with at most 2 packets, "
            f"{fmt_pct(syn_share)} SYN-only): likely a port scan")
    action = (f"Check whether {src} is an authorised scanner; if not, block it and look for compromise"
              if ctx.is_local_text(src) else f"Block {src} at the edge and check {dst} for exposed services")
    return Finding(
        NAME, src, "CRITICAL", f"Port scan from {src}", desc, action,
        window_evidence(view, target=dst, ports=int(nports), hosts=int(nhosts), flows=int(flows),
                        first_port=lo, last_port=hi, few_packet_share=round(few_share, 3),
                        syn_only_share=round(syn_share, 3), seconds=secs),
        flow_filter(view, src=src, dst=dst),
        figures={"ports": float(nports), "hosts": float(nhosts)})


def _sweep(view, ctx, si, src_u, port, proto, nhosts, flows, few_share, syn_share) -> Finding:
    src = addr_text(src_u[si])
    service = ports.service_name(port, proto)
    secs = view.seconds
    desc = (f"{ctx.described(src)} contacted {fmt_int(nhosts)} hosts on port {port} ({service}) in {secs:g} s "
            f"({fmt_pct(few_share)} of {fmt_int(flows)} flows with at most 2 packets, {fmt_pct(syn_share)} SYN-only): "
            f"likely a network sweep")
    action = (f"Check whether {src} is an authorised scanner; if not, isolate it (sweeps on {service} are typical of worms)"
              if ctx.is_local_text(src) else f"Block {src} at the edge; check which hosts answered on port {port}")
    return Finding(
        NAME, f"{src} port {port}", "CRITICAL", f"Sweep of port {port} from {src}", desc, action,
        window_evidence(view, port=int(port), service=service, hosts=int(nhosts), flows=int(flows),
                        few_packet_share=round(few_share, 3), syn_only_share=round(syn_share, 3), seconds=secs),
        flow_filter(view, src=src, port=int(port)),
        figures={"hosts": float(nhosts)})
