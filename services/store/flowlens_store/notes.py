"""Operators' notes (flowmodel.notes: acknowledgements and silences) in SQLite: written by the writer
in its event transaction, one row per (kind, id), a later note replacing an earlier one; read by the
``notes`` query op. Notes past their expiry by more than storage.advisory_retention are pruned with
the resolved advisories."""
from __future__ import annotations

import json
import sqlite3

from flowmodel.notes import NOTE_KINDS
from flowmodel.protocol import QueryError

NOTES_DDL = ("CREATE TABLE IF NOT EXISTS notes (kind TEXT NOT NULL, id TEXT NOT NULL, created_at INTEGER NOT NULL, "
             "expires_at INTEGER, body TEXT NOT NULL, received_at INTEGER NOT NULL, PRIMARY KEY (kind, id))")


def save(db: sqlite3.Connection, note: dict, received: int) -> None:
    """Inside the writer's event transaction (the table is made on the first note)."""
    db.execute(NOTES_DDL)
    body = {k: v for k, v in note.items() if not k.startswith("_") and k not in ("schema", "seq", "sent_at",
                                                                                   "event_stream", "event_seq")}
    db.execute("INSERT OR REPLACE INTO notes (kind, id, created_at, expires_at, body, received_at) VALUES (?, ?, ?, ?, ?, ?)",
               (note["kind"], note["id"], int(note["created_at"]), note.get("expires_at"),
                json.dumps(body, default=str), received))


def prune(db: sqlite3.Connection, before_ms: int) -> None:
    db.execute(NOTES_DDL)
    db.execute("DELETE FROM notes WHERE expires_at IS NOT NULL AND expires_at < ?", (before_ms,))


def query(engine, args: dict) -> dict:
    """``notes``: args kind (ack, silence; default both), active (default true: silences not yet
    expired, every ack), limit; reply: notes (newest first), each as it was sent."""
    from . import planner as P

    P.check_args("notes", args, ("kind", "active", "limit"))
    kind = args.get("kind")
    if kind not in (None, "") and kind not in NOTE_KINDS:
        raise QueryError(f"kind {kind!r} is not one of {', '.join(NOTE_KINDS)}")
    active = P.bool_arg(args, "active", True)
    limit = P.int_arg(args, "limit", 1000, 1, engine.max_rows, cap=True)
    terms, params = [], []
    if kind:
        terms.append("kind = ?")
        params.append(kind)
    if active:
        terms.append("(expires_at IS NULL OR expires_at > ?)")
        params.append(engine.clock())
    where = " AND ".join(terms) or "1"

    def read(db):
        try:
            return db.execute(f"SELECT body FROM notes WHERE {where} ORDER BY created_at DESC, id LIMIT ?",
                              params + [limit]).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):  # no note was ever written
                return []
            raise

    return {"ok": True, "notes": [json.loads(b) for (b,) in engine._read(read)]}
