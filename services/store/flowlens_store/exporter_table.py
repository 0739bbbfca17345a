"""The store's copy of each collector's exporter table, from its health events; and its own count
of flows per exporter address, bounded.

A collector's health event carries either its whole exporter table (``exporters_full`` true: the
first event of a run, then about once a minute, the last one, and when a store subscribes) or only
the rows that changed since its previous event. ``merge_health`` folds an event into the latest
one kept for its source, so the store always holds (and persists) a whole table per collector,
and a quiet exporter keeps its row between full tables. A collector that restarted under the same
id replaces its old table with its new one: one row per (collector, exporter, domain).
"""
from __future__ import annotations

from flowmodel import addr

OTHER = "other"           # how the addresses beyond the bound are named in the exporters reply
OTHER_KEY = b"\xff" * 16  # their key in the per-address table (no exporter has this address)
ADDRESSES_PER_EXPORTER = 4  # the per-address table holds this many times collector.max_exporters


def _key(row: dict) -> tuple:
    return str(row.get("exporter", "")), row.get("observation_domain")


def _run(event: dict | None):
    p = (event or {}).get("process")
    return p.get("started_at") if isinstance(p, dict) else None


def merge_health(prev: dict | None, event: dict) -> dict:
    """The health to keep for ``event``'s source (a new map): ``event`` when it carries the whole table
    (or is not a collector's, or follows another run of the source), else ``event`` with the rows
    of ``prev`` it does not carry. The result says ``exporters_full`` true: it is the whole table."""
    if event.get("exporters_full", True) is not False or not isinstance(prev, dict) or \
            _run(prev) != _run(event) or not isinstance(prev.get("exporters"), list):
        return dict(event)
    rows = {_key(r): r for r in prev["exporters"] if isinstance(r, dict)}
    for r in event.get("exporters") or []:
        if isinstance(r, dict):
            rows[_key(r)] = r
    return {**event, "exporters": list(rows.values()), "exporters_full": True}


def add_flows(table: dict[bytes, list[int]], keys: list, counts: list, t: int, max_addresses: int) -> None:
    """Count ``counts`` flows for the exporter addresses ``keys`` (16 bytes each) in ``table``
    (address -> [flows, last seen ms]); an address new once the table holds ``max_addresses`` is
    counted under OTHER_KEY, so a flood of sources adds one row, not one per source."""
    for k, c in zip(keys, counts):
        k = bytes(k)
        e = table.get(k)
        if e is None:
            if len(table) >= max_addresses:
                k = OTHER_KEY
                e = table.get(k)
            if e is None:
                e = table[k] = [0, 0]
        e[0] += c
        e[1] = t


def address_text(key: bytes) -> str:
    """An address of the per-address table as the exporters reply names it."""
    return OTHER if key == OTHER_KEY else addr.to_text(key)
