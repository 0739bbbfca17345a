"""Enrichment cost on one core: the collector's work per flow (decode a receive group, fill AS
numbers and countries, encode the bus batch) with enrichment off and on, side by side in one run.

NetFlow v5 datagrams of 30 records, half the addresses drawn from the networks of MaxMind's test
databases (tests/data) and half at random, so lookups both hit and miss. Enrichment runs with the
test databases, and with tables of a real database's size (1 M IPv4 and 300 k IPv6 ranges of AS
numbers, 300 k IPv4 ranges of countries: GeoLite2-ASN and -Country are about that) made up at
random, since a lookup's cost grows with the table. Next to it, the other design the issue names:
each batch's distinct addresses (np.unique) asked of the maxminddb reader through a bounded LRU
cache of 65,536 addresses, on the same random-address stream and on one of 4,096 repeating hosts.
Rates are flows per CPU second of this thread (time.thread_time). Reading a database at start is
timed on a made-up search tree of a real database's size, plus the decoding of distinct records.

Then the whole path as bench.ingest measures it: two collector processes, one with the test
databases configured and one without, get the same ramp of v5 rates over loopback UDP, interleaved
rate by rate; each reports its highest lossless rate (every flow on the bus, no kernel drop).
"""
from __future__ import annotations

import functools
import ipaddress
import os
import struct
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import maxminddb
import numpy as np

from flowlens_collector.decode import Decoder
from flowlens_collector.enrich import Enricher, asn_of, country_of
from flowlens_collector import geotable, mmdbtree
from flowlens_collector.geotable import RangeTable
from flowlens_collector.memory import tune_malloc
from flowmodel import bus
from flowmodel.config import SETTINGS
from flowmodel.geo import address_labels

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
ASN_DB, COUNTRY_DB = str(DATA / "GeoLite2-ASN-Test.mmdb"), str(DATA / "GeoLite2-Country-Test.mmdb")
FLOWS = int(os.environ.get("BENCH_ENRICH_FLOWS", "600000"))
GROUP = SETTINGS["collector.receive_group"].default
SOURCE = ("192.0.2.1", 40000)
PER = 30
CACHE_MAX = 65_536


def _db_addresses(rng, n: int) -> np.ndarray:
    """n IPv4 addresses (uint32) inside the test databases' networks."""
    nets = []
    for path in (ASN_DB, COUNTRY_DB):
        with maxminddb.open_database(path) as r:
            nets += [(int(net.network_address), net.num_addresses) for net, _ in r if net.version == 4]
    pick = rng.integers(0, len(nets), n)
    base = np.array([nets[i][0] for i in pick], np.uint64)
    span = np.array([nets[i][1] for i in pick], np.uint64)
    return (base + (rng.random(n) * span).astype(np.uint64)).astype(np.uint32)


