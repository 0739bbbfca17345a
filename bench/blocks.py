"""Warm-tier block codec: disk bytes per flow and encode/decode time of each encoding alternative,
on bench.flowgen's medium site (116 flows/s), against nfdump -y's 44 bytes/flow (issue 12).

Bytes per flow count every column blob plus the block's msgpack'd stats (Bloom filter included).
Decode is the columns a "top sources by bytes" query reads: time_end, src_addr, bytes. Times are
the best of 3 per block, averaged over the blocks, on one thread.
"""
from __future__ import annotations

import time

import msgpack

from flowlens_store import blocks
from flowlens_store.blocks import BLOCK_DTYPES, Options, decode_block, encode_block

from .flowgen import generate

FLOWS = 12 * 32_768
RATE = 116   # flows/s
SEED = 1
QUERY_COLUMNS = ("time_end", "src_addr", "bytes")
NFDUMP_BYTES_PER_FLOW = 44
PER_ROWS = 32_768   # times are reported per this many rows, whatever the block size

CHOSEN = Options()
ALTERNATIVES = [   # (name, options, rows per block)
    ("plain full width, no compression", Options(codec="raw", shuffle=False, narrow=False, delta=False,
                                                 dict_addresses=False, duration=False), 32_768),
    ("plain full width + zstd 1", Options(shuffle=False, narrow=False, delta=False, dict_addresses=False,
                                          duration=False), 32_768),
    ("narrow (FOR) + zstd 1", Options(shuffle=False, delta=False, dict_addresses=False, duration=False), 32_768),
    ("narrow + delta + duration + zstd 1", Options(shuffle=False, dict_addresses=False), 32_768),
    ("... + byte shuffle", Options(dict_addresses=False), 32_768),
    ("... + address dictionary (chosen)", CHOSEN, 32_768),
    ("chosen without byte shuffle", Options(shuffle=False), 32_768),
    ("chosen + dictionary of int columns", Options(dictionary=True), 32_768),
    ("chosen at zstd 3", Options(level=3), 32_768),
    ("chosen at zstd 6", Options(level=6), 32_768),
    ("chosen with lz4 instead of zstd", Options(codec="lz4"), 32_768),
    ("chosen, 16,384-row blocks", CHOSEN, 16_384),
    ("chosen, 65,536-row blocks", CHOSEN, 65_536),
]


def measure(cols: dict, options: Options, rows: int) -> dict:
    n = len(cols["time_end"])
    blob_bytes = stats_bytes = 0
    enc = dec = dec_all = 0.0
    count = 0
    saved = blocks.BLOCK_ROWS
    blocks.BLOCK_ROWS = max(saved, rows)   # let the benchmark try blocks larger than the default
    try:
        for start in range(0, n, rows):
            part = {name: col[start:start + rows] for name, col in cols.items()}
            m = len(part["time_end"])
            t0 = time.perf_counter()
            blobs, stats = encode_block(part, options)
            enc += (time.perf_counter() - t0) * PER_ROWS / m
            blob_bytes += sum(map(len, blobs.values()))
            stats_bytes += len(msgpack.packb(stats))
            dec += _best(lambda: decode_block(blobs, QUERY_COLUMNS, m)) * PER_ROWS / m
            dec_all += _best(lambda: decode_block(blobs, BLOCK_DTYPES, m)) * PER_ROWS / m
            count += 1
    finally:
        blocks.BLOCK_ROWS = saved
    return {"blobs": blob_bytes / n, "stats": stats_bytes / n, "total": (blob_bytes + stats_bytes) / n,
            "encode_ms": enc / count * 1e3, "decode_ms": dec / count * 1e3, "decode_all_ms": dec_all / count * 1e3}


def _best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def site_flows(n: int = FLOWS, seed: int = 1) -> dict:
    import numpy as np
    start = 1_790_000_000_000
    cols = generate(n, start, start + n * 1000 // RATE, seed=seed)
    cols["seq"] = np.arange(n, dtype=np.int64)
    return cols


def run(report) -> None:
    cols = site_flows(seed=SEED)
    for name, options, rows in ALTERNATIVES:
        r = measure(cols, options, rows)
        report("blocks", name, r["total"], "B/flow",
               f"blobs {r['blobs']:.2f} + stats {r['stats']:.2f}; {rows:,}-row blocks: encode {r['encode_ms']:.1f} ms,"
               f" decode {'+'.join(QUERY_COLUMNS)} {r['decode_ms']:.2f} ms, all columns {r['decode_all_ms']:.1f} ms"
               f" (per 32,768 rows)")
    report("blocks", "nfdump 1.7.1 nfcapd -y (LZ4), issue 12", NFDUMP_BYTES_PER_FLOW, "B/flow",
           "measured there, same site and rate")


if __name__ == "__main__":
    t_start = time.monotonic()
    flows = site_flows(seed=SEED)
    print(f"{FLOWS:,} flows of bench.flowgen's site at {RATE} flows/s; times per 32,768 rows\n")
    print(f"| {'alternative':50} | B/flow | blobs | stats | encode ms | decode te+src+bytes ms | decode all ms |")
    print(f"| {'---':50} | ---: | ---: | ---: | ---: | ---: | ---: |")
    for alt, opts, block_rows in ALTERNATIVES:
        r = measure(flows, opts, block_rows)
        label = alt
        print(f"| {label:50} | {r['total']:.2f} | {r['blobs']:.2f} | {r['stats']:.2f} | {r['encode_ms']:.1f} |"
              f" {r['decode_ms']:.2f} | {r['decode_all_ms']:.1f} |", flush=True)
    print(f"| {'nfdump nfcapd -y (LZ4), issue 12':50} | {NFDUMP_BYTES_PER_FLOW} | | | | | |")
    print(f"\n{time.monotonic() - t_start:.1f} s")
