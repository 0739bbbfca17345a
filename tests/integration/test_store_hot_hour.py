"""The real store answering a dashboard over the hour still filling (no rollups yet): flows published on
the bus in two rounds, the second after the first was asked about. Tops and the chart's series equal
plain sums of the flows sent both times, and the second round grew the kept sums of the first
(status queries.hot_cache) instead of reading the hour's blocks again."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flowmodel import addr
from flowmodel.client import StoreClient
from flowmodel.schema import FlowBatch
from support.services import ServiceProcess, stack_config, wait_until, write_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_store_service import Publisher  # noqa: E402

ROUND_FLOWS = 80_000  # a round fills at least one 32,768-row block in any partition it touches
BATCH = 4096
PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP"}  # as the store names them in a top's keys


def round_flows(now: int, seed: int) -> FlowBatch:
    """ROUND_FLOWS flows over the last 30 minutes: repeating sources, many destinations, some sampled."""
    rng = np.random.default_rng(seed)
    n = ROUND_FLOWS
    b = FlowBatch.empty(n)
    te = np.sort(rng.integers(now - 1_800_000, now - 1000, n))
    b.columns["time_end"][:] = te
    b.columns["time_start"][:] = te - rng.integers(0, 60_000, n)
    b.columns["src_addr"][:] = addr.ipv4_column(np.uint32(0x0A000000) + rng.integers(0, 300, n).astype(np.uint32))
    b.columns["dst_addr"][:] = addr.ipv4_column(np.uint32(0xC0A80000) + rng.integers(0, 20_000, n).astype(np.uint32))
    b.columns["protocol"][:] = rng.choice([6, 17, 1], n)
    b.columns["src_port"][:] = rng.integers(1024, 65535, n)
    b.columns["dst_port"][:] = rng.choice([53, 80, 443], n)
    b.columns["bytes"][:] = rng.integers(40, 1_000_000, n)
    b.columns["packets"][:] = rng.integers(1, 1000, n)
    b.columns["sampling_rate"][:] = np.where(rng.random(n) < 0.2, 100, 1)
    b.columns["exporter"][:] = addr.from_texts(["127.0.0.1"])[0]
    b.columns["flow_version"][:] = 10
    return b


def expected_top(flows: FlowBatch, column: str, since: int, until: int) -> tuple[list, dict]:
    m = (flows["time_end"] >= since) & (flows["time_end"] < until)
    rate = np.maximum(flows["sampling_rate"][m], 1).astype(np.uint64)
    b = flows["bytes"][m] * rate
    keys, inv = np.unique(flows[column][m], return_inverse=True)
    sums = np.bincount(inv, weights=b.astype(np.float64))  # exact: sums stay far under 2**53
    order = np.argsort(-sums, kind="stable")[:10]
    texts = addr.column_to_text(keys[order]) if column.endswith("addr") else [PROTOCOLS[int(k)] for k in keys[order]]
    return list(zip(texts, sums[order].astype(np.int64).tolist())), {"bytes": int(b.sum()), "flows": int(m.sum())}


@pytest.fixture
def store(tmp_path):
    cfg = stack_config(tmp_path, store={"ring_capacity": 5000, "write_queue_batches": 1024},
                       bus={"queue_bytes": "256MiB"})
    proc = ServiceProcess("store", write_config(tmp_path / "flowlens.yaml", cfg)).start()
    client = StoreClient(cfg["query"]["endpoint"], timeout_s=20, retries=0)
    pub = Publisher(cfg["bus"]["publish_endpoint"], "hot-hour-test")
    yield client, pub
    pub.close()
    client.close()
    proc.stop()


def test_dashboard_tops_and_series_of_the_filling_hour_are_exact_and_grow_kept_sums(store):
    client, pub = store
    pub.wait_live(client)
    now = int(time.time() * 1000)
    sent = []
    for rnd in range(2):
        flows = round_flows(now, seed=rnd)
        for i in range(0, flows.count, BATCH):
            pub.flows(FlowBatch({k: v[i:i + BATCH] for k, v in flows.columns.items()}))
        sent.append(flows)
        total = sum(f.count for f in sent)
        since, until = now - 3_600_000, now + 1
        wait_until(lambda: client.top(by="protocol", since=since, until=until)["totals"]["flows"] == total,
                   timeout_s=60, interval_s=0.2)
        allf = FlowBatch.concat(sent)
        for by, column in (("src", "src_addr"), ("dst", "dst_addr"), ("protocol", "protocol")):
            got = client.top(by=by, limit=10, scaled=True, since=since, until=until)
            want_rows, want_totals = expected_top(allf, column, since, until)
            assert [(r["key"], r["bytes"]) for r in got["rows"]] == want_rows, (rnd, by)
            assert got["totals"]["bytes"] == want_totals["bytes"] and got["totals"]["flows"] == want_totals["flows"]
        series = client.series(step=60, scaled=True, since=since, until=until)
        rate = np.maximum(allf["sampling_rate"], 1).astype(np.uint64)
        steps = allf["time_end"] // 60_000 * 60_000
        for t, b, _p, n in series["points"]:
            m = steps == t
            assert (b, n) == (int((allf["bytes"][m] * rate[m]).sum()), int(m.sum())), t
        assert sum(p[3] for p in series["points"]) == total
        hot = client.status()["queries"]["hot_cache"]
        assert hot is not None and hot["runs"] > 0 and hot["bytes"] > 0, hot
    # the second round's questions found the first round's sums and added the new blocks to them
    assert hot["hits"] > 0 and hot["blocks_merged"] > 0, hot
