"""Scan detection: vertical scans (one source, many ports of one host) and horizontal sweeps (one
source, one port, many hosts) per window, with SYN-only and few-packet flows as evidence. CRITICAL.
"""
from __future__ import annotations

import numpy as np

from . import ports
from .common import Context, Finding, WindowView, addr_text, unique_counts, unique_sorted, fmt_int, fmt_pct, flow_filter, window_evidence

NAME = "scan"
SYN, ACK = 0x02, 0x10
# UDP services where one client legitimately talks to many hosts (resolvers, NTP, discovery).
_UDP_SWEEP_EXEMPT = {53, 123, 137, 443, 853, 1900, 5353}


def analyze(view: WindowView, ctx: Context, state: dict) -> list[Finding]:
    if not view.count:
        return []
    per_minute = max(1.0, view.seconds / 60.0)  # thresholds are per 60 s
    port_threshold = ctx["analysis.scan_threshold"] * per_minute
    host_threshold = ctx["analysis.sweep_threshold"] * per_minute
    proto = view["protocol"]
    sport = view["src_port"].astype(np.int64)
    dport = view["dst_port"].astype(np.int64)
    # Probes go to a service port; replies (from a low port back to an ephemeral one) are not probes.
    reply = (sport < 1024) & (dport >= 1024)
    probe = ((proto == 6) | (proto == 17) | (proto == 132)) & ~reply
    if not probe.any():
        return []
    src_ids, src_u = view.factor("src_addr")
    dst_ids, dst_u = view.factor("dst_addr")
    idx = np.flatnonzero(probe)
    s, d, p = src_ids[idx], dst_ids[idx], dport[idx]
    flags = view["tcp_flags"][idx]
    few = view["packets"][idx] <= 2
    syn_only = (proto[idx] == 6) & ((flags & (SYN | ACK)) == SYN)
    nd = len(dst_u)
    findings = []

    # Vertical: unique (src, dst, port) triples, counted per (src, dst).
    triple = (s * nd + d) * 65536 + p
    uniq_triple = unique_sorted(triple)
    pair, port_counts = unique_counts(uniq_triple // 65536)
    hot = port_counts >= port_threshold
    by_src: dict[int, list[tuple[int, int]]] = {}
    for pr, cnt in zip(pair[hot].tolist(), port_counts[hot].tolist()):
        by_src.setdefault(pr // nd, []).append((pr % nd, cnt))
    for si, hosts in by_src.items():
        hosts.sort(key=lambda h: (-h[1], h[0]))
        di, nports = hosts[0]
        rows = (s == si) & (d == di)
        findings.append(_vertical(view, ctx, si, di, src_u, dst_u, nports, len(hosts), p[rows], few[rows],
                                  syn_only[rows]))

    # Horizontal: unique (src, port, dst) triples, counted per (src, port).
    triple = (s * 65536 + p) * nd + d
    uniq_triple = unique_sorted(triple)
    sp, host_counts = unique_counts(uniq_triple // nd)
    for key, cnt in zip(sp[host_counts >= host_threshold].tolist(), host_counts[host_counts >= host_threshold].tolist()):
        si, port = key // 65536, key % 65536
        rows = (s == si) & (p == port)
        proto_main = int(np.bincount(proto[idx][rows]).argmax())
        n = int(rows.sum())
        few_share = float(few[rows].mean())
        syn_share = float(syn_only[rows].mean())
        if proto_main == 6 and max(few_share, syn_share) < 0.5:
            continue  # many full TCP sessions to one service: a busy client or proxy, not a sweep
        if proto_main != 6 and (port in _UDP_SWEEP_EXEMPT or few_share < 0.8):
            continue
        findings.append(_sweep(view, ctx, si, src_u, port, proto_main, cnt, n, few_share, syn_share))
    return findings


def _who(ctx: Context, text: str) -> str:
    return text if ctx.is_local_text(text) else f"{text} (outside your networks)"


def _vertical(view, ctx, si, di, src_u, dst_u, nports, nhosts, port_col, few, syn_only) -> Finding:
    src, dst = addr_text(src_u[si]), addr_text(dst_u[di])
    secs = view.seconds
    flows = len(port_col)
    few_share, syn_share = float(few.mean()), float(syn_only.mean())
    lo, hi = int(port_col.min()), int(port_col.max())
    others = f" (and {nhosts - 1} more hosts)" if nhosts > 1 else ""
    desc = (f"{_who(ctx, src)} contacted {fmt_int(nports)} ports on {_who(ctx, dst)}{others} in {secs:g} s "
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
    desc = (f"{_who(ctx, src)} contacted {fmt_int(nhosts)} hosts on port {port} ({service}) in {secs:g} s "
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
