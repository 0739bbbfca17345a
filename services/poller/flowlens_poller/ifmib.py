"""The poller's pure core: which IF-MIB columns it walks, how a column-parallel GETBULK walk moves
on (``TableWalk``: the next OIDs to ask for, what a response adds, when a column is done) and how
the walked columns become one exporter's interface list and its event on the bus
(flowmodel.events.INTERFACE_EVENT_FIELDS). No SNMP library here: the shell (snmp.py) turns the
library's varbinds into (OID tuple, bytes | int | None) before they reach these functions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from flowmodel.events import INTERFACE_NAME_MAX, INTERFACES_PER_EVENT

OID = tuple[int, ...]

# IF-MIB::ifXTable (RFC 2863), the names and speeds worth having, and IF-MIB::ifTable's older
# ifDescr and ifSpeed, for agents without ifXTable (or rows it lacks)
IF_NAME: OID = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)
IF_HIGH_SPEED: OID = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15)   # Mbit/s
IF_ALIAS: OID = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18)
IF_DESCR: OID = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)
IF_SPEED: OID = (1, 3, 6, 1, 2, 1, 2, 2, 1, 5)             # bit/s, 4294967295 at or above 4.3 Gbit/s
COLUMNS: dict[str, OID] = {"name": IF_NAME, "alias": IF_ALIAS, "high_speed": IF_HIGH_SPEED,
                           "descr": IF_DESCR, "speed": IF_SPEED}

Value = bytes | str | int | None   # None: an SNMP exception value (noSuchObject, endOfMibView, ...)


@dataclass
class TableWalk:
    """A walk of several table columns at once, each up to ``max_rows`` rows: ask for ``next_oids()``
    in one GETBULK, hand the response's varbinds (repetitions of the asked columns, in order) to
    ``absorb``, until ``done``. A column ends when the agent leaves its subtree, sends an exception
    value, or an index that does not increase (a broken agent must not keep the walk going); past
    ``max_rows`` it ends too and counts as ``cut``."""

    columns: dict[str, OID]
    max_rows: int
    rows: dict[str, dict[int, Value]] = field(default_factory=dict)
    last: dict[str, OID] = field(default_factory=dict)
    finished: set = field(default_factory=set)
    cut: set = field(default_factory=set)       # columns that had more than max_rows rows
    not_increasing: set = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rows = {name: {} for name in self.columns}
        self.last = dict(self.columns)

    @property
    def done(self) -> bool:
        return len(self.finished) == len(self.columns)

    def next_oids(self) -> list[tuple[str, OID]]:
        """(column, OID to ask the successors of) for every column still walking, in a fixed order."""
        return [(name, self.last[name]) for name in self.columns if name not in self.finished]

    def absorb(self, asked: list[str], varbinds: list[tuple[OID, Value]]) -> int:
        """Take a GETBULK response to ``asked`` (column names, in request order); returns the rows
        taken. An empty response ends every asked column (the agent has nothing after them)."""
        if not varbinds:
            self.finished.update(asked)
            return 0
        taken = 0
        for i, (oid, value) in enumerate(varbinds):
            name = asked[i % len(asked)]
            if name in self.finished:
                continue
            prefix = self.columns[name]
            oid = tuple(oid)
            if value is None or len(oid) != len(prefix) + 1 or oid[:len(prefix)] != prefix:
                self.finished.add(name)  # endOfMibView, or the next column / table: this one is over
                continue
            if oid <= self.last[name]:
                self.not_increasing.add(name)
                self.finished.add(name)
                continue
            if len(self.rows[name]) >= self.max_rows:
                self.cut.add(name)
                self.finished.add(name)
                continue
            self.rows[name][oid[-1]] = value
            self.last[name] = oid
            taken += 1
        return taken


def text(value: Value) -> str:
    """An OCTET STRING (DisplayString) as text: UTF-8 where it is, else each byte as one character;
    trailing NULs and blanks dropped; at most INTERFACE_NAME_MAX characters."""
    if value is None or isinstance(value, int):
        return ""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            value = value.decode("latin-1")
    return value.rstrip("\x00 \t\r\n").lstrip()[:INTERFACE_NAME_MAX]


def _number(value: Value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def speed_bps(high_speed_mbps: Value, speed: Value) -> int:
    """ifHighSpeed x 10^6 where the agent gives one above 0 (exact past 4.3 Gbit/s, where ifSpeed
    stops at 2^32-1), else ifSpeed (links under 1 Mbit/s have ifHighSpeed 0), else 0: unknown."""
    high = _number(high_speed_mbps)
    return high * 1_000_000 if high else _number(speed)


def interfaces_from_columns(rows: dict[str, dict[int, Value]], max_interfaces: int) -> tuple[list[dict], int]:
    """The walked columns as the interface list of an interfaces event, lowest ifIndex first, and
    how many interfaces were left out past ``max_interfaces`` (and INTERFACES_PER_EVENT). An
    interface is every ifIndex any column has; its name is ifName, else ifDescr; its description
    ifAlias; its speed per ``speed_bps``."""
    get = lambda column: rows.get(column) or {}
    names, aliases, descrs = get("name"), get("alias"), get("descr")
    high, speed = get("high_speed"), get("speed")
    indexes = sorted({i for column in rows.values() for i in column if isinstance(i, int) and 0 < i < 1 << 31})
    keep = min(max_interfaces, INTERFACES_PER_EVENT)
    out = [{"ifindex": i, "name": text(names.get(i)) or text(descrs.get(i)), "description": text(aliases.get(i)),
            "speed_bps": speed_bps(high.get(i), speed.get(i))} for i in indexes[:keep]]
    return out, max(0, len(indexes) - keep)


def interface_event(exporter: str, interfaces: list[dict], learnt_at_ms: int) -> dict:
    """One exporter's whole table from its SNMP agent, per INTERFACE_EVENT_FIELDS."""
    return {"exporter": exporter, "origin": "snmp", "interfaces": interfaces, "complete": True,
            "learnt_at": learnt_at_ms}
