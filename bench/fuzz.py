"""``python -m bench.fuzz``: mutated corpus datagrams through the collector's decoder, at scale.

For each protocol (v5, v9, IPFIX, sFlow) the corpus is the datagrams of its captures in tests/data.
Work is cut into chunks, each decoded by a fresh ``Decoder`` (the collector's entry point, with its
per-exporter template store kept across the chunk's datagrams, and small bounds so the caps are
hit): groups of datagrams as the collector receives them, a quarter unmutated (in capture order, so
templates are learnt and the data paths run), the rest mutated (bench/fuzzcases.py); odd groups are
read in place from receive slots, as the collector does. A chunk is reproducible from (seed,
protocol, chunk, cases per chunk).

After every group the driver checks: no exception escaped ``decode``; no exception was caught
inside it (the decoder's ``internal_error`` path, its type read from the log record); every column
has the batch's length and the schema's dtype; the counters add up (a group of n datagrams books
at most n export packets, and export packets plus decode errors of at least n: none goes
uncounted; the flows booked equal the flows returned). Each finding is counted by type, and its
first case saved as a reproducer (JSON: the group, and the command that reruns its chunk).

Reported per protocol: cases (mutated datagrams), seconds, findings by type, decode errors by
reason, and peak RSS of the worker processes (at most 2, multiprocessing).
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import random
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from flowlens_collector.decode import Decoder
from flowmodel.pcap import read_datagrams
from flowmodel.schema import FLOW_COLUMNS

from bench.fuzzcases import Mutator

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
PROTOCOLS = ("v5", "v9", "ipfix", "sflow")
_PROTOCOL_IDS = {p: i for i, p in enumerate(PROTOCOLS)}
CHUNK_CASES = 20_000      # mutated datagrams per chunk (one fresh Decoder)
GROUP = 16                # datagrams per decode call
CLEAN_SHARE = 0.25        # of each group: unmutated datagrams, in capture order
PER_CAPTURE = 200         # datagrams read from each capture
T0_MS = 1_700_000_000_000
STEP_MS = 50              # the clock moves this much per group; expire() every EXPIRE_EVERY groups
EXPIRE_EVERY = 64
# small bounds, so a chunk reaches the caps (templates, held sets, exporters) and their eviction paths
LIMITS = dict(max_templates_per_exporter=64, pending_max_bytes=8192, pending_max_age_ms=2_000,
              pending_total_max_bytes=16384, template_fields_total_max=4096, template_lifetime_ms=60_000,
              max_exporters=32, max_interfaces=256)
SOURCES = [("192.0.2.7", 2055), ("192.0.2.8", 2055), ("2001:db8::7", 4739)]


def load_corpus(data: Path = DATA) -> dict[str, list[list[bytes]]]:
    """protocol -> the datagrams of each of its captures (the first PER_CAPTURE)."""
    out: dict[str, list[list[bytes]]] = {p: [] for p in PROTOCOLS}
    for pcap in sorted(data.glob("*.pcap")):
        dgs = []
        for d in read_datagrams(str(pcap)):
            dgs.append(d.payload)
            if len(dgs) >= PER_CAPTURE:
                break
        if not dgs or len(dgs[0]) < 4:
            continue
        version = int.from_bytes(dgs[0][:2], "big")
        protocol = {5: "v5", 9: "v9", 10: "ipfix"}.get(version)
        if version == 0 and dgs[0][:4] == b"\x00\x00\x00\x05":
            protocol = "sflow"
        if protocol is not None:
            out[protocol].append(dgs)
    return out


class _Caught(logging.Handler):
    """Exceptions the decoder caught and logged (log.exception) on its way to internal_error."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.types: list[str] = []
        self.tracebacks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[0] is not None:
            self.types.append(record.exc_info[0].__name__)
            self.tracebacks.append("".join(traceback.format_exception(*record.exc_info)))

    def clear(self) -> None:
        self.types.clear()
        self.tracebacks.clear()


def _totals(dec: Decoder) -> tuple[int, int, int]:
    """(export packets, flows incl. biflow reverse halves, decode errors) over every exporter row."""
    rows = list(dec.exporters.rows_by_key.values())
    if dec.exporters.overflow is not None:
        rows.append(dec.exporters.overflow)
    return (sum(s.packets for s in rows), sum(s.flows + s.reverse_flows for s in rows),
            sum(sum(s.decode_errors.values()) for s in rows))


