"""Files of layout 1 kept their per-minute and hourly rollups in SQL tables (``rollups``,
``rollups_hourly``: kind, time, key text, sums). On migration the hours no partition covers any more
(their flows were pruned; the sealer rebuilds the others from their flows) become hourly rollups of
today's kind (hists.py), so the anomaly baselines keep their history; then both tables go."""
from __future__ import annotations

import logging
import sqlite3

import numpy as np

from flowmodel import addr

from .hists import encode_hist, key_chunks

log = logging.getLogger(__name__)
HOUR_MS = 3_600_000


def _key_words(kind: str, text: str) -> tuple[int, int] | None:
    """A layout-1 key text ('10.1.2.0/24' or an exporter address) as two big-endian words."""
    try:
        raw = addr.to_bytes(text.split("/", 1)[0] if kind == "dst_prefix" else text)
    except (ValueError, OSError):
        return None
    hi, lo = np.frombuffer(bytes(raw), ">u8")
    return int(hi), int(lo)


def convert(db: sqlite3.Connection) -> int:
    """Inside the caller's transaction: the legacy hourly rows of hours without a partition into
    ``hists``, then the legacy tables dropped. Returns the hourly rows converted."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "rollups_hourly" not in tables:
        for t in ("rollups",):
            if t in tables:
                db.execute(f"DROP TABLE {t}")
        return 0
    cols = {r[1] for r in db.execute("PRAGMA table_info(rollups_hourly)")}
    scaled = "sbytes" in cols
    covered = [(s, e) for s, e in db.execute("SELECT start_ms, end_ms FROM partitions")]
    done = {(d, s) for d, s in db.execute("SELECT DISTINCT dim, start_ms FROM hists WHERE step_ms = ?", (HOUR_MS,))}
    rows = db.execute("SELECT kind, hour_ms, key, bytes, packets, flows" + (", sbytes, spackets" if scaled else "")
                      + " FROM rollups_hourly WHERE kind IN ('dst_prefix', 'exporter') ORDER BY kind, hour_ms").fetchall()
    groups: dict[tuple[str, int], list] = {}
    for r in rows:
        kind, hour = r[0], int(r[1])
        if any(s <= hour < e for s, e in covered) or (kind, hour) in done:
            continue
        words = _key_words(kind, r[2])
        if words is not None:
            groups.setdefault((kind, hour), []).append((words, r[3:]))
    converted = 0
    for (kind, hour), items in groups.items():
        k = np.array([w for w, _v in items], dtype=np.uint64)
        v = np.array([list(vals) + ([] if scaled else list(vals[:2])) for _w, vals in items], dtype=np.uint64)
        blob = encode_hist({"t": np.full(len(items), hour, np.int64), "k": k, "bytes": v[:, 0], "packets": v[:, 1],
                            "flows": v[:, 2], "sbytes": v[:, 3], "spackets": v[:, 4]})
        db.executemany("INSERT OR REPLACE INTO hists (dim, step_ms, start_ms, chunk, end_ms, key_lo, key_hi, rows, data) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(kind, HOUR_MS, hour, i, hour + HOUR_MS, lo, hi, n, b)
                        for i, (lo, hi, n, b) in enumerate(key_chunks(kind, blob, HOUR_MS))])
        converted += len(items)
    for t in ("rollups", "rollups_hourly"):
        if t in tables:
            db.execute(f"DROP TABLE {t}")
    if converted:
        log.info("legacy hourly rollups converted", extra={"fields": {"rows": converted, "hours": len(groups)}})
    return converted
