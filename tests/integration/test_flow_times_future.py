"""Flow times that cannot be real, over the whole chain (issue 11): a spoofed IPFIX record dated in the
year 289,995,580 and one from 1970 sent over UDP to a running collector, store, analyzer and web. The
far one is dropped and counted (time_in_future) in the exporters reply, /metrics and the health
advisory; the 1970 one is stored; every page answers 200, before and after a restart on the same
SQLite file. And a file that already holds a far-future partition (written before the fix) is pruned
at store start."""
from __future__ import annotations

import re
import struct
import time

import httpx
import numpy as np

from flowlens_store.warm import WarmWriter
from flowmodel import addr
from flowmodel.schema import FlowBatch
from support.services import ServiceStack, send_udp, wait_until

FAR_FUTURE_MS = 9_151_314_449_241_600_000
YEAR_1970_MS = 86_400_000  # 1970-01-02
OLD_FLOWS_PAGE = "/flows?from=1970-01-01T00:00:00Z&to=1970-01-03T00:00:00Z"  # a range holding the 1970 flow
PAGES = ("/", "/flows", OLD_FLOWS_PAGE, "/about", "/advisories",
         "/advisories?state=all", "/metrics", "/healthz")
FAST = {"interval": "2s", "window": "60s", "watermark": "1s", "idle_after": "1s", "health_interval": "1s"}
# sourceIPv4Address, destinationIPv4Address, ports, protocol, octets, packets, flowStart/EndMilliseconds
TEMPLATE = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (152, 8), (153, 8)]


def _ipfix(records: list[tuple[str, int, int]], seq: int) -> bytes:
    """One IPFIX message: the template and a data set of (source address, start ms, end ms) records."""
    tmpl = struct.pack(">HH", 300, len(TEMPLATE)) + b"".join(struct.pack(">HH", ie, n) for ie, n in TEMPLATE)
    data = b"".join(bytes(int(x) for x in src.split(".")) + bytes([10, 1, 0, 1]) +
                    struct.pack(">HHBQQQQ", 40000, 443, 6, 1500, 3, start, end) for src, start, end in records)
    sets = struct.pack(">HH", 2, len(tmpl) + 4) + tmpl + struct.pack(">HH", 300, len(data) + 4) + data
    return struct.pack(">HHIII", 10, 16 + len(sets), int(time.time()), seq, 0) + sets


def _send(stack: ServiceStack, seq: int) -> None:
    now = int(time.time() * 1000)
    send_udp(stack.ipfix_port, [_ipfix([("10.66.0.1", now - 1000, FAR_FUTURE_MS),
                                        ("10.66.0.2", now - 1000, FAR_FUTURE_MS + 1),
                                        ("10.19.70.1", YEAR_1970_MS - 5000, YEAR_1970_MS)], seq)])


def _metric(body: str, name: str, **labels) -> list[float]:
    """Every value of the samples of ``name`` with these labels (a restarted collector's old row stays
    in the store's health for a while, so one exporter may have two)."""
    want = {k: str(v) for k, v in labels.items()}
    out = []
    for line in body.splitlines():
        m = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name and all(dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")).get(k) == v
                                            for k, v in want.items()):
            out.append(float(m.group(3)))
    return out


def _row(stack: ServiceStack, client) -> dict | None:
    """The exporters reply's row of 127.0.0.1 from the running collector (its process id in its report)."""
    pid = stack.procs["collector"].proc.pid
    reply = client.exporters()
    ids = {c["collector"] for c in reply["collectors"] if (c.get("process") or {}).get("pid") == pid}
    rows = [e for e in reply["exporters"] if e.get("exporter") == "127.0.0.1" and e.get("collector") in ids]
    return rows[0] if rows else None


def _time_in_future(stack: ServiceStack, client) -> int:
    row = _row(stack, client)
    return int((row.get("decode_errors") or {}).get("time_in_future") or 0) if row else 0


def _all_pages_answer_200(http: httpx.Client) -> None:
    for path in PAGES:
        r = http.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:1000])