def _layout(group: list[bytes]):
    """The group in receive slots (4-aligned, room after each), as the collector's intake holds it."""
    slot = (max(map(len, group)) + 64 + 3) & ~3
    buf = bytearray(slot * len(group))
    for k, d in enumerate(group):
        buf[k * slot:k * slot + len(d)] = d
    mv = memoryview(bytes(buf))
    offsets = np.arange(len(group), dtype=np.int64) * slot
    lengths = np.array([len(d) for d in group], dtype=np.int64)
    return [mv[k * slot:k * slot + len(d)] for k, d in enumerate(group)], (mv, offsets, lengths)


def check_batch(batch) -> str | None:
    """The first broken column invariant of a batch, or None."""
    for name, col in batch.columns.items():
        if len(col) != batch.count:
            return f"invariant:column_length:{name}"
        spec = FLOW_COLUMNS.get(name)
        if spec is not None and col.dtype != spec[0]:
            return f"invariant:column_dtype:{name}"
    return None


def run_chunk(protocol: str, seed: int, chunk: int, cases: int, corpus: dict | None = None,
              make_decoder=Decoder) -> dict:
    """Decode ``cases`` mutated datagrams (plus the clean ones between them) with one Decoder.
    Returns counts: cases, clean, flows, findings {type: n}, reproducers {type: case}, decode_errors, rss_kb."""
    corpus = corpus if corpus is not None else load_corpus()
    captures = corpus[protocol]
    rng = random.Random(f"{seed}:{protocol}:{chunk}")
    mutator = Mutator(protocol, captures, rng)
    caught = _Caught()
    logger = logging.getLogger("flowlens_collector")
    logger.addHandler(caught)
    logger.propagate = False
    dec = make_decoder(**LIMITS)
    findings: dict[str, int] = {}
    repros: dict[str, dict] = {}
    done = clean = flows = 0
    now = T0_MS
    cap, pos = rng.randrange(len(captures)), 0
    group_no = 0
    try:
        while done < cases:
            group: list[bytes] = []
            sources = []
            for _ in range(min(GROUP, cases - done + 1)):
                if rng.random() < 0.02:  # another capture: its templates meet the state of this one
                    cap, pos = rng.randrange(len(captures)), 0
                dgs = captures[cap]
                dg = dgs[pos % len(dgs)]
                pos += 1
                if rng.random() < CLEAN_SHARE or done >= cases:
                    group.append(dg)
                    clean += 1
                else:
                    group.append(mutator.mutate(dg)[1])
                    done += 1
                sources.append(SOURCES[cap % len(SOURCES)] if rng.random() < 0.95 else rng.choice(SOURCES))
            now += STEP_MS
            group_no += 1
            in_place = group_no % 2 == 1
            before = _totals(dec)
            caught.clear()
            found: list[str] = []
            tracebacks: list[str] = []
            try:
                if in_place:
                    views, layout = _layout(group)
                    batch = dec.decode(views, sources, now, layout)
                else:
                    batch = dec.decode(group, sources, now)
            except Exception as e:  # the finding this driver exists for: counted, kept, and on
                found.append(f"escaped:{type(e).__name__}")
                tracebacks.append("".join(traceback.format_exception(e)))
                batch = None
            found += [f"caught:{t}" for t in caught.types]
            tracebacks += caught.tracebacks
            after = _totals(dec)
            if batch is not None:
                flows += batch.count
                broken = check_batch(batch)
                if broken:
                    found.append(broken)
                packets, errors, n = after[0] - before[0], after[2] - before[2], len(group)
                if not packets <= n <= packets + errors:
                    found.append("invariant:datagrams_booked")
                if not caught.types and after[1] - before[1] != batch.count:
                    found.append("invariant:flows_booked")
            for k, kind in enumerate(found):
                findings[kind] = findings.get(kind, 0) + 1
                if kind not in repros:
                    repros[kind] = {"protocol": protocol, "seed": seed, "chunk": chunk, "chunk_cases": cases,
                                    "group": group_no, "now_ms": now, "in_place": in_place, "sources": sources,
                                    "datagrams": [d.hex() for d in group],
                                    "traceback": tracebacks[k] if k < len(tracebacks) else None,
                                    "rerun": f"python -m bench.fuzz --protocol {protocol} --seed {seed} "
                                             f"--chunk {chunk} --cases {cases}"}
            if group_no % EXPIRE_EVERY == 0:
                dec.expire(now)
    finally:
        logger.removeHandler(caught)
        logger.propagate = True
    errors: dict[str, int] = {}
    for row in dec.exporter_stats():
        for reason, n in row["decode_errors"].items():
            errors[reason] = errors.get(reason, 0) + n
    return {"cases": done, "clean": clean, "flows": flows, "findings": findings, "reproducers": repros, "decode_errors": errors,
            "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _chunk_job(job: tuple) -> dict:
    protocol, seed, chunk, cases = job
    return run_chunk(protocol, seed, chunk, cases, _CORPUS)


_CORPUS: dict | None = None


def _init_worker(corpus: dict) -> None:
    global _CORPUS
    _CORPUS = corpus


def fuzz_protocol(protocol: str, cases: int, seed: int, workers: int, corpus: dict, chunk_cases: int = CHUNK_CASES) -> dict:
    """``cases`` mutated datagrams of ``protocol`` over ``workers`` processes; the merged counts."""
    jobs, left, k = [], cases, 0
    while left > 0:
        n = min(chunk_cases, left)
        jobs.append((protocol, seed, k, n))
        left -= n
        k += 1
    started = time.monotonic()
    if workers <= 1:
        _init_worker(corpus)
        results = [_chunk_job(j) for j in jobs]
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(corpus,)) as pool:
            results = pool.map(_chunk_job, jobs, chunksize=1)
    merged = {"protocol": protocol, "cases": 0, "clean": 0, "flows": 0, "chunks": len(jobs), "findings": {}, "reproducers": {},
              "decode_errors": {}, "seconds": round(time.monotonic() - started, 1)}
    merged["peak_rss_mb"] = round(max(r["rss_kb"] for r in results) / 1024, 1)
    for r in results:  # in chunk order, so the first reproducer of each kind is the earliest chunk's
        merged["cases"] += r["cases"]
        merged["clean"] += r["clean"]
        merged["flows"] += r["flows"]
        for key in ("findings", "decode_errors"):
            for kind, n in r[key].items():
                merged[key][kind] = merged[key].get(kind, 0) + n
        for kind, rep in r["reproducers"].items():
            merged["reproducers"].setdefault(kind, rep)
    return merged


