"""Top talkers: the hosts with the largest share of the window's bytes (sent plus received), with
their rate, main peer and service; INFO, plus an INFO when the top talker changes.
"""
from __future__ import annotations

import numpy as np

from . import ports
from .common import Context, Finding, WindowView, addr_text, addr_words, factorize_addr, flow_filter, window_evidence
from .wording import fmt_bytes, fmt_pct, fmt_rate_bps

NAME = "top_talkers"


def window_bytes(view: WindowView) -> np.ndarray:
    """Each flow's bytes spread evenly over its lifetime, the part inside the window (float64, cached):
    a 30-min backup ending in this window counts 1/30 of its bytes in a 60 s window, not all of them."""
    hit = view._cache.get("window_bytes")
    if hit is None:
        b = view["bytes"].astype(np.float64)
        start = view["time_start"].astype(np.int64)
        end = view["time_end"].astype(np.int64)
        life = end - start
        inside = end - np.maximum(start, view.start_ms)
        frac = np.where(life > 0, np.clip(inside, 0, None) / np.maximum(life, 1), 1.0)
        hit = b * np.minimum(frac, 1.0)
        view._cache["window_bytes"] = hit
    return hit


def host_bytes(view: WindowView, k: int) -> list[tuple[str, float]]:
    """The k hosts with most bytes sent + received, as (address text, bytes), largest first."""
    src_ids, src_u = view.factor("src_addr")
    dst_ids, dst_u = view.factor("dst_addr")
    b = window_bytes(view)
    sent = np.bincount(src_ids, weights=b, minlength=len(src_u))
    recv = np.bincount(dst_ids, weights=b, minlength=len(dst_u))
    # Candidates: the top k of each side; each candidate's total adds its bytes on the other side.
    cand_s = np.argsort(-sent, kind="stable")[:k]
    cand_d = np.argsort(-recv, kind="stable")[:k]
    totals: dict[bytes, float] = {}
    for idx, own, other_u, other in ((cand_s, sent, dst_u, recv), (cand_d, recv, src_u, sent)):
        uniq = src_u if own is sent else dst_u
        for i in idx.tolist():
            a = bytes(uniq[i])
            if a in totals:
                continue
            j = _find(other_u, uniq[i])
            totals[a] = float(own[i]) + (float(other[j]) if j is not None else 0.0)
    # A flow from a host to itself was counted on both sides: count it once.
    self_rows = np.flatnonzero(view.equal("src_addr", "dst_addr"))
    if len(self_rows):
        own = np.bincount(src_ids[self_rows], weights=b[self_rows], minlength=len(src_u))
        for i in np.flatnonzero(own).tolist():
            a = bytes(src_u[i])
            if a in totals:
                totals[a] -= float(own[i])
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [(addr_text(a), v) for a, v in ranked]


def _find(sorted_uniques: np.ndarray, value) -> int | None:
    """Index of value in an address-ordered unique ADDR array, or None."""
    if not len(sorted_uniques):
        return None
    hi, lo = addr_words(sorted_uniques)
    vh, vl = addr_words(np.array([value], dtype=sorted_uniques.dtype))
    i = int(np.searchsorted(hi, vh[0], side="left"))
    j = int(np.searchsorted(hi, vh[0], side="right"))
    k = i + int(np.searchsorted(lo[i:j], vl[0]))
    if k < j and lo[k] == vl[0]:
        return k
    return None


def analyze(view: WindowView, ctx: Context, state: dict) -> list[Finding]:
    if not view.count:
        return []
    total = float(window_bytes(view).sum())
    if total <= 0:
        return []
    ranked = host_bytes(view, ctx["analysis.top_talkers_count"])
    host, nbytes = ranked[0]
    share = nbytes / total
    findings = []
    listing = ", ".join(f"{h} {fmt_pct(v / total)}" for h, v in ranked)
    if share >= ctx["analysis.top_talker_share"]:
        peer, service, peer_bytes = _main_peer(view, host)
        bps = nbytes * 8 / view.seconds
        who = ctx.described(host)
        desc = (f"{who} is using {fmt_pct(share)} of total bandwidth ({fmt_rate_bps(bps)}), "
                f"mostly {service} {'to' if ctx.is_local_text(host) else 'with'} {peer}")
        findings.append(Finding(
            NAME, host, "INFO", f"Top talker {host} ({fmt_pct(share)})", desc,
            f"If {fmt_pct(share)} for {host} is unexpected, check what it is transferring with {peer} ({service})",
            window_evidence(view, share=round(share, 4), bytes=int(nbytes), total_bytes=int(total), bps=round(bps),
                            peer=peer, peer_bytes=int(peer_bytes), service=service, top_hosts=listing),
            flow_filter(view, addr=host),
            figures={"share": round(share, 2), "bps": bps}))
    # A change is news only between hosts that each held top_talker_share: the top of a flat mix changes
    # all the time.
    previous = state.get("top")
    if previous is not None and previous != host and share >= ctx["analysis.top_talker_share"]:
        state["changes"] = state.get("changes", 0) + 1
        findings.append(Finding(
            NAME, "change", "INFO", f"Top talker is now {host}",
            f"The top talker changed from {previous} to {host} ({fmt_pct(share)} of {fmt_bytes(total)} "
            f"in {view.seconds:g} s)",
            f"Check that the new top talker {host} is expected",
            window_evidence(view, previous=previous, current=host, share=round(share, 4), top_hosts=listing),
            flow_filter(view, addr=host),
            figures={"changes": float(state["changes"])}))
    state["top"] = host if share >= ctx["analysis.top_talker_share"] else None
    return findings


def _main_peer(view: WindowView, host: str) -> tuple[str, str, float]:
    """The host's peer with most bytes and the service (IANA name) of their traffic."""
    src_ids, src_u = view.factor("src_addr")
    dst_ids, dst_u = view.factor("dst_addr")
    from flowmodel import addr as _addr

    a = np.frombuffer(_addr.to_bytes(host), dtype=src_u.dtype)[0]
    si, di = _find(src_u, a), _find(dst_u, a)
    as_src = src_ids == si if si is not None else np.zeros(view.count, bool)
    as_dst = dst_ids == di if di is not None else np.zeros(view.count, bool)
    rows = np.flatnonzero(as_src | as_dst)
    peer_ids, peer_u = factorize_addr(np.where(as_src[rows], view.addresses("dst_addr", rows),
                                               view.addresses("src_addr", rows)))
    b = window_bytes(view)[rows]
    pb = np.bincount(peer_ids, weights=b)
    best = int(np.argmax(pb))
    peer = addr_text(peer_u[best])
    inv = peer_ids
    prow = rows[inv == best]
    svc_port = ports.service_port(view["src_port"][prow], view["dst_port"][prow])
    proto = view["protocol"][prow].astype(np.int64)
    sk, sinv = np.unique(proto * 65536 + svc_port, return_inverse=True)
    sb = np.bincount(sinv, weights=window_bytes(view)[prow])
    i = int(np.argmax(sb))
    top = int(sk[i])
    if len(sk) > 1 and sb[i] < 0.5 * sb.sum():  # no service dominates (a scan, many small services)
        from flowmodel.protocol import protocol_name

        return peer, f"{protocol_name(top // 65536)} on {len(sk):,} ports", float(pb[best])
    return peer, ports.service_name(top % 65536, top // 65536), float(pb[best])
