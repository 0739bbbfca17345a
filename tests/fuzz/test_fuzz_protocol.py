"""Hostile requests through the store's query protocol: the parsing and the ops the store runs.

Each example is a request as the query socket receives it (bytes): not msgpack, not a map, an
unknown op, or a known op with arguments of every type and edge (None, booleans, integers at the
64-bit edges, NaN and infinities, huge and tiny steps, strings that are almost times, networks or
protocol names, lists, maps), mixed with valid ones so the ops get past their first check. It goes
through the store's own path (``parse_request``, ``QueryServer.run_op`` on a real QueryEngine over
a real SQLite file and ring holding six hours of flows, ``QueryServer.pack``). The reply must be a
msgpack map with ``ok``; a refusal must say why in words, never "internal error" (the store's
reply to an exception it did not expect).
``FLOWLENS_FUZZ_EXAMPLES`` sets the example count (``make fuzz`` runs more).
"""
from __future__ import annotations

import math
import os

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowmodel import addr
from flowmodel.config import SETTINGS as CONFIG
from flowmodel.protocol import FLOW_FILTERS, METRICS, OPS, TOP_BY
from flowmodel.schema import FlowBatch
from flowlens_store.queries import QueryEngine
from flowlens_store.queryserver import QueryServer, parse_request
from flowlens_store.ring import Ring
from flowlens_store.warm import WarmWriter

EXAMPLES = int(os.environ.get("FLOWLENS_FUZZ_EXAMPLES", "300"))
HOUR = 3_600_000
BASE = 1_790_000_000_000 - 1_790_000_000_000 % HOUR
NOW = BASE + 6 * HOUR
ARGS = FLOW_FILTERS + ("by", "metric", "limit", "step", "cursor", "direction", "order", "scaled", "spread", "kind",
                       "key", "top", "severity", "state", "analyzer", "subject", "include_resolved", "after",
                       "after_key", "active")


def _flows(n: int = 20_000) -> FlowBatch:
    rng = np.random.default_rng(5)
    b = FlowBatch.empty(n)
    te = np.sort(rng.integers(BASE, NOW - 60_000, n))
    b.columns["time_end"][:] = te
    b.columns["time_start"][:] = te - rng.integers(0, 120_000, n)
    b.columns["src_addr"][:] = addr.from_texts([f"10.0.{i % 7}.{i % 250}" for i in range(n)])
    b.columns["dst_addr"][:] = addr.from_texts([f"2001:db8::{i % 13:x}" if i % 5 == 0 else f"192.0.2.{i % 200}"
                                                for i in range(n)])
    b.columns["src_port"][:] = rng.integers(1024, 65535, n)
    b.columns["dst_port"][:] = rng.choice([53, 80, 443], n)
    b.columns["protocol"][:] = rng.choice([6, 17, 1], n)
    b.columns["bytes"][:] = rng.integers(40, 1 << 20, n)
    b.columns["packets"][:] = rng.integers(1, 1000, n)
    b.columns["sampling_rate"][:] = rng.choice([1, 100], n)
    b.columns["exporter"][:] = addr.from_texts([f"192.0.2.{1 + i % 3}" for i in range(n)])
    b.columns["input_if"][:] = rng.integers(0, 8, n)
    b.columns["src_as"][:] = rng.choice([0, 64500, 4200000000], n)
    b.columns["tos"][:] = rng.integers(0, 256, n)
    b.columns["flow_version"][:] = 10
    return b


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("protocol") / "f.db")
    flows = _flows()
    cols = dict(flows.columns)
    cols["seq"] = np.arange(1, flows.count + 1, dtype=np.int64)
    w = WarmWriter(path, HOUR, 24, 64, seal_chunk_rows=500)
    for i in range(0, flows.count, 2000):
        w.write_flows({k: v[i:i + 2000] for k, v in cols.items()})
    w.seal_due(NOW)
    ring = Ring(50_000)
    newest = flows["time_end"] >= NOW - HOUR
    ring.append(FlowBatch({k: v[newest] for k, v in flows.columns.items()}), int(cols["seq"][newest][0]))
    ring.evicted_max_time_end = int(flows["time_end"][~newest].max())
    eng = QueryEngine(ring, path, HOUR, 10_000, 10.0, clock=lambda: NOW)
    yield eng
    eng.close()
    w.close()


