"""DNS volume: queries per second per source (UDP and TCP to analysis.dns_ports), and large DNS
responses leaving the local networks (possible reflection/amplification).
"""
from __future__ import annotations

import numpy as np

from .common import Context, Finding, WindowView, addr_text, flow_filter, window_evidence
from .wording import plural, fmt_bytes, fmt_int

NAME = "dns"
MAX_FINDINGS = 20


def _dns_port_mask(ctx: Context) -> np.ndarray:
    m = np.zeros(65536, dtype=bool)
    m[[int(p) for p in ctx["analysis.dns_ports"]]] = True
    return m


def analyze(view: WindowView, ctx: Context, state: dict) -> list[Finding]:
    if not view.count:
        return []
    is_dns = _dns_port_mask(ctx)
    proto = view["protocol"]
    transport = (proto == 6) | (proto == 17)
    query = transport & is_dns[view["dst_port"]] & ~is_dns[view["src_port"]]
    response = transport & is_dns[view["src_port"]] & ~is_dns[view["dst_port"]]
    return _volume(view, ctx, query) + _reflection(view, ctx, response)


def _volume(view: WindowView, ctx: Context, query: np.ndarray) -> list[Finding]:
    rows = np.flatnonzero(query)
    if not len(rows):
        return []
    src_ids, src_u = view.factor("src_addr")
    # A UDP flow's packets are its queries; a TCP flow is counted as one query per 2 packets.
    pk = view["packets"][rows].astype(np.float64)
    queries = np.where(view["protocol"][rows] == 17, pk, np.ceil(pk / 2))
    per_src = np.bincount(src_ids[rows], weights=queries, minlength=len(src_u))
    qps = per_src / view.seconds
    threshold = ctx["analysis.dns_qps_threshold"]
    hot = np.flatnonzero(qps >= threshold)
    hot = hot[np.lexsort((hot, -qps[hot]))][:MAX_FINDINGS]
    findings = []
    dst_ids, dst_u = view.factor("dst_addr")
    for si in hot.tolist():
        mine = rows[src_ids[rows] == si]
        q = queries[src_ids[rows] == si]
        servers, inv = np.unique(dst_ids[mine], return_inverse=True)
        per_server = np.bincount(inv, weights=q)
        main = addr_text(dst_u[int(servers[int(np.argmax(per_server))])])
        src = addr_text(src_u[si])
        rate = float(qps[si])
        who = ctx.described(src)
        desc = (f"{who} is generating {fmt_int(rate)} DNS queries/sec ({fmt_int(per_src[si])} in {view.seconds:g} s, "
                f"mostly to {main}, {plural(len(servers), 'server')} in all) — possible loop or misconfigured resolver")
        findings.append(Finding(
            NAME, src, "WARNING", f"{fmt_int(rate)} DNS queries/s from {src}", desc,
            f"Check the resolver configuration and forwarding of {src} (a forwarding loop or a process stuck retrying)",
            window_evidence(view, queries=int(per_src[si]), queries_per_second=round(rate, 1), main_server=main,
                            servers=int(len(servers)), threshold=threshold),
            flow_filter(view, src=src, port=int(view["dst_port"][mine[0]])),
            figures={"qps": rate}))
    return findings


def _reflection(view: WindowView, ctx: Context, response: np.ndarray) -> list[Finding]:
    src_local = view.local("src_addr", ctx)
    dst_local = view.local("dst_addr", ctx)
    rows = np.flatnonzero(response & src_local & ~dst_local)
    if not len(rows):
        return []
    src_ids, src_u = view.factor("src_addr")
    dst_ids, _dst_u = view.factor("dst_addr")
    b = view["bytes"][rows].astype(np.float64)
    per_src = np.bincount(src_ids[rows], weights=b, minlength=len(src_u))
    limit = ctx["analysis.dns_response_bytes"] * max(1.0, view.seconds / 60.0)
    hot = np.flatnonzero(per_src >= limit)
    hot = hot[np.lexsort((hot, -per_src[hot]))][:MAX_FINDINGS]
    findings = []
    for si in hot.tolist():
        mine = rows[src_ids[rows] == si]
        targets = len(np.unique(dst_ids[mine]))
        pk = float(view["packets"][mine].sum())
        avg = per_src[si] / max(pk, 1)
        src = addr_text(src_u[si])
        desc = (f"{src} sent {fmt_bytes(per_src[si])} of DNS responses to {fmt_int(targets)} hosts on the internet in "
                f"{view.seconds:g} s (average response {avg:.0f} bytes) — possible DNS reflection/amplification")
        findings.append(Finding(
            NAME, f"reflection:{src}", "CRITICAL" if targets >= 10 else "WARNING",
            f"DNS responses leaving from {src}", desc,
            f"Make sure {src} does not answer recursive queries from the internet; rate-limit responses (RRL)",
            window_evidence(view, bytes=int(per_src[si]), targets=int(targets), packets=int(pk),
                            average_response_bytes=round(avg, 1)),
            flow_filter(view, src=src, port=int(view["src_port"][mine[0]])),
            figures={"bytes": float(per_src[si]), "targets": float(targets)}))
    return findings
