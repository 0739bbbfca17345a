"""The store's parts start in order and stop in reverse through flowmodel.lifecycle.Components: the
flush at stop commits what the subscriber holds; a stop is safe before a start and twice after one;
a query port that is taken stops what started (the writer commits, the forwarder ends) and raises the
bind error itself (real ZeroMQ sockets on 127.0.0.1, a real SQLite file in tmp_path)."""
from __future__ import annotations

import socket
import sqlite3

import pytest
import zmq

from support.services import stack_config
from flowlens_store.service import StoreService
from flowmodel.config import load_config


def _store(tmp_path, **storage) -> StoreService:
    sections = stack_config(tmp_path, storage=storage)
    overrides = {f"{section}.{key}": value for section in ("bus", "storage") for key, value in sections[section].items()}
    return StoreService(load_config(None, env={}, overrides=overrides))


def test_parts_start_in_order_and_stop_in_reverse_once(tmp_path):
    svc = _store(tmp_path)
    svc.stop()  # before a start: nothing to stop
    svc.start()
    assert svc.parts.started == ["context", "security", "forwarder", "storage", "subscriber", "events", "reverse dns",
                                 "queries", "top warmer", "flush at stop"]
    svc.stop()
    assert svc.parts.started == [] and svc.ctx is None
    svc.stop()  # twice: nothing more
    port = int(svc.cfg["storage.query_bind"].rsplit(":", 1)[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the query socket is closed
    with sqlite3.connect(tmp_path / "flowlens.db") as db:  # the writer committed and closed the file
        assert db.execute("SELECT count(*) FROM streams").fetchone() == (0,)


def test_a_taken_query_port_stops_what_started_and_raises_the_bind_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        svc = _store(tmp_path, query_bind=f"tcp://127.0.0.1:{taken.getsockname()[1]}")
        with pytest.raises(zmq.ZMQError) as e:
            svc.start()
        assert "Address already in use" in str(e.value)
        assert svc.parts.started == [] and svc.ctx is None
        assert svc.writer is not None and svc.writer._thread is None  # the writer was started, then stopped
    bus_port = int(svc.cfg["storage.bus_xsub_bind"].rsplit(":", 1)[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", bus_port))  # the forwarder's socket is closed too