def save_reproducers(result: dict, out_dir: Path) -> list[str]:
    paths = []
    for kind, rep in result["reproducers"].items():
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"fuzz-{result['protocol']}-{kind.replace(':', '-')}.json"
        path.write_text(json.dumps(rep, indent=1))
        paths.append(str(path))
    return paths


def render(result: dict) -> str:
    errors = ", ".join(f"{k} {v:,}" for k, v in sorted(result["decode_errors"].items(), key=lambda kv: -kv[1]))
    findings = ", ".join(f"{k} {v:,}" for k, v in sorted(result["findings"].items())) or "none"
    rate = result["cases"] / result["seconds"] if result["seconds"] else 0.0
    return (f"{result['protocol']:6} cases {result['cases']:,} (+{result['clean']:,} clean) in {result['seconds']:.1f} s"
            f" ({rate:,.0f}/s), {result['flows']:,} flows out, peak RSS {result['peak_rss_mb']} MB per worker\n"
            f"       findings: {findings}\n       decode errors: {errors}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1_000_000, help="mutated datagrams per protocol")
    ap.add_argument("--protocol", choices=PROTOCOLS, action="append", help="default: all four")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="processes (at most 2: a shared machine)")
    ap.add_argument("--chunk", type=int, help="rerun this one chunk (as a reproducer names it)")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "artifacts" / "fuzz")
    args = ap.parse_args(argv)
    if not 1 <= args.workers <= 2:
        ap.error(f"--workers {args.workers}: 1 or 2")
    if args.cases < 1:
        ap.error(f"--cases {args.cases}: at least 1")
    corpus = load_corpus()
    failed = False
    summary = []
    for protocol in args.protocol or PROTOCOLS:
        if not corpus[protocol]:
            ap.error(f"no {protocol} captures in {DATA}")
        if args.chunk is not None:
            started = time.monotonic()
            r = run_chunk(protocol, args.seed, args.chunk, args.cases, corpus)
            r.update(protocol=protocol, chunks=1, seconds=round(time.monotonic() - started, 1),
                     peak_rss_mb=round(r["rss_kb"] / 1024, 1))
        else:
            r = fuzz_protocol(protocol, args.cases, args.seed, args.workers, corpus)
        print(render(r), flush=True)
        for path in save_reproducers(r, args.out):
            print(f"       reproducer: {path}", flush=True)
        failed |= bool(r["findings"])
        summary.append({k: v for k, v in r.items() if k not in ("reproducers", "rss_kb")})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
