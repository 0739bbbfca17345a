"""The real store process: flow batches and events published on the bus by the test itself, read
back through StoreClient; SIGTERM commits everything (counted after a restart on the same file)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from flowmodel import addr
from flowmodel.bus import Sequencer, encode_batch, encode_event, flows_topic, TOPIC_ADVISORY, TOPIC_EXPORTER
from flowmodel.client import StoreClient, StoreError
from flowmodel.schema import COLUMN_NAMES, FlowBatch
from support.services import ServiceProcess, stack_config, wait_until, write_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "store"))
from store_testdata import make_batch  # noqa: E402

WINDOW = {"since": 0, "until": 4_000_000_000_000}


class Publisher:
    def __init__(self, endpoint: str, source: str):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.seq = Sequencer(source)
        self.source = source

    def flows(self, batch: FlowBatch) -> None:
        self.sock.send_multipart([flows_topic(9), encode_batch(batch, self.seq)])

    def event(self, topic: bytes, body: dict) -> None:
        self.sock.send_multipart([topic, encode_event(body, self.seq)])

    def wait_live(self, client: StoreClient) -> None:
        """Publish empty probe batches until the store's status shows this source."""
        def seen():
            self.flows(FlowBatch.empty(0))
            return self.source in client.status()["bus"]["sources"]
        wait_until(seen, timeout_s=15, interval_s=0.05)

    def close(self):
        self.sock.close(linger=0)


@pytest.fixture
def store(tmp_path):
    cfg = stack_config(tmp_path, store={"sqlite_retention": "3650d", "rollup_retention": "3650d",
                                        "advisory_retention": "3650d", "ring_capacity": 5000})
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    proc = ServiceProcess("store", path).start()
    client = StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=1)
    pub = Publisher(cfg["bus"]["publish_endpoint"], "test-publisher")
    yield cfg, path, proc, client, pub
    pub.close()
    client.close()
    proc.stop()


def all_pages(client, **filters):
    out, cursor = [], None
    while True:
        page = client.flows(limit=700, cursor=cursor, **filters)
        out.append(page)
        cursor = page.next_cursor
        if not cursor:
            return out


