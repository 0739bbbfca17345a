"""explore, top by interface/AS/DSCP, the new flow filters and flows by size against a real store
process: three hours of flows published on the bus, committed and sealed (blocks and rollups), read
back through StoreClient and `flowlens query`. Explore's totals are its series plus other and top's
totals; each series' filter fed to flows returns only that key's flows, as many as the series says;
the rollups' answer equals the raw rows' answer on the same flows; bad arguments get reasons."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from flowmodel import addr
from flowmodel.cli import main as cli_main
from flowmodel.client import StoreClient, StoreError
from flowmodel.schema import FlowBatch
from support.services import ServiceProcess, stack_config, wait_until, write_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "store"))
from store_testdata import make_batch  # noqa: E402
from test_store_service import Publisher, all_pages  # noqa: E402

HOUR = 3_600_000
BASE = (1_790_000_000_000 // HOUR) * HOUR  # three whole hours, long sealed by the time the test runs
WINDOW = {"since": BASE, "until": BASE + 3 * HOUR}


def site_batches() -> list[FlowBatch]:
    rng = np.random.default_rng(5)
    out = []
    for i in range(12):  # a batch every 15 minutes
        b = make_batch(1000, t0=BASE + i * 900_000 + 1_000, spacing_ms=800, seed=100 + i)
        n = b.count
        b.columns["src_addr"][:] = addr.from_texts([f"10.0.{a}.{c}" for a, c in rng.integers(0, 6, (n, 2))])
        b.columns["output_if"][:] = rng.integers(1, 4, n)
        b.columns["src_as"][:] = rng.choice([64500, 64501, 0], n)
        b.columns["dst_as"][:] = rng.choice([15169, 13335], n)
        b.columns["tos"][:] = rng.choice([0, 46 << 2, 10 << 2], n)
        out.append(b)
    return out


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explore")
    cfg = stack_config(tmp, store={"sqlite_retention": "3650d", "rollup_retention": "3650d", "ring_capacity": 2000})
    proc = ServiceProcess("store", write_config(tmp / "flowlens.yaml", cfg)).start()
    client = StoreClient(cfg["query"]["endpoint"], timeout_s=20, retries=1)
    pub = Publisher(cfg["bus"]["publish_endpoint"], "explore-test")
    try:
        pub.wait_live(client)
        batches = site_batches()
        for b in batches:
            pub.flows(b)
        sent = FlowBatch.concat(batches)
        wait_until(lambda: client.status()["flows_committed"] >= sent.count, timeout_s=30)

        def all_sealed():
            parts = client.status()["sqlite"]["partitions"]
            return len(parts) == 3 and all(p["sealed"] for p in parts)
        wait_until(all_sealed, timeout_s=60, interval_s=0.2)
        yield cfg, client, sent
    finally:
        pub.close()
        client.close()
        proc.stop()


def flows_of(client, **filters) -> FlowBatch:
    return FlowBatch.concat([p.batch for p in all_pages(client, **filters)])


def key_of(by: str, b: FlowBatch) -> list:
    if by == "in_if":
        return list(zip(addr.column_to_text(b["exporter"]), b["input_if"].tolist()))
    if by == "src":
        return addr.column_to_text(b["src_addr"])
    if by == "dscp":
        return (b["tos"] >> 2).tolist()
    if by == "dst_as":
        return b["dst_as"].tolist()
    raise ValueError(by)


@pytest.mark.parametrize("by", ["in_if", "src", "dscp", "dst_as"])
def test_explore_series_add_up_and_their_filters_select_their_flows(sealed, by):
    _cfg, client, sent = sealed
    r = client.explore(by, metric="flows", limit=3, **WINDOW)
    assert r["source"] == "rollups" and not r["approximate"]
    assert r["totals"]["flows"] == sent.count
    assert sum(s["total"] for s in r["series"]) + r["other"]["total"] == sent.count
    assert all(len(s["values"]) == len(r["times"]) for s in r["series"] + [r["other"]])
    top = client.top(by=by, metric="flows", limit=3, scaled=True, **WINDOW)
    assert top["totals"] == r["totals"]
    assert [(row["key"], row["flows"]) for row in top["rows"]] == [(s["key"], s["total"]) for s in r["series"]]
    keys = set()
    for s in r["series"]:
        got = flows_of(client, **WINDOW, **s["filter"])
        assert got.count == s["total"] > 0
        ks = set(key_of(by, got))
        assert len(ks) == 1  # only flows of this key
        keys |= ks
    assert len(keys) == len(r["series"])


def test_rollups_answer_equals_raw_rows_answer(sealed):
    _cfg, client, _sent = sealed
    for by in ("src", "out_if", "src_as"):
        rolled = client.explore(by, limit=5, step=900, **WINDOW)
        raw = client.explore(by, limit=5, step=900, addr="::/0", **WINDOW)  # every flow, but not a rollup key
        assert rolled["source"] == "rollups" and raw["source"] == "sqlite"
        for k in ("times", "series", "other", "totals", "step_ms"):
            assert rolled[k] == raw[k], (by, k)


def test_new_filters_and_flows_by_size(sealed):
    _cfg, client, sent = sealed
    m = (sent["tos"] >> 2 == 46) & (sent["src_as"] == 64500) & (sent["output_if"] == 2)
    got = flows_of(client, **WINDOW, dscp=46, src_as=64500, output_if=2)
    assert got.count == int(m.sum()) > 0
    assert sorted(got["time_end"].tolist()) == sorted(sent["time_end"][m].tolist())
    biggest = client.flows(limit=25, order="bytes", **WINDOW)
    assert biggest.batch["bytes"].tolist() == sorted(sent["bytes"].tolist(), reverse=True)[:25]
    nxt = client.flows(limit=25, order="bytes", cursor=biggest.next_cursor, **WINDOW)
    assert nxt.batch["bytes"].tolist() == sorted(sent["bytes"].tolist(), reverse=True)[25:50]


@pytest.mark.parametrize("args,words", [
    ({"by": "colour", **WINDOW}, "by 'colour' is not one of"),
    ({"by": "src"}, "explore needs a since time"),
    ({"by": "src", "limit": 99, **WINDOW}, "limit must be at most 50"),
    ({"by": "src", "input_if": "eth0", **WINDOW}, "input_if 'eth0' is not a whole number"),
])
def test_bad_explore_arguments_get_reasons(sealed, args, words):
    _cfg, client, _sent = sealed
    with pytest.raises(StoreError, match=words):
        client.request("explore", **args)


def test_cli_explore_by_interface(sealed, capsys):
    cfg, client, _sent = sealed
    argv = ["query", "explore", "--by", "in_if", "--since", str(WINDOW["since"]), "--until", str(WINDOW["until"]),
            "--endpoint", cfg["query"]["endpoint"], "--metric", "flows"]
    assert cli_main(argv + ["--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = client.explore("in_if", metric="flows", **WINDOW)
    assert sum(r["flows"] for r in rows) == want["totals"]["flows"]
    assert {r["key"] for r in rows} == {s["key"] for s in want["series"]} | {"other"}
    assert cli_main(argv + ["--format", "table"]) == 0
    table = capsys.readouterr().out
    assert want["series"][0]["key"] in table and "share_%" in table
    assert cli_main(argv[:2] + ["--by", "in_if", "--dscp", "77", "--since", "1h"]) == 2
    assert "dscp 77 is outside 0-63" in capsys.readouterr().err