def _check(stack: ServiceStack, http: httpx.Client, datagrams: int) -> None:
    client = stack.client()
    try:
        for seq in range(datagrams):
            _send(stack, seq)
        # counted in flows (two records a datagram), per exporter and reason, by the running collector
        want = 2 * datagrams
        assert wait_until(lambda: _time_in_future(stack, client) == want, 20)
        assert _row(stack, client)["time_ahead_max_s"] >= (FAR_FUTURE_MS - int(time.time() * 1000)) // 1000
        body = wait_until(lambda: (b := http.get("/metrics").text) and want in _metric(
            b, "flowlens_exporter_decode_errors_total", exporter="127.0.0.1", reason="time_in_future") and b, 15)
        assert max(_metric(body, "flowlens_exporter_time_ahead_max_seconds", exporter="127.0.0.1")) > 9e15
        # the 1970 flow is stored, the far ones are not
        old = wait_until(lambda: client.flows(since=0, until=YEAR_1970_MS + 1).rows(), 15)
        assert {r["src_addr"] for r in old} == {"10.19.70.1"} and old[0]["time_end"] == YEAR_1970_MS
        assert "10.19.70.1" in http.get(OLD_FLOWS_PAGE).text  # shown on a page too, not only stored
        assert client.flows(src="10.66.0.0/16", since=0).rows() == []
        starts = [p["start_ms"] for p in client.status()["sqlite"]["partitions"]]
        assert starts and max(starts) < int(time.time() * 1000) + 86_400_000
        # the health advisory says how far ahead, and its page shows it
        adv = wait_until(lambda: [a for a in client.advisories(include_resolved=True)
                                  if a["key"] == "health:future 127.0.0.1/0"], 30)[0]
        assert adv["description"].startswith("Exporter 127.0.0.1 sends flow times 290 million years ahead: check its clock")
        assert "290 million years ahead" in http.get("/advisories?state=all").text
        _all_pages_answer_200(http)
    finally:
        client.close()


def test_far_future_and_1970_flows_over_udp_before_and_after_a_restart(tmp_path):
    stack = ServiceStack(tmp_path, ["store", "collector", "analyzer", "web"], analysis=FAST,
                         collector={"stats_interval": "0.5s"})
    with httpx.Client(base_url="http://" + stack.cfg["web"]["listen"], timeout=20) as http:
        try:
            stack.start()
            _check(stack, http, 1)
            assert set(stack.stop().values()) == {0}
            stack.start()  # the same config, the same SQLite file
            _all_pages_answer_200(http)
            _check(stack, http, 2)  # a new collector counts from 0: 4 is this run's, not the last one's
        finally:
            rcs = stack.stop()
    assert set(rcs.values()) == {0}, rcs


def _far_future_file(path: str) -> None:
    """What a store before the fix wrote: a partition in the year 289,995,580 beside one of now."""
    now = int(time.time() * 1000)
    w = WarmWriter(path, 3_600_000, 24, 64)
    b = FlowBatch.empty(2)
    b.columns["time_start"][:] = [now - 1000, now - 1000]
    b.columns["time_end"][:] = [FAR_FUTURE_MS, now - 500]
    b.columns["src_addr"][:] = addr.from_texts(["10.66.0.1", "10.0.0.1"])
    b.columns["exporter"][:] = addr.from_texts(["192.0.2.66"] * 2)
    b.columns["protocol"][:] = 6
    cols = {**b.columns, "seq": np.array([1, 2], dtype=np.int64)}
    assert w.write_flows(cols) == 2
    assert max(p[0] for p in w.partitions.values()) > now + 10**15
    w.close()


def test_a_far_future_partition_written_before_the_fix_is_pruned_at_store_start(tmp_path):
    stack = ServiceStack(tmp_path, ["store", "web"])
    _far_future_file(stack.cfg["storage"]["sqlite_path"])
    with httpx.Client(base_url="http://" + stack.cfg["web"]["listen"], timeout=20) as http:
        with stack:
            client = stack.client()
            try:
                sqlite = client.status()["sqlite"]
                assert sqlite["future_pruned_partitions"] == 1 and sqlite["future_pruned_flows"] == 1
                assert [p["rows"] for p in sqlite["partitions"]] == [1]
                assert [r["src_addr"] for r in client.flows(since=0).rows()] == ["10.0.0.1"]
            finally:
                client.close()
            assert any("far-future partitions pruned" in line for line in stack.procs["store"].lines)
            _all_pages_answer_200(http)
            assert _metric(http.get("/metrics").text, "flowlens_store_partitions_future_pruned_total") == [1]
