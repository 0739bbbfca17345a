"""The window's column buffer against a plain list of rows, and the window's views against the flows
in arrival order: moving the window's flows in front of the later ones (FlowWindow.view with
interval >= window) must not change what a run sees, nor in which order."""
import numpy as np
import pytest

from flowlens_analyzer import winbuf
from flowlens_analyzer.common import WINDOW_COLUMNS, view_from_batch
from flowlens_analyzer.window import FlowWindow
from flowmodel import addr
from flowmodel.schema import FLOW_COLUMNS

from flows import T0, batch


def rows(first: int, n: int, exporters=("192.0.2.1",)) -> dict:
    """Rows numbered from first: IPv4 sources, destinations IPv6 (a new one each) on every third row."""
    cols = {k: np.zeros(n, FLOW_COLUMNS[k][0]) for k in WINDOW_COLUMNS}
    cols["time_end"] = np.arange(first, first + n, dtype=np.int64)
    cols["exporter"] = addr.from_texts([exporters[i % len(exporters)] for i in range(n)])
    k = range(first, first + n)
    cols["src_addr"] = addr.from_texts([f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in k])
    cols["dst_addr"] = addr.from_texts([f"2001:db8::{i:x}" if i % 3 == 0 else "192.0.2.9" for i in k])
    return cols


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(winbuf, "BLOCK", 7)  # blocks smaller than the moves, so overlapping moves happen
    monkeypatch.setattr(winbuf, "MIN_CAPACITY", 5)


