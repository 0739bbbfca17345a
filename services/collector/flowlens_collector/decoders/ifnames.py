"""Interface names from v9/IPFIX options data: interfaceName (IE 82) and interfaceDescription (IE 83)
keyed by ingressInterface (IE 10) / egressInterface (IE 14), as a scope or an option field, or by a
v9 "Interface" scope (type 2), as Cisco IOS-XR, Juniper and softflowd send them.

Pure parts: ``layout`` says where a template's records hold those fields, ``records`` reads them,
and ``InterfaceTable`` keeps what each exporter told (bounded) and says which events to publish on
bus.TOPIC_INTERFACES (flowmodel.events.INTERFACE_EVENT_FIELDS, source "options").
"""
from __future__ import annotations

import functools
import struct

from flowmodel.events import INTERFACE_NAME_MAX, INTERFACES_PER_EVENT
from flowmodel.namesconf import exporter_text

from .fields import VARIABLE_LENGTH
from .netflow9 import SCOPE_IE_BASE

IE_INGRESS_INTERFACE, IE_EGRESS_INTERFACE = 10, 14
IE_INTERFACE_NAME, IE_INTERFACE_DESCRIPTION = 82, 83
V9_SCOPE_INTERFACE = SCOPE_IE_BASE + 2  # RFC 3954 scope field type 2: Interface (an ifIndex)
_U16 = struct.Struct(">H")


@functools.lru_cache(maxsize=512)
def layout(fields: tuple, scope_count: int) -> tuple[int, int, int] | None:
    """(index of the ifIndex field, of the name field, of the description field; -1 when absent)
    for an options template's ``fields`` ((ie, length, pen), ...), or None when its records name no
    interface. The ifIndex is taken from a scope field first (what the record is about), else from
    an ingress then an egress interface field."""
    def find(ies, among):
        for i in among:
            ie, length, pen = fields[i]
            if pen == 0 and ie in ies:
                return i
        return -1

    name = find((IE_INTERFACE_NAME,), range(len(fields)))
    description = find((IE_INTERFACE_DESCRIPTION,), range(len(fields)))
    if name < 0 and description < 0:
        return None
    ifindex = find((V9_SCOPE_INTERFACE, IE_INGRESS_INTERFACE, IE_EGRESS_INTERFACE), range(min(scope_count, len(fields))))
    if ifindex < 0:
        ifindex = find((IE_INGRESS_INTERFACE,), range(len(fields)))
    if ifindex < 0:
        ifindex = find((IE_EGRESS_INTERFACE,), range(len(fields)))
    if ifindex < 0 or not 1 <= fields[ifindex][1] <= 8:  # an integer of 1-8 bytes (never variable-length)
        return None
    return ifindex, name, description


def text(raw: bytes) -> str:
    """A fixed- or variable-length string field: up to its first NUL, UTF-8 (bad bytes replaced),
    trimmed, at most INTERFACE_NAME_MAX characters."""
    cut = raw.find(b"\0")
    if cut >= 0:
        raw = raw[:cut]
    return raw.decode("utf-8", "replace").strip()[:INTERFACE_NAME_MAX]


def records(fields: tuple, spot: tuple[int, int, int], body) -> list[tuple[int, str, str]]:
    """(ifindex, name, description) of each whole record of an options data set ``body`` whose
    template has ``fields`` and layout ``spot``. A truncated last record (or padding) is left out."""
    ifindex_at, name_at, descr_at = spot
    out = []
    mv = memoryview(body)
    pos, end = 0, len(body)
    while pos < end:
        values: dict[int, bytes] = {}
        start = pos
        for i, (_ie, length, _pen) in enumerate(fields):
            if length == VARIABLE_LENGTH:
                if pos >= end:
                    return out
                length = mv[pos]
                pos += 1
                if length == 255:
                    if pos + 2 > end:
                        return out
                    length = _U16.unpack_from(mv, pos)[0]
                    pos += 2
            if pos + length > end:
                return out  # padding or a truncated record
            if i == ifindex_at or i == name_at or i == descr_at:
                values[i] = bytes(mv[pos:pos + length])
            pos += length
        if pos == start:
            return out
        out.append((int.from_bytes(values[ifindex_at], "big"),
                    text(values[name_at]) if name_at >= 0 else "",
                    text(values[descr_at]) if descr_at >= 0 else ""))
    return out


class InterfaceTable:
    """What options data told of each exporter's interfaces: exporter text -> {ifindex: (name,
    description)}. At most ``max_interfaces`` per exporter and ``max_exporters`` exporters; what a
    bound refuses is counted in ``dropped``. ``due`` gives the events to publish: an exporter's
    table when it changed, and every table again each ``republish_ms``."""

    def __init__(self, max_interfaces: int = INTERFACES_PER_EVENT, max_exporters: int = 1000,
                 republish_ms: int = 300_000):
        self.max_interfaces = min(max_interfaces, INTERFACES_PER_EVENT)  # one event carries a whole table
        self.max_exporters = max_exporters
        self.republish_ms = republish_ms
        self.tables: dict[str, dict[int, tuple[str, str]]] = {}
        self.changed: set[str] = set()
        self.published_at: dict[str, int] = {}
        self.dropped = 0

    def learn(self, host: str, rows: list[tuple[int, str, str]]) -> int:
        """Rows of one options data set from exporter ``host``; returns how many the bounds refused."""
        if not rows:
            return 0
        try:
            exporter = exporter_text(host)
        except ValueError:
            exporter = str(host)
        table = self.tables.get(exporter)
        if table is None:
            if len(self.tables) >= self.max_exporters:
                self.dropped += len(rows)
                return len(rows)
            table = self.tables[exporter] = {}
        refused = 0
        for ifindex, name, description in rows:
            old = table.get(ifindex)
            if old == (name, description):
                continue
            if old is None and len(table) >= self.max_interfaces:
                refused += 1
                continue
            table[ifindex] = (name, description)
            self.changed.add(exporter)
        self.dropped += refused
        return refused

    def republish_all(self) -> None:
        """Every table goes out with the next ``due`` (a store subscribed again)."""
        self.changed.update(self.tables)

    def due(self, now_ms: int) -> list[dict]:
        """Event bodies (without the envelope) for the tables to publish now; marks them published."""
        stale = now_ms - self.republish_ms
        names = sorted(e for e in self.tables if e in self.changed or self.published_at.get(e, 0) <= stale)
        events = []
        for exporter in names:
            table = self.tables[exporter]
            events.append({"exporter": exporter, "origin": "options", "complete": False, "learnt_at": now_ms,
                           "interfaces": [{"ifindex": i, "name": n, "description": d, "speed_bps": 0}
                                          for i, (n, d) in sorted(table.items())]})
            self.published_at[exporter] = now_ms
        self.changed.clear()
        return events