@pytest.fixture(scope="module")
def server():
    own = {op: (lambda op=op: {"ok": True, "op": op}) for op in ("ping", "status", "exporters", "names")}
    return QueryServer({"query.max_reply_bytes": CONFIG["query.max_reply_bytes"].default}, own)


hostile = (st.none() | st.booleans() | st.sampled_from([0, 1, -1, 2 ** 31, 2 ** 32, 2 ** 63 - 1, -2 ** 63, 2 ** 64 - 1])
           | st.integers() .filter(lambda i: -2 ** 63 <= i < 2 ** 64)
           | st.sampled_from([math.nan, math.inf, -math.inf, 0.001, 1e-300, 1e300, 0.5, -0.0]) | st.floats()
           | st.sampled_from(["", "15m", "-7d", "24h", "0s", "1e9", "2026-13-45T25:61", "10.0.0.0/33", "::ffff:999.1.1.1",
                              "tcp", "TCP", "icmp6", "unknown", "private", "ZZ", "next", "prev", "x" * 300, "\x00",
                              "192.0.2.1", "2001:db8::/129", "*", "%", "' or 1=1 --"])
           | st.text(max_size=12) | st.binary(max_size=12)
           | st.lists(st.integers(-3, 3) | st.text(max_size=3), max_size=3)
           | st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=3))


def _valid(key: str):
    """A value the key accepts, so an op gets past its first check and meets the hostile rest."""
    return {"since": st.sampled_from([BASE, NOW - HOUR, NOW - 90 * 60_000, "6h", "15m"]),
            "until": st.sampled_from([NOW, NOW - 30 * 60_000, "1m"]),
            "by": st.sampled_from(TOP_BY), "metric": st.sampled_from(METRICS),
            "limit": st.integers(1, 60), "step": st.sampled_from([0, 1, 60, 300, 3600, 86400]),
            "src": st.sampled_from(["10.0.0.0/16", "10.0.3.4"]), "exporter": st.just("192.0.2.2"),
            "protocol": st.sampled_from(["tcp", 17]), "dscp": st.integers(0, 63),
            "input_if": st.integers(0, 9), "kind": st.sampled_from(["dst_prefix", "exporter", "ack", "silence"]),
            "order": st.sampled_from(["time", "bytes", "packets"])}.get(key, hostile)


@st.composite
def requests(draw) -> bytes:
    shape = draw(st.sampled_from(["op"] * 8 + ["raw", "value"]))
    if shape == "raw":
        return draw(st.binary(max_size=64))
    if shape == "value":
        return msgpack.packb(draw(hostile), use_bin_type=True)
    req = {"op": draw(st.sampled_from(sorted(OPS)) | st.sampled_from(["", "__class__", "_read", "close", "drop"])
                      | hostile)}
    for key in draw(st.lists(st.sampled_from(ARGS), max_size=6, unique=True)):
        req[key] = draw(_valid(key) if draw(st.booleans()) else hostile)
    return msgpack.packb(req, use_bin_type=True)


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(raw=requests())
def test_hostile_requests_get_a_reply_in_words(engine, server, raw):
    parsed = parse_request(raw)
    reply = parsed if isinstance(parsed, dict) else server.run_op(parsed[0], parsed[1], engine)
    back = msgpack.unpackb(server.pack(reply), raw=False)
    assert isinstance(back, dict) and isinstance(back.get("ok"), bool), back
    if not back["ok"]:
        assert isinstance(back.get("error"), str) and back["error"], back
        assert not back["error"].startswith("internal error"), back["error"]


def test_the_fixture_answers_a_valid_request(engine, server):
    # the store under the fuzz holds flows: a plain request is answered, so hostile ones meet real data
    reply = server.run_op("top", {"by": "src", "since": BASE, "until": NOW}, engine)
    assert reply["ok"] and reply["rows"], reply
