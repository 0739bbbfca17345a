"""The writer's WAL file does not keep the size of its largest transaction: after a checkpoint, the
next write starts the WAL over and SQLite truncates the file to layout.WAL_KEEP_BYTES (a real SQLite
file in WAL mode in tmp_path)."""
from __future__ import annotations

import os

from flowlens_store import layout


def test_the_wal_shrinks_to_its_bound_after_a_large_transaction(tmp_path):
    path = str(tmp_path / "flowlens.db")
    db = layout.connect_writer(path, cache_bytes=1 << 20)
    try:
        db.execute("CREATE TABLE big (b BLOB)")
        db.execute("BEGIN")
        chunk = os.urandom(1 << 20)
        for i in range(2 * (layout.WAL_KEEP_BYTES >> 20)):  # twice the bound, in one transaction
            db.execute("INSERT INTO big VALUES (?)", (chunk + i.to_bytes(4, "big"),))
        db.execute("COMMIT")
        grown = os.path.getsize(path + "-wal")
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        db.execute("INSERT INTO big VALUES (x'00')")  # the next write starts the WAL over
        kept = os.path.getsize(path + "-wal")
    finally:
        db.close()
    assert grown > 2 * layout.WAL_KEEP_BYTES
    assert kept <= layout.WAL_KEEP_BYTES