def test_flows_round_trip_filters_pages_top_series_rollups_and_sigterm(store):
    cfg, path, proc, client, pub = store
    pub.wait_live(client)
    batches = [make_batch(1500, t0=1_790_000_000_000 + i * 20_000, spacing_ms=10, seed=i) for i in range(6)]
    for b in batches:
        pub.flows(b)
    sent = FlowBatch.concat(batches)
    n = sent.count
    wait_until(lambda: client.status()["flows_committed"] >= n, timeout_s=20)
    st = client.status()
    assert st["flows_in"] == n and st["flows_committed"] == n
    assert st["write_queue"]["shed_batches"] == 0
    assert st["bus"]["sources"]["test-publisher"]["gaps"] == 0
    assert st["ring"]["capacity"] == 5000 and st["ring"]["fill"] == 5000  # 9000 flows through a 5000 ring
    assert 0 < st["ring"]["bytes"] < 5000 * 143  # the compact ring, under its plain columns
    assert st["services"][0]["service"] == "store" and st["services"][0]["process"]["rss_bytes"] > 0
    warm = st["queries"]["top_warm"]  # the top cache's warmer (topwarm.py) runs and is counted
    assert warm["ranges_s"] == [86400, 259200] and warm["polls"] >= 1 and warm["errors"] == 0

    # every flow, every field (from SQLite: the window starts long ago)
    pages = all_pages(client, **WINDOW)
    got = FlowBatch.concat([p.batch for p in pages])
    assert got.count == n
    order_got = np.lexsort((got["bytes"], got["time_end"]))
    order_sent = np.lexsort((sent["bytes"], sent["time_end"]))
    for name in COLUMN_NAMES:
        assert np.array_equal(got[name][order_got], sent[name][order_sent]), name
    te = got["time_end"]
    assert np.all(te[:-1] >= te[1:])  # newest first across pages
    # backward from the last page gives the same pages
    back, cursor = [pages[-1]], pages[-1].prev_cursor
    while cursor:
        p = client.flows(limit=700, cursor=cursor, direction="prev", **WINDOW)
        back.append(p)
        cursor = p.prev_cursor
    assert [p.batch["time_end"].tobytes() for p in back[::-1]] == [p.batch["time_end"].tobytes() for p in pages]

    # CIDR and port filters
    m = (sent["src_addr"].view(np.uint8).reshape(-1, 16)[:, 14] == 7)  # 10.0.7.x
    page = client.flows(limit=10_000, src="10.0.7.0/24", **WINDOW)
    assert len(page) == int(m.sum()) > 0
    assert set(addr.column_to_text(page.batch["src_addr"])) <= {f"10.0.7.{i}" for i in range(256)}
    m443 = (sent["src_port"] == 443) | (sent["dst_port"] == 443)
    assert len(client.flows(limit=10_000, port=443, **WINDOW)) == int(m443.sum()) > 0

    # top and series agree with the input
    top = client.top(by="dst_port", metric="flows", limit=10, **WINDOW)
    want = {str(p): int((sent["dst_port"] == p).sum()) for p in np.unique(sent["dst_port"])}
    assert {r["key"]: r["flows"] for r in top["rows"]} == want
    assert top["totals"]["bytes"] == int(sent["bytes"].sum())
    ser = client.series(step=60, **WINDOW | {"since": 1_790_000_000_000 - 60_000, "until": 1_790_000_200_000})
    assert sum(p[1] for p in ser["points"]) == int(sent["bytes"].sum())
    assert sum(p[3] for p in ser["points"]) == n

    # rollups per minute
    r = client.rollups("dst_prefix", **WINDOW)
    assert r["step_ms"] == 60_000 and sum(r["rows"]["flows"]) == n
    assert "192.168.1.0/24" in r["rows"]["key"]
    r = client.rollups("exporter", key="127.0.0.1", **WINDOW)
    assert sum(r["rows"]["flows"]) == n // 2

    # SIGTERM right after a last burst loses nothing: a fresh store on the same file counts them all
    extra = make_batch(3000, t0=1_790_000_500_000, seed=99)
    pub.flows(extra)
    recent_t0 = int(time.time() * 1000) - 60_000  # inside the ring's recent window
    pub.flows(make_batch(500, t0=recent_t0, spacing_ms=1, seed=98))
    wait_until(lambda: client.status()["flows_in"] >= n + 3500, timeout_s=10)
    inline = client.status()["queries"]["pages_inline"]
    assert len(client.flows(limit=1000, since=recent_t0 - 1000)) == 500
    # the ring alone held that page: the front thread answered it; a port filter's page goes to a worker
    assert client.status()["queries"]["pages_inline"] == inline + 1
    assert len(client.flows(limit=1000, port=443, since=recent_t0 - 1000)) > 0
    assert client.status()["queries"]["pages_inline"] == inline + 1
    assert proc.stop() == 0, proc.log()
    client.close()
    proc2 = ServiceProcess("store", path).start()
    try:
        with StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=1) as c2:
            assert sum(len(p) for p in all_pages(c2, **WINDOW)) == n + 3500
            assert c2.status()["ring"]["fill"] == 0
            # the empty ring of a restarted store must not answer a recent window: SQLite does
            recent = c2.flows(limit=1000, since=recent_t0 - 1000)
            assert len(recent) == 500 and recent.reply.get("source") == "sqlite"
    finally:
        assert proc2.stop() == 0


