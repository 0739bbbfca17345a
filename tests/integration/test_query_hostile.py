"""Hostile requests through the store's real query socket: requests too big for ZMQ_MAXMSGSIZE
(up to 64 MiB, and 200,000-key maps) are dropped unanswered, everything else gets an error reply in
words (never "internal error", never silence), the store keeps answering, and its RSS after 1,000
of them stays within 10 MB of where it was before."""
from __future__ import annotations

import math
import random
import time

import msgpack
import pytest
import zmq

from flowmodel.protocol import REQUEST_MAX_BYTES
from support.services import ServiceStack

MB = 1_000_000
NOW_MS = int(time.time() * 1000)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def hostile_requests(rng: random.Random) -> list[bytes]:
    """Requests the store must answer with an error in words (they fit in REQUEST_MAX_BYTES)."""
    flow_ops = ("flows", "top", "series", "overview", "rollups", "advisories")
    bad_values = [None, True, -1, 0, 2 ** 63 - 1, -2 ** 63, 2 ** 64 - 1, 1e300, -1e300, math.nan, math.inf, 0.001,
                  "", "abc", "1e9", "15m", "-7d", b"\xff\xfe", [], [1, 2], {}, {"a": 1}, "x" * 4000, "10.0.0.0/33",
                  "::ffff:999.1.1.1", "tcp; drop table flows"]
    args = ("since", "until", "limit", "step", "src", "dst", "addr", "port", "src_port", "dst_port", "protocol",
            "exporter", "by", "metric", "cursor", "direction", "kind", "key", "top", "scaled", "spread",
            "severity", "state", "include_resolved", "after", "after_key")
    reqs = [b"", b"\xc1", b"not msgpack at all", b"\x91" * 5000, pack(None), pack(1), pack("flows"),
            pack([{"op": "ping"}]), pack({}), pack({"op": None}), pack({"op": 5}), pack({"op": b"ping"}),
            pack({"op": "drop_tables"}), pack({"op": "__class__"}), pack({"op": "_read"}), pack({"op": "close"}),
            pack({"op": "flows", "since": NOW_MS, "until": NOW_MS - 1}),
            pack({"op": "series", "step": 0.001, "since": 0}), pack({"op": "top", "limit": 10 ** 9, "since": 0}),
            pack({"op": "series", "step": 1e-300, "since": -2 ** 63, "until": 2 ** 63 - 1}),
            pack({"op": "flows", **{f"k{i}": i for i in range(5000)}}),  # many unknown keys, under the size bound
            pack({"op": "top", "by": "src", "limit": 10, "since": 0, "until": 2 ** 63 - 1, "scaled": "maybe"})]
    while len(reqs) < 900:
        op = rng.choice(flow_ops + tuple(f"op{rng.randrange(1000)}" for _ in range(1)))
        body = {"op": op}
        for _ in range(rng.randrange(1, 5)):
            body[rng.choice(args)] = rng.choice(bad_values)
        reqs.append(pack(body))
    return reqs


def oversize_requests() -> list[bytes]:
    big_map = pack({"op": "flows", **{f"key{i}": i for i in range(200_000)}})
    assert len(big_map) > REQUEST_MAX_BYTES
    return [big_map] * 50 + [b"\x00" * (REQUEST_MAX_BYTES + 1)] * 30 + [b"\x00" * (4 << 20)] * 15 + [b"\x00" * (64 << 20)] * 5


@pytest.fixture
def store(tmp_path):
    with ServiceStack(tmp_path, ["store"]) as stack:
        yield stack


def test_hostile_requests_get_words_and_leave_rss_flat(store):
    endpoint = store.cfg["query"]["endpoint"]
    pid = store.procs["store"].proc.pid
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(endpoint)

    def ask(raw: bytes, timeout_ms: int = 10_000) -> dict:
        dealer.send_multipart([b"", raw])
        assert dealer.poll(timeout_ms), f"no reply to {raw[:60]!r}"
        frames = dealer.recv_multipart()
        return msgpack.unpackb(frames[-1], raw=False)

    try:
        for op in ("ping", "status", "exporters"):  # what a normal client does first
            assert ask(pack({"op": op}))["ok"]
        for op in ("flows", "top", "series", "advisories"):
            assert ask(pack({"op": op, "since": 0}))["ok"]
        before = rss_bytes(pid)

        errors, answered = {}, 0
        for raw in hostile_requests(random.Random(14)):
            reply = ask(raw)
            assert isinstance(reply, dict) and "ok" in reply, reply
            answered += 1
            if not reply["ok"]:
                assert isinstance(reply.get("error"), str) and reply["error"], reply
                assert "internal error" not in reply["error"], (raw[:200], reply)
                errors[reply["error"][:40]] = errors.get(reply["error"][:40], 0) + 1
        assert answered == 900 and sum(errors.values()) >= 800

        # too big for the socket: ZeroMQ drops each (and its connection) before the store allocates it
        silent = []
        for raw in oversize_requests():
            s = ctx.socket(zmq.DEALER)
            s.linger = 0
            s.connect(endpoint)
            s.send_multipart([b"", raw])
            silent.append(s)
        assert not any(s.poll(0) for s in silent)
        assert ask(pack({"op": "ping"}))["ok"]
        assert not any(s.poll(200) for s in silent[-5:])  # the 64 MiB ones got no reply
        for s in silent:
            s.close()
        assert ask(pack({"op": "status"}))["ok"]
        after = rss_bytes(pid)
        assert after - before < 10 * MB, f"RSS {before / MB:.1f} MB -> {after / MB:.1f} MB"
        print(f"store RSS {before / MB:.1f} MB before, {after / MB:.1f} MB after 1,000 hostile requests; "
              f"{len(errors)} distinct error replies")
    finally:
        dealer.close()
        ctx.term()
