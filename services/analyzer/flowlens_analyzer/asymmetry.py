"""Flow asymmetry: with several exporters, an inside prefix whose outbound traffic is seen via one
exporter and its return traffic via another (asymmetric routing; breaks stateful firewalls and NAT).
"""
from __future__ import annotations

import numpy as np

from flowmodel import addr

from .common import Context, Finding, WindowView, addr_text, factorize_addr, mask_prefix, flow_filter, window_evidence
from .wording import fmt_bytes, fmt_pct

NAME = "asymmetry"


def analyze(view: WindowView, ctx: Context, state: dict) -> list[Finding]:
    dominant = ctx["analysis.asymmetry_dominant_share"]  # share of a direction's bytes that makes an exporter "the" path
    min_flows = ctx["analysis.asymmetry_min_flows"]      # flows per direction before a prefix is judged
    if view.count < 2 * min_flows:
        return []
    exp_ids, exp_u = view.factor("exporter")
    if len(exp_u) < 2:
        return []
    src_local = view.local("src_addr", ctx)
    dst_local = view.local("dst_addr", ctx)
    out_rows = np.flatnonzero(src_local & ~dst_local)
    in_rows = np.flatnonzero(dst_local & ~src_local)
    if len(out_rows) < min_flows or len(in_rows) < min_flows:
        return []
    p4, p6 = ctx["analysis.anomaly_prefix_v4"], ctx["analysis.anomaly_prefix_v6"]
    # Mask the unique addresses (far fewer than flows), then give each row its prefix id.
    src_ids, src_u = view.factor("src_addr")
    dst_ids, dst_u = view.factor("dst_addr")
    masked = mask_prefix(np.concatenate([src_u, dst_u]), p4, p6)
    pid, pref_u = factorize_addr(masked)
    pref_ids = np.concatenate([pid[src_ids[out_rows]], pid[len(src_u) + dst_ids[in_rows]]])
    n_out = len(out_rows)
    E, P = len(exp_u), len(pref_u)
    b = view["bytes"].astype(np.float64)

    def matrix(pids, rows):
        flat = pids * E + exp_ids[rows]
        return (np.bincount(flat, weights=b[rows], minlength=P * E).reshape(P, E),
                np.bincount(pids, minlength=P))

    out_m, out_n = matrix(pref_ids[:n_out], out_rows)
    in_m, in_n = matrix(pref_ids[n_out:], in_rows)
    out_tot, in_tot = out_m.sum(1), in_m.sum(1)
    a, r = out_m.argmax(1), in_m.argmax(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out_share = out_m[np.arange(P), a] / out_tot
        in_share = in_m[np.arange(P), r] / in_tot
        in_via_a = in_m[np.arange(P), a] / in_tot
    hit = ((out_n >= min_flows) & (in_n >= min_flows) & (a != r) & (out_share >= dominant)
           & (in_share >= dominant) & (in_via_a < 1 - dominant))
    findings = []
    for p in np.flatnonzero(hit).tolist():
        prefix = addr.prefix_text(bytes(pref_u[p]), p4, p6)
        gw_out, gw_in = addr_text(exp_u[a[p]]), addr_text(exp_u[r[p]])
        oif = _main_if(view, out_rows[(pref_ids[:n_out] == p) & (exp_ids[out_rows] == a[p])], "output_if")
        iif = _main_if(view, in_rows[(pref_ids[n_out:] == p) & (exp_ids[in_rows] == r[p])], "input_if")
        desc = (f"Traffic from {prefix} exits via exporter {gw_out}{oif} ({fmt_pct(out_share[p])} of "
                f"{fmt_bytes(out_tot[p])}) but returns via exporter {gw_in}{iif} ({fmt_pct(in_share[p])} of "
                f"{fmt_bytes(in_tot[p])}) — asymmetric routing")
        findings.append(Finding(
            NAME, prefix, "WARNING", f"Asymmetric routing for {prefix}", desc,
            f"Check the routing tables and BGP/IGP preferences on {gw_out} and {gw_in}; stateful firewalls and NAT "
            f"drop asymmetric flows",
            window_evidence(view, outbound_exporter=gw_out, return_exporter=gw_in, outbound_share=round(float(out_share[p]), 3),
                            return_share=round(float(in_share[p]), 3), outbound_bytes=int(out_tot[p]),
                            return_bytes=int(in_tot[p])),
            flow_filter(view, addr=prefix),
            figures={"out": round(float(out_share[p]), 1), "in": round(float(in_share[p]), 1)}))
    return findings


def _main_if(view: WindowView, rows: np.ndarray, column: str) -> str:
    if not len(rows):
        return ""
    vals = view[column][rows]
    uniq, counts = np.unique(vals, return_counts=True)
    v = int(uniq[int(np.argmax(counts))])
    return f" interface {v}" if v else ""