def test_advisories_and_health_events_persist_and_query(store):
    cfg, path, proc, client, pub = store
    pub.wait_live(client)
    base = {"analyzer": "scan", "subject": "172.16.0.55", "title": "Port scan from 172.16.0.55",
            "description": "172.16.0.55 probed 1,000 ports of 10.0.0.5 in 60 s", "action": "Block it",
            "evidence": {"ports": 1000}, "filter": {"src": "172.16.0.55"}}
    pub.event(TOPIC_ADVISORY, {**base, "key": "scan:172.16.0.55", "severity": "CRITICAL", "state": "raised",
                               "first_seen": 1000, "last_seen": 2000})
    pub.event(TOPIC_ADVISORY, {**base, "key": "scan:172.16.0.55", "severity": "CRITICAL", "state": "updated",
                               "first_seen": 1000, "last_seen": 5000})
    pub.event(TOPIC_ADVISORY, {**base, "key": "top_talkers:10.0.1.50", "analyzer": "top_talkers",
                               "subject": "10.0.1.50", "severity": "INFO", "state": "raised", "first_seen": 1500,
                               "last_seen": 9000})
    pub.event(TOPIC_ADVISORY, {**base, "key": "dns:10.0.1.100", "analyzer": "dns", "subject": "10.0.1.100",
                               "severity": "WARNING", "state": "resolved", "first_seen": 100, "last_seen": 200})
    pub.event(TOPIC_ADVISORY, {"key": "bad", "severity": "SEVERE", "state": "raised"})  # counted, not stored
    pub.event(TOPIC_EXPORTER, {"kind": "collector", "collector": "test-publisher",
                               "process": {"pid": 1, "rss_bytes": 123, "cpu_seconds": 1.0, "threads": 2, "started_at": 1},
                               "counters": {"datagrams": 5}, "exporters": [{"exporter": "127.0.0.1", "observation_domain": 0,
                                                                              "packets": 5, "flows": 150}]})
    adv = wait_until(lambda: (lambda a: a if len(a) == 2 else None)(client.advisories()), timeout_s=10)
    assert [a["key"] for a in adv] == ["scan:172.16.0.55", "top_talkers:10.0.1.50"]  # severity first
    scan = adv[0]
    assert scan["updates"] == 2 and scan["state"] == "updated" and scan["first_seen"] == 1000 and scan["last_seen"] == 5000
    assert scan["evidence"] == {"ports": 1000} and scan["filter"] == {"src": "172.16.0.55"}
    assert [a["key"] for a in client.advisories(include_resolved=True)] == ["scan:172.16.0.55", "dns:10.0.1.100", "top_talkers:10.0.1.50"]
    assert [a["key"] for a in client.advisories(severity="INFO")] == ["top_talkers:10.0.1.50"]
    assert [a["key"] for a in client.advisories(state="resolved")] == ["dns:10.0.1.100"]
    assert client.advisories(analyzer="scan", since=4000)[0]["key"] == "scan:172.16.0.55"
    assert client.advisories(since=9500) == []
    # counts cover every match, not the page the limit cuts
    one = client.request("advisories", include_resolved=True, limit=1)
    assert [a["key"] for a in one["advisories"]] == ["scan:172.16.0.55"]
    assert one["counts"] == {"CRITICAL": 1, "WARNING": 1, "INFO": 1} and one["total"] == 3
    assert client.request("advisories", limit=1)["counts"] == {"CRITICAL": 1, "WARNING": 0, "INFO": 1}
    with pytest.raises(StoreError, match="severity"):
        client.advisories(severity="HUGE")
    assert client.status()["bus"]["bad_messages"] >= 1

    ex = client.exporters()
    assert ex["collectors"][0]["collector"] == "test-publisher"
    assert ex["exporters"][0]["exporter"] == "127.0.0.1" and ex["exporters"][0]["flows"] == 150
    assert any(s["source"] == "test-publisher" and s["process"]["rss_bytes"] == 123 for s in client.status()["services"])

    # persisted: a restarted store still has them
    assert proc.stop() == 0
    client.close()
    proc2 = ServiceProcess("store", path).start()
    try:
        with StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=1) as c2:
            assert [a["key"] for a in c2.advisories()] == ["scan:172.16.0.55", "top_talkers:10.0.1.50"]
            assert c2.exporters()["collectors"][0]["collector"] == "test-publisher"
    finally:
        assert proc2.stop() == 0


def test_bad_requests_get_error_replies(store):
    cfg, path, proc, client, pub = store
    for op, args, words in [("nosuch", {}, "unknown op"), ("flows", {"src": "banana"}, "src"),
                            ("top", {"by": "colour"}, "by"), ("series", {"step": -1}, "step"),
                            ("rollups", {"kind": "x"}, "kind")]:
        with pytest.raises(StoreError, match=words):
            client.request(op, **args)
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cfg["query"]["endpoint"])
    sock.send(b"\xc1not msgpack")
    assert sock.poll(5000)
    import msgpack
    assert msgpack.unpackb(sock.recv()) == {"ok": False, "error": "the request is not msgpack"}
    sock.close(linger=0)
    assert client.ping()


