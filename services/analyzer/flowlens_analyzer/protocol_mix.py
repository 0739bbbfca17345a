"""Protocol mix: insecure or unexpected protocols (cleartext logins, file transfer, management
protocols crossing the boundary, Windows services reaching outside networks), and sudden shifts in
the share of traffic per IP protocol.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowmodel.protocol import protocol_name

from .common import Context, Finding, WindowView, addr_text, factorize_addr, flow_filter, window_evidence
from .wording import plural, fmt_bytes, fmt_int, fmt_pct

NAME = "protocol_mix"
TCP, UDP = 6, 17
RST, ACK = 0x04, 0x10

# where: "any" = flag wherever seen; "boundary" = one side inside, the other outside;
# "outside" = an inside host reaching an outside server (or the reverse, which is worse).


@dataclass(frozen=True)
class Rule:
    name: str
    label: str
    ports: tuple[int, ...]
    protocols: tuple[int, ...]
    where: str
    severity: str
    action: str


RULES = (
    Rule("telnet", "Telnet", (23,), (TCP,), "any", "WARNING", "consider migrating to SSH"),
    Rule("ftp", "FTP", (21,), (TCP,), "any", "WARNING", "move file transfers to SFTP or FTPS"),
    Rule("tftp", "TFTP", (69,), (UDP,), "any", "WARNING", "restrict TFTP to the management network or use SCP/SFTP"),
    Rule("rsh", "rlogin/rsh", (513, 514), (TCP,), "any", "WARNING", "replace rlogin/rsh with SSH"),
    Rule("snmp", "SNMP", (161,), (UDP, TCP), "boundary", "WARNING",
         "keep SNMP inside the management network and move to SNMPv3"),
    Rule("pop3", "POP3 in clear", (110,), (TCP,), "any", "INFO", "use POP3S (995) or STARTTLS"),
    Rule("imap", "IMAP in clear", (143,), (TCP,), "any", "INFO", "use IMAPS (993) or STARTTLS"),
    Rule("ldap", "LDAP in clear", (389,), (TCP, UDP), "any", "INFO", "use LDAPS (636) or StartTLS"),
    Rule("smb", "SMB", (445,), (TCP,), "outside", "WARNING", "block SMB (445) at the edge"),
    Rule("rdp", "RDP", (3389,), (TCP, UDP), "outside", "WARNING", "put RDP behind a VPN or a bastion host"),
    Rule("netbios", "NetBIOS", (137, 138, 139), (TCP, UDP), "outside", "WARNING", "block NetBIOS (137-139) at the edge"),
)

_TABLES = None
MAX_CLIENTS_PER_RULE = 20
SHIFT_MIN_RUNS = 5
SHIFT_POINTS = 0.30  # a protocol's share moving this many percentage points is a shift
SHIFT_ALPHA = 0.2  # weight of the newest window in the baseline share
SHIFT_MIN_BYTES = 1_000_000  # a window with less traffic than this is too small for a shift to mean anything


def _tables() -> np.ndarray:
    """(256, 65536) would be large; a (3, 65536) table: row 0 TCP, 1 UDP, 2 other -> rule index + 1."""
    global _TABLES
    if _TABLES is None:
        t = np.zeros((3, 65536), dtype=np.uint8)
        for i, rule in enumerate(RULES, 1):
            for proto in rule.protocols:
                t[0 if proto == TCP else 1, list(rule.ports)] = i
        _TABLES = t
    return _TABLES


def analyze(view: WindowView, ctx: Context, state: dict) -> list[Finding]:
    if not view.count:
        return []
    findings = _insecure(view, ctx)
    findings += _shift(view, state)
    return findings


def _insecure(view: WindowView, ctx: Context) -> list[Finding]:
    proto = view["protocol"]
    row = np.where(proto == TCP, 0, np.where(proto == UDP, 1, 2))
    table = _tables()
    rule_dst = table[row, view["dst_port"]]
    rule_src = table[row, view["src_port"]]
    # The service side is the destination when its port is in the table, else the source (replies).
    to_service = rule_dst > 0
    rule = np.where(to_service, rule_dst, rule_src)
    # Only connections that carried something: a TCP flow of bare SYNs (a probe) or of RST/ACK only (a
    # refused connection) is no use of the protocol; scans would otherwise raise every rule they touch.
    # Flags 0 means the exporter does not report them: count those.
    flags = view["tcp_flags"]
    probe_or_refused = (proto == TCP) & (flags != 0) & (((flags & ACK) == 0) | ((flags & ~np.uint8(RST | ACK)) == 0))
    hit = np.flatnonzero((rule > 0) & ~probe_or_refused)
    if not len(hit):
        return []
    src_local = view.local("src_addr", ctx)[hit]
    dst_local = view.local("dst_addr", ctx)[hit]
    svc = to_service[hit]
    client_local = np.where(svc, src_local, dst_local)
    server_local = np.where(svc, dst_local, src_local)
    rule_hit = rule[hit]
    findings = []
    for i, r in enumerate(RULES, 1):
        m = rule_hit == i
        if r.where == "boundary":
            m &= client_local != server_local
        elif r.where == "outside":
            m &= client_local != server_local
        if not m.any():
            continue
        rows = hit[m]
        svc_r = svc[m]
        src_a, dst_a = view.addresses("src_addr", rows), view.addresses("dst_addr", rows)
        client_ids, client_u = factorize_addr(np.where(svc_r, src_a, dst_a))
        server_ids, server_u = factorize_addr(np.where(svc_r, dst_a, src_a))
        port_r = np.where(svc_r, view["dst_port"][rows], view["src_port"][rows])
        bytes_ = view["bytes"][rows].astype(np.float64)
        client_bytes = np.bincount(client_ids, weights=bytes_)
        client_flows = np.bincount(client_ids)
        order = np.lexsort((np.arange(len(client_u)), -client_bytes))[:MAX_CLIENTS_PER_RULE]
        for ci in order.tolist():
            crows = client_ids == ci
            srv, srv_inv = np.unique(server_ids[crows], return_inverse=True)
            srv_bytes = np.bincount(srv_inv, weights=bytes_[crows])
            server = addr_text(server_u[int(srv[int(np.argmax(srv_bytes))])])
            findings.append(_finding(view, ctx, r, addr_text(client_u[ci]), server, len(srv), float(client_bytes[ci]),
                                     int(client_flows[ci]), int(port_r[crows][0])))
    return findings


def _finding(view, ctx, r: Rule, client, server, nservers, nbytes, nflows, port) -> Finding:
    client_in, server_in = ctx.is_local_text(client), ctx.is_local_text(server)
    c = ctx.described(client)
    s = ctx.described(server)
    if client_in and not server_in:
        where = f"from {c} to the internet ({server})"
    elif server_in and not client_in:
        where = f"from the internet ({client}) to {s}"
    else:
        where = f"from {c} to {s}"
    more = f" and {plural(nservers - 1, 'other server')}" if nservers > 1 else ""
    severity = r.severity
    if r.where == "outside" and server_in and not client_in:
        severity = "CRITICAL"  # an inside Windows service reachable from outside
    desc = (f"{r.label} traffic (port {port}) detected {where}{more}: {fmt_int(nflows)} flows, "
            f"{fmt_bytes(nbytes)} in {view.seconds:g} s")
    action = r.action[0].upper() + r.action[1:]
    return Finding(
        NAME, f"{r.name}:{client}", severity, f"{r.label} from {client}", f"{desc} — {r.action}", action,
        window_evidence(view, protocol=r.label, port=port, client=client, server=server, servers=nservers,
                        flows=nflows, bytes=int(nbytes)),
        flow_filter(view, addr=client, port=port),
        figures={"servers": float(nservers), "flows": float(nflows)})


def _shift(view: WindowView, state: dict) -> list[Finding]:
    """Sudden shifts of the byte share per IP protocol against an exponentially weighted baseline."""
    proto = view["protocol"]
    by_proto = np.bincount(proto, weights=view["bytes"].astype(np.float64), minlength=256)
    total = by_proto.sum()
    if total <= 0:
        return []
    share = by_proto / total
    base = state.get("share")
    runs = state.get("runs", 0)
    findings = []
    if base is not None and runs >= SHIFT_MIN_RUNS and total >= SHIFT_MIN_BYTES:
        moved = share - base
        for p in np.flatnonzero(np.abs(moved) >= SHIFT_POINTS).tolist():
            name = protocol_name(p)
            verb = "rose" if moved[p] > 0 else "fell"
            desc = (f"The {name} share of traffic {verb} from {fmt_pct(base[p])} to {fmt_pct(share[p])} "
                    f"of {fmt_bytes(total)} in {view.seconds:g} s — a sudden shift in the protocol mix")
            findings.append(Finding(
                NAME, f"shift:{name}", "WARNING", f"{name} share {verb} to {fmt_pct(share[p])}", desc,
                f"Look at the top {name} talkers in this window for a new application, a flood or a tunnel",
                window_evidence(view, protocol=name, share=round(float(share[p]), 4),
                                baseline_share=round(float(base[p]), 4), bytes=int(total)),
                flow_filter(view, protocol=int(p)),
                figures={"share": round(float(share[p]), 2)}))
    state["share"] = share if base is None else (1 - SHIFT_ALPHA) * base + SHIFT_ALPHA * share
    state["runs"] = runs + 1
    return findings
