"""The anomaly baseline seeded from a real store process: flows published on the bus with times spread
over the last day (one exporter sampling 1 in 10), then the analyzer's seed_from_store reads hourly
sums into the hour-of-day/week profiles and per-minute rows into the ring, scaled and limited to the
anomaly_max_keys biggest keys; the analyzer process logs what it seeded and reports its config."""
from __future__ import annotations

import numpy as np
import pytest
import zmq

from flowmodel import addr, bus
from flowmodel.client import StoreClient
from flowmodel.config import load_config
from flowmodel.schema import FlowBatch
from support.services import ServiceProcess, stack_config, wait_until, write_config

MIN, HOUR = 60_000, 3_600_000
A, B = "192.0.2.1", "192.0.2.2"  # B samples 1 in 10
BIG = {"10.1.1.0/24": A, "10.2.2.0/24": B, "10.3.3.0/24": A}
SMALL = [f"10.9.{i}.0/24" for i in range(10)]  # below the top 5: only 10.9.9 and 10.9.8 make it
MAX_KEYS = 5


def flows(t_end: list[int], dst: list[str], nbytes: list[int], exporter: list[str], rate: list[int]) -> FlowBatch:
    n = len(t_end)
    return FlowBatch({
        "time_start": np.array(t_end, np.int64) - 500, "time_end": np.array(t_end, np.int64),
        "src_addr": addr.from_texts(["203.0.113.7"] * n), "dst_addr": addr.from_texts([d.replace("0/24", "5") for d in dst]),
        "src_port": np.full(n, 443, np.uint16), "dst_port": np.full(n, 50000, np.uint16),
        "protocol": np.full(n, 6, np.uint8), "bytes": np.array(nbytes, np.uint64), "packets": np.ones(n, np.uint64),
        "sampling_rate": np.array(rate, np.uint32), "exporter": addr.from_texts(exporter)}, n)


def traffic(now: int):
    """Flows and the scaled bytes expected per (hour number, prefix) and per minute number of the recent
    ones. Hours now_hour-20 .. now_hour-2 (hour -10 silent for everyone; 10.3.3.0/24 from hour -6 on,
    quiet in hour -3); recent minutes 15 and 5 minutes ago."""
    now_hour = now // HOUR
    rows, hourly, recent = [], {}, {}
    for back in range(20, 1, -1):
        h = now_hour - back
        if back == 10:
            continue
        for prefix, exp in BIG.items():
            if prefix == "10.3.3.0/24" and (back > 6 or back == 3):
                continue
            for minute in (5, 35):
                exported = 1000 * back + minute + (7 if prefix == "10.3.3.0/24" else 0)
                rate = 10 if exp == B else 1
                rows.append((h * HOUR + minute * MIN + 1000, prefix, exported, exp, rate))
                hourly[(h, prefix)] = hourly.get((h, prefix), 0) + exported * rate
        for i, prefix in enumerate(SMALL):
            rows.append((h * HOUR + 1000, prefix, 100 + i, A, 1))
            hourly[(h, prefix)] = 100 + i
    for ago, nbytes in ((15, 4000), (5, 9000)):
        m = (now - ago * MIN) // MIN
        for prefix, exp in BIG.items():
            rate = 10 if exp == B else 1
            rows.append((m * MIN + 2000, prefix, nbytes, exp, rate))
            recent[(m, prefix)] = nbytes * rate
    t, d, b, e, r = (list(c) for c in zip(*rows))
    return flows(t, d, b, e, r), hourly, recent


def expected_rows(hourly: dict, recent: dict, keys: set) -> tuple[int, int]:
    """Rows the store should send for these prefixes: hourly (prefix + exporter), per-minute."""
    exporter_hours = {(h, BIG.get(p, A)) for (h, p) in hourly}
    return (sum(1 for (_h, p) in hourly if p in keys) + len(exporter_hours),
            len(recent) + len({(m, BIG[p]) for (m, p) in recent}))


@pytest.fixture
def store(tmp_path):
    # query_max_rows 1: the store's reply cap is 100 rollup rows (x 100), which the analyzer also bounds itself by
    cfg = stack_config(tmp_path, store={"sqlite_retention": "30d", "rollup_retention": "30d", "ring_capacity": 5000,
                                        "query_max_rows": 1},
                       analysis={"anomaly_baseline_window": "1d", "anomaly_history_minutes": 60,
                                 "anomaly_max_keys": MAX_KEYS, "health_interval": "1s"})
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    proc = ServiceProcess("store", path).start()
    client = StoreClient(cfg["query"]["endpoint"], timeout_s=10, retries=0)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(cfg["bus"]["publish_endpoint"])
    yield cfg, path, client, pub
    pub.close(linger=0)
    ctx.term()
    client.close()
    proc.stop()


def publish(cfg, client, pub, batch: FlowBatch) -> None:
    """Empty probe batches until the store sees the publisher (PUB/SUB joins late), then the flows,
    then wait until they are committed."""
    seq = bus.Sequencer("collector@seed-test:1")
    wait_until(lambda: (pub.send_multipart([bus.flows_topic(9), bus.encode_batch(FlowBatch.empty(0), seq)]),
                        seq.source in client.status()["bus"]["sources"])[1], timeout_s=15, interval_s=0.05)
    before = client.status()["flows_committed"]
    pub.send_multipart([bus.flows_topic(9), bus.encode_batch(batch, seq)])
    wait_until(lambda: client.status()["flows_committed"] >= before + batch.count, timeout_s=15, interval_s=0.05)