@pytest.mark.parametrize("which", ["query_bind", "bus_xsub_bind", "bus_xpub_bind", "events_bind"])
def test_a_taken_port_exits_non_zero_instead_of_hanging(tmp_path, which):
    import socket
    import subprocess

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        cfg = stack_config(tmp_path)
        cfg["storage"][which] = f"tcp://127.0.0.1:{busy.getsockname()[1]}"
        path = write_config(tmp_path / "s.yaml", cfg)
        # a hang here (the old stop() waited in ctx.term() for sockets it never closed) fails on the timeout
        r = subprocess.run([sys.executable, "-m", "flowlens_store", "--config", str(path)],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "cannot start" in r.stderr and "Address already in use" in r.stderr


def test_concurrent_clients_each_get_their_own_reply(store):
    """Replies travel back through the ROUTER front by each request's envelope: eight clients asking at
    once for different page sizes each get exactly the page they asked for."""
    import threading

    cfg, path, proc, client, pub = store
    pub.wait_live(client)
    pub.flows(make_batch(2000, t0=1_790_000_000_000, spacing_ms=10, seed=3))
    wait_until(lambda: client.status()["flows_committed"] >= 2000, timeout_s=15)
    errors, got = [], {}

    def ask(n: int) -> None:
        try:
            with StoreClient(cfg["query"]["endpoint"], timeout_s=10, retries=0) as c:
                for _ in range(5):
                    page = c.flows(limit=n, **WINDOW)
                    got.setdefault(n, []).append(len(page))
                    assert c.ping()
        except Exception as e:  # reported below, with the thread's page size
            errors.append((n, repr(e)))

    threads = [threading.Thread(target=ask, args=(n,)) for n in (1, 2, 3, 5, 8, 13, 21, 34)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert got == {n: [n] * 5 for n in (1, 2, 3, 5, 8, 13, 21, 34)}
    q = client.status()["queries"]
    assert q["workers"] == 2 and q["refused_busy"] == 0


def test_a_full_query_queue_refuses_with_busy_and_pings_still_answer(tmp_path):
    """One worker and a queue of one: while a series over SQLite keeps the worker busy, a second query
    waits, a third is refused at once with a 'busy' reply, and a ping is answered by the front thread."""
    cfg = stack_config(tmp_path, store={"sqlite_retention": "3650d", "query_workers": 1, "query_queue": 1,
                                        "ring_capacity": 1000})
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    proc = ServiceProcess("store", path).start()
    client = StoreClient(cfg["query"]["endpoint"], timeout_s=30, retries=0)
    pub = Publisher(cfg["bus"]["publish_endpoint"], "busy-test")
    ctx = zmq.Context.instance()
    socks = []
    try:
        pub.wait_live(client)
        for i in range(60):
            pub.flows(make_batch(4000, t0=1_790_000_000_000 + i * 40_000, spacing_ms=10, seed=i))
        wait_until(lambda: client.status()["flows_committed"] >= 240_000, timeout_s=60)
        import msgpack
        heavy = msgpack.packb({"op": "top", "by": "pair", "since": 0, "until": 4_000_000_000_000}, use_bin_type=True)
        for body in (heavy, heavy, heavy):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(cfg["query"]["endpoint"])
            s.send_multipart([b"", body])
            socks.append(s)
        replies = []
        for s in socks:
            assert s.poll(30_000), "a query got no reply at all"
            replies.append(msgpack.unpackb(s.recv_multipart()[-1], raw=False))
        busy = [r for r in replies if not r.get("ok")]
        assert len(busy) >= 1 and all("busy" in r["error"] for r in busy), replies
        assert any(r.get("ok") for r in replies)
        assert client.ping()
        assert client.status()["queries"]["refused_busy"] == len(busy)
    finally:
        for s in socks:
            s.close(linger=0)
        pub.close()
        client.close()
        assert proc.stop() == 0


def test_size_cap_drops_the_oldest_partitions_and_counts_their_flows(tmp_path):
    """storage.max_bytes through the real service: flows of six past hours, sealed into blocks, then a
    prune under a cap smaller than the file drops the oldest hours first, counted in status and kept
    out of the answers; the newest hour stays."""
    now = int(time.time() * 1000)
    hour = 3_600_000
    base = (now // hour) * hour - 8 * hour
    cfg = stack_config(tmp_path, store={"sqlite_retention": "3650d", "ring_capacity": 1000, "prune_interval": "2s",
                                        "max_bytes": "600k"})
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    proc = ServiceProcess("store", path).start()
    client = StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=1)
    pub = Publisher(cfg["bus"]["publish_endpoint"], "cap-publisher")
    try:
        pub.wait_live(client)
        for h in range(6):
            pub.flows(make_batch(3000, t0=base + h * hour + 60_000, spacing_ms=100, seed=h))
        wait_until(lambda: client.status()["sqlite"]["size_pruned_partitions"] >= 1, timeout_s=60, interval_s=0.5)
        sq = client.status()["sqlite"]
        left = [p for p in sq["partitions"] if p["rows"]]
        assert sq["max_bytes"] == 600 * 1024
        assert sq["size_pruned_flows"] == 3000 * sq["size_pruned_partitions"]
        assert len(left) == 6 - sq["size_pruned_partitions"] and left[-1]["start_ms"] == base + 5 * hour
        assert min(p["start_ms"] for p in left) == base + sq["size_pruned_partitions"] * hour  # oldest went first
        got = client.top(by="src", since=base, until=base + 6 * hour)
        assert got["totals"]["flows"] == 3000 * len(left)
    finally:
        pub.close()
        client.close()
        assert proc.stop() == 0, proc.log()