def test_buffer_matches_a_list_of_rows_under_appends_drops_keeps_and_partitions(small_blocks):
    rng = np.random.default_rng(7)
    sent = rows(0, 60_000)  # more than are ever appended
    buf = winbuf.FlowBuffer(200)
    ref, ref_ex, nxt = np.zeros(0, np.int64), [], 0
    exporters = ("192.0.2.1", "192.0.2.2", "2001:db8::1")
    for _ in range(3000):
        op = int(rng.integers(4))
        if op == 0:
            n = int(rng.integers(1, 40))
            cols = rows(nxt, n, exporters[: int(rng.integers(1, 4))])
            nxt += n
            over = max(0, len(buf) + n - 200)
            buf.drop_oldest(over)
            ref, ref_ex = ref[over:], ref_ex[over:]
            buf.append(cols)
            ref = np.concatenate([ref, cols["time_end"]])
            ref_ex += [bytes(e) for e in cols["exporter"]]
        elif op == 1 and len(buf):
            m = rng.random(len(buf)) < 0.7
            buf.keep(m)
            ref, ref_ex = ref[m], [e for e, k in zip(ref_ex, m) if k]
        elif op == 2 and len(buf):
            m = rng.random(len(buf)) < 0.5
            assert buf.partition(m) == m.sum()
            ref = np.concatenate([ref[m], ref[~m]])
            ref_ex = [e for e, k in zip(ref_ex, m) if k] + [e for e, k in zip(ref_ex, m) if not k]
        assert buf.column("time_end").tolist() == ref.tolist()
        assert [bytes(e) for e in buf.exporters[buf.column("exporter")]] == ref_ex
        for a in ("src_addr", "dst_addr"):
            assert buf.addresses(a).tolist() == sent[a][ref].tolist()
        assert buf.capacity <= 200 + max(200 // winbuf.SLACK, winbuf.BLOCK) and len(buf) <= 200
    buf.keep(buf.column("dst_addr_wide") & False)
    assert "dst_addr_v6" not in buf.cols  # the 16-byte columns go with the last IPv6 row


@pytest.mark.parametrize("watermark_s, partitions", [(4, True), (25, False)])
def test_tumbling_views_are_the_window_flows_in_arrival_order(monkeypatch, watermark_s, partitions):
    """Flows of three windows arrive interleaved (late ones among early ones); each run's view holds
    exactly its window's flows in the order they arrived, whichever way the view was made: with a short
    watermark, fewer later flows than window flows are kept at a run (the window's are moved in front),
    with a long one more (the window's are copied, at some runs at least)."""
    moved = []
    partition = winbuf.FlowBuffer.partition
    monkeypatch.setattr(winbuf.FlowBuffer, "partition", lambda self, m: moved.append(1) or partition(self, m))
    s = 1000
    w = FlowWindow(window_ms=10 * s, interval_ms=10 * s, watermark_ms=watermark_s * s, max_flows=10_000,
                   idle_after_ms=60 * s)
    rng = np.random.default_rng(3)
    ends = T0 + rng.integers(0, 30 * s, 3000)
    ends.sort()
    ends = ends + rng.integers(-(watermark_s - 1) * s, 1, len(ends))  # out of order, none late for the watermark
    sent = []
    for chunk in np.array_split(ends, 60):
        b = batch("10.0.0.1", "10.0.0.2", 443, src_port=np.arange(len(sent), len(sent) + len(chunk)) % 65536,
                  time_end=chunk)
        sent += list(zip(chunk.tolist(), b["src_port"].tolist()))
        w.add(b, wall_ms=T0 + 40 * s)
        for end in w.due():
            v = w.view(end)
            want = [x for x in sent if end - 10 * s <= x[0] < end]
            assert list(zip(v["time_end"].tolist(), v["src_port"].tolist())) == want
            assert v.factor("exporter")[1].tolist() == addr.from_texts(["192.0.2.1"]).tolist()
            w.release(end)
    assert w.counters["runs"] >= 2 and w.counters["late"] == 0
    assert moved if partitions else len(moved) < w.counters["runs"]


@pytest.mark.parametrize("family", ["ipv4", "mixed"])
def test_compact_view_answers_as_the_batch_does(family):
    """A window's view (IPv4 as 32 bits, IPv6 and exporters as ids) gives the same addresses, factors
    and equalities as a view of the batch itself (16-byte columns)."""
    rng = np.random.default_rng(5)
    hosts = [f"10.0.{i}.{j}" for i in range(3) for j in range(1, 6)] + ["0.0.0.0", "255.255.255.255"]
    if family == "mixed":
        hosts += ["2001:db8::1", "2001:db8::2", "::", "fe80::1"]
    n = 500
    src = [hosts[i] for i in rng.integers(0, len(hosts), n)]
    dst = [s if k % 7 == 0 else hosts[i] for k, (s, i) in enumerate(zip(src, rng.integers(0, len(hosts), n)))]
    b = batch(src, dst, 443, exporter=[("192.0.2.1", "2001:db8::ff", "192.0.2.2")[i] for i in rng.integers(0, 3, n)],
              time_end=T0 + np.arange(n, dtype=np.int64))
    w = FlowWindow(window_ms=60_000, interval_ms=60_000, watermark_ms=1000, max_flows=10_000, idle_after_ms=5000)
    w.add(b, wall_ms=T0 + 60_000)
    compact = w.view(T0 + 60_000)
    plain = view_from_batch(b, T0, T0 + 60_000)
    assert compact.count == plain.count == n
    assert compact.compact and compact["src_addr"].dtype == plain["src_addr"].dtype
    assert ("src_addr_v6" in compact.columns) == (family == "mixed")
    rows = np.flatnonzero(rng.random(n) < 0.3)
    for name in ("src_addr", "dst_addr", "exporter"):
        assert compact[name].tolist() == plain[name].tolist()
        for got, want in zip(compact.factor(name), plain.factor(name)):
            assert got.tolist() == want.tolist()
    for name in ("src_addr", "dst_addr"):
        assert compact.addresses(name, rows).tolist() == plain[name][rows].tolist()
    assert compact.equal("src_addr", "dst_addr").tolist() == (plain["src_addr"] == plain["dst_addr"]).tolist()
    assert compact.equal("src_addr", "dst_addr").sum() >= n // 7


def test_a_small_bound_allocates_little_and_keeps_the_newest():
    buf = winbuf.FlowBuffer(10)
    for first in range(0, 100, 7):
        over = max(0, len(buf) + 7 - 10)
        buf.drop_oldest(over)
        buf.append(rows(first, 7))
    assert buf.capacity <= 20
    assert buf.column("time_end").tolist() == list(range(95, 105))


def test_a_kept_flow_costs_60_bytes_and_a_tumbling_run_copies_only_the_later_flows():
    w = FlowWindow(window_ms=10_000, interval_ms=10_000, watermark_ms=2_000, max_flows=10_000, idle_after_ms=60_000)
    ends = T0 + np.arange(0, 12_500, 5, dtype=np.int64)  # 10 s of the window, then 2.5 s of later flows
    w.add(batch("10.0.0.1", "10.0.0.2", 443, time_end=ends), wall_ms=T0 + 60_000)
    assert sum(c.dtype.itemsize for c in w.buf.cols.values()) == 60
    [end] = list(w.due())
    v = w.view(end)
    assert v.count == 2000 and w.size == 2500
    kept = w.buf.column("time_end")
    assert np.shares_memory(v["time_end"], kept)  # the window's flows are not copied for the run
    assert v["time_end"].tolist() == ends[ends < end].tolist()
    w.release(end)
    assert w.buf.column("time_end").tolist() == ends[ends >= end].tolist()


def test_tables_stay_bounded_by_the_flows_kept():
    """Distinct IPv6 addresses and exporters without end, flows dropped at the bound: the exporter table
    holds about what the kept flows use, and the addresses stay right."""
    buf = winbuf.FlowBuffer(100)
    sent = {a: [] for a in ("src_addr", "dst_addr", "exporter")}
    for k in range(1500):
        cols = rows(k * 10, 10, exporters=(f"2001:db8:1::{k:x}",))
        for a in sent:
            sent[a] += [bytes(x) for x in cols[a]]
        buf.drop_oldest(max(0, len(buf) + 10 - 100))
        buf.append(cols)
        if k % 50 == 49:
            buf.keep(np.ones(len(buf), bool))  # a run: nothing older to drop, tables tidied
    assert len(buf.exporter_ids) <= 1024 + 50
    keep_from = len(sent["exporter"]) - len(buf)
    assert [bytes(x) for x in buf.exporters[buf.column("exporter")]] == sent["exporter"][keep_from:]
    for a in ("src_addr", "dst_addr"):
        assert [bytes(x) for x in buf.addresses(a)] == sent[a][keep_from:]
