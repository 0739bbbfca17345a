"""sFlow interface counters (issue 17): the collectors' per-interval deltas (bus.TOPIC_IF_COUNTERS,
flowmodel.events.IF_COUNTER_ROW_FIELDS) summed per (exporter, ifIndex, minute) in SQLite, and the
``ifcounters`` query op answering an interface's own rates, errors, discards and speed per step.

``check_event`` turns an event into rows the writer's event transaction adds (``save``); ``prune``
keeps storage.ifcounter_retention and storage.ifcounter_max_rows; ``ifcounters`` reads on a query
worker's connection. A delta is booked in the minute its closing sample arrived: agents sample every
20-30 s, so a minute's sum is its traffic to within one sampling interval.
"""
from __future__ import annotations

import sqlite3

from flowmodel.events import IF_COUNTER_ROWS_PER_EVENT
from flowmodel.namesconf import exporter_text
from flowmodel.protocol import QueryError, parse_uint_arg, parse_when

from . import planner as P
from .explore import choose_step_ms, step_arg

MINUTE_MS = 60_000
DELTAS = ("in_octets", "out_octets", "in_packets", "out_packets", "in_errors", "out_errors", "in_discards",
          "out_discards", "resets")
DELTA_MAX = 1 << 63  # a delta past it is no interface's traffic in a minute: the row is refused
DDL = ("CREATE TABLE IF NOT EXISTS if_counters (exporter TEXT NOT NULL, ifindex INTEGER NOT NULL, "
       "minute_ms INTEGER NOT NULL, " + ", ".join(f"{n} INTEGER NOT NULL" for n in DELTAS) +
       ", speed_bps INTEGER NOT NULL, PRIMARY KEY (exporter, ifindex, minute_ms))",
       "CREATE INDEX IF NOT EXISTS if_counters_minute ON if_counters (minute_ms)")
_UPSERT = ("INSERT INTO if_counters (exporter, ifindex, minute_ms, " + ", ".join(DELTAS) + ", speed_bps) VALUES ("
           + ", ".join("?" * (len(DELTAS) + 4)) + ") ON CONFLICT (exporter, ifindex, minute_ms) DO UPDATE SET "
           + ", ".join(f"{n} = {n} + excluded.{n}" for n in DELTAS) + ", speed_bps = excluded.speed_bps")


def _uint(row: dict, name: str, hi: int) -> int:
    v = row.get(name, 0)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
        raise ValueError(f"{name} {v!r} is not an integer 0-{hi}")
    return v


def check_event(msg: dict) -> list[tuple]:
    """An ifcounters event's rows as (exporter, ifindex, minute_ms, *DELTAS, speed_bps) tuples;
    ValueError naming the field otherwise."""
    rows = msg.get("rows")
    if not isinstance(rows, list) or len(rows) > IF_COUNTER_ROWS_PER_EVENT:
        raise ValueError(f"rows must be a list of at most {IF_COUNTER_ROWS_PER_EVENT} maps")
    out = []
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError("each row must be a map")
        try:
            exporter = exporter_text(row.get("exporter"))
        except ValueError:
            raise ValueError(f"exporter {row.get('exporter')!r} is not an address") from None
        time_ms = _uint(row, "time_ms", DELTA_MAX)
        out.append((exporter, _uint(row, "ifindex", 0xFFFFFFFF), time_ms - time_ms % MINUTE_MS,
                    *(_uint(row, n, DELTA_MAX) for n in DELTAS), _uint(row, "speed_bps", DELTA_MAX)))
    return out


def ensure(db: sqlite3.Connection) -> None:
    for stmt in DDL:
        db.execute(stmt)


def save(db: sqlite3.Connection, rows: list[tuple]) -> None:
    """Add rows to their minutes (in the caller's transaction)."""
    ensure(db)
    db.executemany(_UPSERT, rows)


def prune(db: sqlite3.Connection, now_ms: int, retention_ms: int, max_rows: int) -> int:
    """Delete rows older than the retention, then the oldest past ``max_rows``; rows deleted."""
    ensure(db)
    gone = db.execute("DELETE FROM if_counters WHERE minute_ms < ?", (now_ms - retention_ms,)).rowcount
    excess = db.execute("SELECT count(*) FROM if_counters").fetchone()[0] - max_rows
    if excess > 0:
        gone += db.execute("DELETE FROM if_counters WHERE rowid IN (SELECT rowid FROM if_counters "
                           "ORDER BY minute_ms LIMIT ?)", (excess,)).rowcount
    return gone


def ifcounters(engine, args: dict) -> dict:
    """The ``ifcounters`` op (flowmodel.protocol.OPS)."""
    P.check_args("ifcounters", args, ("exporter", "ifindex", "since", "until", "step"))
    try:
        exporter = exporter_text(args.get("exporter"))
    except ValueError:
        raise QueryError(f"exporter {args.get('exporter')!r} is not an address") from None
    if args.get("ifindex") is None:
        raise QueryError("ifcounters needs an ifindex")
    ifindex = parse_uint_arg(args["ifindex"], "ifindex", 0xFFFFFFFF)
    now = engine.clock()
    if args.get("since") is None:
        raise QueryError("ifcounters needs a since time")
    since = parse_when(args["since"], now, "since")
    until = parse_when(args["until"], now, "until") if args.get("until") is not None else now
    if until <= since:
        raise QueryError("ifcounters needs until after since")
    step_ms = step_arg(args) or choose_step_ms(until - since)
    if step_ms % MINUTE_MS:
        raise QueryError("step must be whole minutes (the counters are kept per minute)")
    first = since - since % step_ms
    steps = -(-(until - first) // step_ms)
    if steps > 2000:
        raise QueryError(f"step {step_ms // 1000} s cuts the window into {steps} steps, at most 2000")

    def read(db):
        try:
            return db.execute(
                f"SELECT (minute_ms - ?) / ?, {', '.join(f'sum({n})' for n in DELTAS)}, max(speed_bps) "
                "FROM if_counters WHERE exporter = ? AND ifindex = ? AND minute_ms >= ? AND minute_ms < ? "
                "GROUP BY 1", (first, step_ms, exporter, ifindex, first, first + steps * step_ms)).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise

    sums = {n: [0] * steps for n in DELTAS}
    speed = 0
    for k, *values in engine._read(read):
        for n, v in zip(DELTAS, values):
            sums[n][int(k)] = int(v)
        speed = max(speed, int(values[-1] or 0))
    seconds = step_ms / 1000
    return {"ok": True, "exporter": exporter, "ifindex": ifindex, "since": since, "until": until, "step_ms": step_ms,
            "times": [first + i * step_ms for i in range(steps)],
            "in_bps": [v * 8 / seconds for v in sums["in_octets"]],
            "out_bps": [v * 8 / seconds for v in sums["out_octets"]],
            "in_pps": [v / seconds for v in sums["in_packets"]],
            "out_pps": [v / seconds for v in sums["out_packets"]],
            **{n: sums[n] for n in ("in_octets", "out_octets", "in_errors", "out_errors", "in_discards",
                                    "out_discards", "resets")},
            "speed_bps": speed}