def v5_packets(flows: int, rng, hosts: int = 0) -> list[bytes]:
    """Datagrams whose addresses are half from the databases, half random (or, with ``hosts``, all
    drawn from that many addresses)."""
    n = flows // PER * PER
    if hosts:
        pool = np.concatenate([_db_addresses(rng, hosts // 2), rng.integers(0, 1 << 32, hosts - hosts // 2, np.uint32)])
        addrs = pool[rng.integers(0, len(pool), 2 * n)]
    else:
        addrs = np.where(rng.random(2 * n) < 0.5, _db_addresses(rng, 2 * n), rng.integers(0, 1 << 32, 2 * n, np.uint32))
    recs = rng.integers(0, 256, size=(n, 48), dtype=np.uint8)
    recs[:, 0:4] = addrs[:n].astype(">u4").view(np.uint8).reshape(n, 4)
    recs[:, 4:8] = addrs[n:].astype(">u4").view(np.uint8).reshape(n, 4)
    recs[:, 40:44] = 0   # src_as, dst_as: the exporter knows none
    out = []
    for i in range(n // PER):
        head = struct.pack(">HHIIIIBBH", 5, PER, 3_600_000, 1_700_000_000 + i // 1000, 0, i * PER, 0, 0, 0)
        out.append(head + recs[i * PER:(i + 1) * PER].tobytes())
    return out


def synthetic_table(rng, v4_ranges: int, v6_ranges: int, dtype, values: int) -> RangeTable:
    def starts(count, top):
        s = np.unique(rng.integers(1, top, count, dtype=np.uint64))
        return np.concatenate([[0], s]).astype(np.uint64)

    s4, s6 = starts(v4_ranges, 1 << 32), starts(v6_ranges, 1 << 62)
    return RangeTable(s4.astype(np.uint32), rng.integers(0, values, len(s4)).astype(dtype),
                      s6, rng.integers(0, values, len(s6)).astype(dtype))


def synthetic_tree_read_s(depth: int = 20) -> tuple[float, int]:
    """Seconds to turn a complete tree of 2**depth IPv4 networks into a range table's boundaries."""
    inner = (1 << depth) - 1
    child = np.arange(inner, dtype=np.uint64)

    def record(c):  # a child past the inner nodes is a leaf: a data record, 65,536 distinct ones
        return np.where(c < inner, c, inner + 16 + (c - inner) % 65536).astype(np.uint32)

    left, right = record(2 * child + 1), record(2 * child + 2)
    t0 = time.perf_counter()
    p, ln, r, _open = mmdbtree.walk(left, right, inner, 0, 32)
    geotable._sorted_boundaries([p, ln, r], 32)
    return time.perf_counter() - t0, len(p)


def reader_get_us(n: int = 20_000) -> float:
    rng = np.random.default_rng(3)
    addrs = [str(ipaddress.IPv4Address(int(a))) for a in _db_addresses(rng, n)]
    with maxminddb.open_database(ASN_DB) as r:
        t0 = time.perf_counter()
        for a in addrs:
            r.get(a)
        return (time.perf_counter() - t0) / n * 1e6


class CachedReaderLookup:
    """The alternative: distinct addresses of a batch, a bounded LRU, the reader on a miss."""

    def __init__(self):
        self.asn = maxminddb.open_database(ASN_DB)
        self.country = maxminddb.open_database(COUNTRY_DB)
        self.cache: OrderedDict[bytes, tuple[int, int]] = OrderedDict()

    def apply(self, batch) -> None:
        for side in ("src", "dst"):
            col = batch.columns[f"{side}_addr"]
            uniq, inverse = np.unique(np.ascontiguousarray(col).view(">u8").reshape(-1, 2), axis=0, return_inverse=True)
            asn = np.zeros(len(uniq), np.uint32)
            cc = np.zeros(len(uniq), np.uint16)
            for i, words in enumerate(uniq.tolist()):
                key = (words[0], words[1])
                hit = self.cache.get(key)
                if hit is None:
                    ip = ipaddress.IPv6Address((words[0] << 64) | words[1])
                    ip = ip.ipv4_mapped or ip
                    a, c = self.asn.get(ip), self.country.get(ip)
                    hit = (asn_of(a) if isinstance(a, dict) else 0, country_of(c) if isinstance(c, dict) else 0)
                    self.cache[key] = hit
                    if len(self.cache) > CACHE_MAX:
                        self.cache.popitem(last=False)
                else:
                    self.cache.move_to_end(key)
                asn[i], cc[i] = hit
            inverse = inverse.reshape(-1)
            batch.columns[f"{side}_as"] = asn[inverse]
            labels = address_labels(col)
            batch.columns[f"{side}_country"] = np.where(labels != 0, labels, cc[inverse])


def rate(packets: list[bytes], enrich=None) -> float:
    dec = Decoder()
    seqr = bus.Sequencer("bench")
    sources = [SOURCE] * GROUP
    flows = 0
    t0 = time.thread_time()
    for i in range(0, len(packets), GROUP):
        chunk = packets[i:i + GROUP]
        batch = dec.decode(chunk, sources[:len(chunk)], 0)
        if enrich is not None:
            enrich(batch)
        bus.encode_batch([batch], seqr)
        flows += batch.count
    return flows / (time.thread_time() - t0)


INGEST_BUDGET_S = float(os.environ.get("BENCH_ENRICH_INGEST_S", "60"))


def ingest(report) -> None:
    from . import ingest as ing

    if INGEST_BUDGET_S <= 0:
        return
    with tempfile.TemporaryDirectory(prefix="flowlens-bench-enrich-") as d:
        off_dir, on_dir = Path(d) / "off", Path(d) / "on"
        off_dir.mkdir()
        on_dir.mkdir()
        with ing.collector_receiver(off_dir) as off, \
                ing.collector_receiver(on_dir, enrichment={"geoip_asn": ASN_DB, "geoip_country": COUNTRY_DB}) as on:
            receivers = {"enrichment off": functools.partial(off, 5), "enrichment on ": functools.partial(on, 5)}
            steps, cut = ing.interleaved_ramp(receivers, INGEST_BUDGET_S)
    for label, name in (("enrichment off", "off"), ("enrichment on ", "on")):
        b = ing.best(steps[label])
        report("enrich", f"collector lossless v5 ingest, enrichment {name}", b.achieved if b else 0.0, "flows/s",
               ing._note(steps[label], b, cut))
        if b:
            report("enrich", f"collector CPU per flow at that rate, enrichment {name}", b.cpu_us_per_flow, "us/flow",
                   "decode + enrich + batch + publish")


def run(report) -> None:
    tune_malloc()
    rng = np.random.default_rng(11)
    mixed = v5_packets(FLOWS, rng)
    repeating = v5_packets(FLOWS, rng, hosts=4096)
    t0 = time.perf_counter()
    test_dbs = Enricher(ASN_DB, COUNTRY_DB)
    test_dbs.open()
    build_s = time.perf_counter() - t0
    networks = sum(1 for p in (ASN_DB, COUNTRY_DB) for _ in maxminddb.open_database(p))
    report("enrich", "test databases read at start", build_s * 1000, "ms", f"{networks} networks, both files")
    tree_s, tree_networks = synthetic_tree_read_s()
    get_us = reader_get_us()
    report("enrich", f"search tree of {tree_networks:,} networks read", tree_s, "s",
           "made-up complete tree of 28-bit records: walk, ranges, merge (no record decoding)")
    report("enrich", "one distinct record decoded", get_us, "us",
           f"GeoLite2-ASN has about 80,000 distinct records: {80_000 * get_us / 1e6:.1f} s more")
    full = Enricher()
    full.asn = synthetic_table(rng, 1_000_000, 300_000, np.uint32, 400_000)
    full.country = synthetic_table(rng, 300_000, 100_000, np.uint16, 1 << 16)
    cases = [("off", None), ("on, test databases", test_dbs.apply), ("on, real-size tables", full.apply)]
    rate(mixed[:200])  # warm-up
    best = {name: 0.0 for name, _ in cases}
    for _ in range(3):  # interleaved, so load on the machine hits every case alike
        for name, fn in cases:
            best[name] = max(best[name], rate(mixed, fn))
    desc = f"v5, {PER} records/datagram, groups of {GROUP}, {FLOWS:,} flows, half the addresses in the databases"
    for name, _fn in cases:
        report("enrich", f"decode+enrich+encode, enrichment {name}", best[name], "flows/s", desc)
    report("enrich", "cost of real-size tables", best["off"] / best["on, real-size tables"], "x",
           f"off / on: {full.asn.nbytes + full.country.nbytes:,} bytes of tables")
    for stream, packets in (("random addresses", mixed), ("4,096 repeating hosts", repeating)):
        rate(packets[:50], CachedReaderLookup().apply)
        report("enrich", f"alternative: np.unique + LRU + reader, {stream}",
               rate(packets, CachedReaderLookup().apply), "flows/s", "the same decode and encode around it")
    report("enrich", "table lookup, 4,096 repeating hosts", rate(repeating, full.apply), "flows/s", "real-size tables")
    ingest(report)


if __name__ == "__main__":
    def _print(section, name, value, unit="", note=""):
        print(f"{section:8} {name:52} {value:>14,.1f} {unit:8} {note}")

    run(_print)
