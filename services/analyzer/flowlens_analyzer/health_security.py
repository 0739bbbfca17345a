"""Peers the store refused at the CURVE handshake (flowmodel.curve; the store's health event lists
them as ``refused_peers``): one WARNING advisory per address refused within the last REFUSED_RECENT_MS,
naming the address, the sockets it knocked on and why it was refused."""
from __future__ import annotations

from typing import Any, Iterable

from .common import Finding
from .wording import fmt_time, plural

NAME = "health"
REFUSED_RECENT_MS = 600_000  # an address refused within the last 10 minutes is reported


def refused_peer_findings(store_events: Iterable[dict[str, Any]], now_ms: int) -> list[Finding]:
    findings = []
    for ev in store_events:
        c = ev.get("counters") if isinstance(ev.get("counters"), dict) else {}
        peers = c.get("refused_peers")
        for p in peers if isinstance(peers, list) else []:
            if not isinstance(p, dict) or not isinstance(p.get("last_at"), int) or now_ms - p["last_at"] > REFUSED_RECENT_MS:
                continue
            address, count = str(p.get("address") or "?"), int(p.get("count") or 0)
            sockets = p.get("sockets") if isinstance(p.get("sockets"), dict) else {}
            where = ", ".join(f"{name} ({n})" for name, n in sorted(sockets.items())) or "?"
            findings.append(Finding(
                NAME, f"refused peer {address}", "WARNING", "Unauthorised peer refused by the store",
                f"{address} was refused at the CURVE handshake {plural(count, 'time')}, last at "
                f"{fmt_time(p['last_at'])}, on {where}: {p.get('reason') or 'not authorised'}",
                "If it is one of your collectors or clients, put its public key (NAME.key) in the store's "
                "security.authorized_keys directory and give it the store's public key (security.store_public_key); "
                "otherwise block the address: nothing it sent was accepted",
                {"store": str(ev.get("source") or ""), "address": address, "refused": count, "sockets": dict(sockets),
                 "reason": str(p.get("reason") or ""), "first_at": p.get("first_at"), "last_at": p["last_at"]},
                {"since": int(p.get("first_at") or p["last_at"]), "until": now_ms}, figures={}))
    return findings