def test_seed_loads_scaled_hourly_profiles_and_recent_minutes_of_the_top_keys(store):
    from flowlens_analyzer import anomaly
    from flowlens_analyzer.service import AnalyzerService

    cfg, path, client, pub = store
    now = bus.now_ms()
    if now % HOUR > HOUR - 2 * MIN or now % HOUR < 2 * MIN:  # keep the hours the test computes those the seed reads
        wait_until(lambda: 3 * MIN < bus.now_ms() % HOUR < HOUR - 3 * MIN, timeout_s=250, interval_s=1)
        now = bus.now_ms()
    batch, hourly, recent = traffic(now)
    publish(cfg, client, pub, batch)

    service = AnalyzerService(load_config(path))
    report = service.seed_from_store(client)
    assert report["errors"] == []
    assert report["hours"] == 20  # full hours of [now - 1 day, the hour of now - 60 min), at most 100 rows / top 5
    hist = service.engine.states[anomaly.NAME]["history"]["dst_prefix"]
    want_keys = set(BIG) | {"10.9.9.0/24", "10.9.8.0/24"}
    assert {addr.prefix_text(k, 24, 64) for k in hist.rows} == want_keys  # top 5 by bytes over the window
    assert (report["hourly_rows"], report["minute_rows"]) == expected_rows(hourly, recent, want_keys)
    for prefix in BIG:
        row = hist.rows[addr.to_bytes(prefix.split("/")[0])]
        hours = sorted(h for (h, p) in hourly if p == prefix)
        for h in range(hours[0] - 2, now // HOUR - 1):
            expect_n = 60 if (h >= hours[0] and h != now // HOUR - 10) else 0  # silent hour: nobody counted
            assert hist.hod_n[row, h % 24] == expect_n, (prefix, now // HOUR - h)
            assert hist.how_n[row, h % 168] == expect_n
            assert hist.hod_sum[row, h % 24] == hourly.get((h, prefix), 0), (prefix, now // HOUR - h)
            assert hist.how_sum[row, h % 168] == hourly.get((h, prefix), 0)
    # the quiet hour of 10.3.3.0/24 (after its first) counts as 60 zero minutes; the sampled prefix is scaled
    row3 = hist.rows[addr.to_bytes("10.3.3.0")]
    assert hist.hod_n[row3, (now // HOUR - 3) % 24] == 60 and hist.hod_sum[row3, (now // HOUR - 3) % 24] == 0
    row2 = hist.rows[addr.to_bytes("10.2.2.0")]
    assert hist.hod_sum[row2, (now // HOUR - 2) % 24] == 10 * (2035 + 2005)
    # the recent minutes are in the ring (nothing older than the ring was folded on the way)
    for (m, prefix), nbytes in recent.items():
        row = hist.rows[addr.to_bytes(prefix.split("/")[0])]
        assert hist.col_minute[m % hist.M] == m
        assert hist.hist[row, m % hist.M] == nbytes
    # per exporter: B's bytes times 10, A's (all but 10.2.2.0/24, the small prefixes too) as they are
    ex = service.engine.states[anomaly.NAME]["history"]["exporter"]
    assert {addr.to_text(k) for k in ex.rows} == {A, B}
    h = now // HOUR - 4
    assert ex.hod_sum[ex.rows[addr.to_bytes(B)], h % 24] == hourly[(h, "10.2.2.0/24")]
    assert ex.hod_sum[ex.rows[addr.to_bytes(A)], h % 24] == sum(v for (hh, p), v in hourly.items() if hh == h and p != "10.2.2.0/24")
    m5 = (now - 5 * MIN) // MIN
    assert ex.hist[ex.rows[addr.to_bytes(B)], m5 % ex.M] == 9000 * 10
    assert ex.hist[ex.rows[addr.to_bytes(A)], m5 % ex.M] == 9000 * 2


def test_a_refused_part_is_skipped_and_the_analyzer_process_seeds_and_reports_its_config(store, tmp_path):
    from flowlens_analyzer.service import AnalyzerService

    cfg, path, client, pub = store
    now = bus.now_ms()
    batch, hourly, recent = traffic(now)
    publish(cfg, client, pub, batch)
    # An analyzer that takes the store's cap for larger than it is and wants every key: the store
    # refuses the hourly prefix read with its reason; seeding goes on with the other parts.
    hopeful = AnalyzerService(load_config(write_config(tmp_path / "analyzer.yaml", {
        **cfg, "storage": {**cfg["storage"], "query_max_rows": 1000}, "analysis": {**cfg["analysis"], "anomaly_max_keys": 1000}})))
    report = hopeful.seed_from_store(client)
    [error] = report["errors"]
    assert error.startswith("dst_prefix step 3600: more than 100 rollup rows"), error
    assert report["minute_rows"] == expected_rows(hourly, recent, set())[1] and report["hourly_rows"] > 0  # exporters

    analyzer = ServiceProcess("analyzer", path).start()
    try:
        [line] = [ln for ln in analyzer.lines if "baseline seeded from store rollups" in ln]
        hourly_rows, minute_rows = expected_rows(hourly, recent, set(BIG) | {"10.9.9.0/24", "10.9.8.0/24"})
        assert f"hourly_rows={hourly_rows} " in line and f"minute_rows={minute_rows} " in line, line

        def reported():
            svc = [s for s in client.status()["services"] if s["service"] == "analyzer"]
            return svc and svc[0]["config"]
        conf = wait_until(reported, timeout_s=15, interval_s=0.2)
        assert conf["analysis.anomaly_max_keys"] == MAX_KEYS and conf["analysis.anomaly_baseline_window"] == 86400
        assert conf["query.endpoint"] == cfg["query"]["endpoint"] and "storage.sqlite_path" not in conf
    finally:
        assert analyzer.stop() == 0
