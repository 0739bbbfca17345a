"""Decode speed on one core: our v5, v9, IPFIX and sFlow decoders into the flow schema, next to the
PyPI ``netflow`` package parsing the same NetFlow packets in the same run.

Packets are prebuilt: v5 with 30 records each; v9 and IPFIX with the fixed-length IPv4 templates of
real exporters from the corpus (softflowd v9 template 1024, pmacct IPFIX template 1024), as many
records per datagram as fit in 1,400 bytes, random field values. About 1 M flows per version for us;
the netflow package gets a smaller share of the same packets (it is ~100x slower). Our decoder gets
the datagrams in groups of the collector's size and runs with the collector's malloc settings
(flowlens_collector.memory; without them every group's buffers are fresh page-faulted mmaps, which
halves the rate). sFlow: datagrams of a switch agent, 6 flow samples each (a 128-byte raw header
of Ethernet/IPv4 or IPv6 (1 in 5)/TCP or UDP, plus an extended switch record), random addresses
and ports, decoded through the Decoder and by the pure sFlow decoder alone, in groups of the same
size; and pmacct's real sfprobe datagrams from tests/data, repeated. sFlow rates count flow
samples decoded into flow rows (the batch's rows, or the pure decoder's), never datagrams or
counter samples, and the run stops if that count differs from the flow samples a plain walk of
the datagrams finds (``flow_samples``). Rates are per CPU second of this thread
(time.thread_time), so other load on the machine skews the comparison less.
"""
from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np

from flowlens_collector.decode import Decoder
from flowlens_collector.memory import tune_malloc
from flowmodel.config import SETTINGS
from flowlens_collector.decoders import ipfix as ipfix_mod
from flowlens_collector.decoders import netflow9
from flowlens_collector.decoders import sflow
from flowmodel.pcap import read_datagrams

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
FLOWS = int(os.environ.get("FLOWLENS_BENCH_DECODE_FLOWS", "1000000"))
GROUP = SETTINGS["collector.receive_group"].default  # datagrams per decode() call: the collector's group under load
MTU_PAYLOAD = 1400
SOURCE = ("192.0.2.1", 40000)


def _pin_one_core() -> str:
    try:
        import psutil

        cpu = psutil.Process().cpu_num()
        os.sched_setaffinity(0, {cpu})
        return f"pinned to cpu {cpu}"
    except (AttributeError, OSError):
        return "not pinned"


def v5_packets(flows: int, rng) -> list[bytes]:
    out = []
    per = 30
    for i in range(flows // per):
        head = struct.pack(">HHIIIIBBH", 5, per, 3_600_000, 1_700_000_000 + i // 1000, 0, i * per, 0, 0, 0)
        recs = bytearray(rng.integers(0, 256, size=per * 48, dtype=np.uint8).tobytes())
        out.append(head + bytes(recs))
    return out


def _template_from(stem: str, version: int, tid: int) -> bytes:
    """The body of one template record (id, count, field specs) of a corpus capture."""
    for d in read_datagrams(str(DATA / f"{stem}.pcap")):
        p = d.payload
        pos = netflow9.HEADER_LEN if version == 9 else ipfix_mod.HEADER_LEN
        tset = 0 if version == 9 else 2
        while pos + 4 <= len(p):
            set_id, length = struct.unpack_from(">HH", p, pos)
            if length < 4:
                break
            if set_id == tset:
                q, end = pos + 4, pos + length
                while q + 4 <= end:
                    t, count = struct.unpack_from(">HH", p, q)
                    size = 4 + 4 * count  # no enterprise fields in these templates
                    if t == tid:
                        return p[q:q + size]
                    q += size
            pos += length
    raise LookupError(f"template {tid} not in {stem}")


def _record_len(template: bytes) -> int:
    count = struct.unpack_from(">H", template, 2)[0]
    return sum(struct.unpack_from(">H", template, 4 + 4 * i + 2)[0] for i in range(count))


def templated_packets(version: int, template: bytes, flows: int, rng) -> tuple[list[bytes], int]:
    tid = struct.unpack_from(">H", template, 0)[0]
    rlen = _record_len(template)
    hlen = 20 if version == 9 else 16
    tset = 0 if version == 9 else 2
    tmpl_set = struct.pack(">HH", tset, 4 + len(template)) + template
    per = (MTU_PAYLOAD - hlen - 4) // rlen
    out = []
    made = 0
    seq = 0
    i = 0
    while made < flows:
        body = rng.integers(0, 256, size=per * rlen, dtype=np.uint8).tobytes()
        pad = bytes(-(4 + len(body)) % 4)
        data = struct.pack(">HH", tid, 4 + len(body) + len(pad)) + body + pad
        sets = (tmpl_set if i % 20 == 0 else b"") + data
        if version == 9:
            pkt = struct.pack(">HHIIII", 9, per, 3_600_000, 1_700_000_000, seq, 0) + sets
            seq += 1
        else:
            pkt = struct.pack(">HHIII", 10, 16 + len(sets), 1_700_000_000, seq, 0) + sets
            seq += per
        out.append(pkt)
        made += per
        i += 1
    return out, per


def _sflow_header(rng, i: int) -> bytes:
    """A 128-byte sampled header: Ethernet (802.1Q tag on every other), IPv4 or IPv6, TCP or UDP."""
    ports = rng.integers(1, 65536, size=2).tolist()
    l4 = (struct.pack(">HHIIBBHHH", *ports, 1, 0, 0x50, 0x18, 1024, 0, 0) if i % 3
          else struct.pack(">HHHH", *ports, 1400, 0))
    proto = 6 if i % 3 else 17
    if i % 5 == 0:
        ip = struct.pack(">IHBB", 6 << 28, 1400, proto, 64) + rng.integers(0, 256, 32, np.uint8).tobytes()
        etype = 0x86DD
    else:
        ip = struct.pack(">BBHHHBBH", 0x45, 0, 1400, 1, 0, 64, proto, 0) + rng.integers(0, 256, 8, np.uint8).tobytes()
        etype = 0x0800
    tag = struct.pack(">HH", 0x8100, 100 + i % 50) if i % 2 else b""
    frame = bytes(12) + tag + struct.pack(">H", etype) + ip + l4
    return (frame + rng.integers(0, 256, 128, np.uint8).tobytes())[:128]


def sflow_packets(samples: int, rng, per: int = 6) -> list[bytes]:
    out = []
    seq = 0
    for d in range(samples // per):
        body = b""
        for k in range(per):
            seq += 1
            header = struct.pack(">IIII", 1, 1442, 4, 128) + _sflow_header(rng, seq)
            raw = struct.pack(">II", 1, len(header)) + header
            switch = struct.pack(">IIIIII", 1001, 16, 100, 0, 200, 0)
            fields = struct.pack(">8I", seq, 7, 2048, seq * 2048, 0, 1 + k, 2 + k, 2)
            body += struct.pack(">II", 1, len(fields) + len(raw) + len(switch)) + fields + raw + switch
        out.append(struct.pack(">II4sIIII", 5, 1, bytes([192, 0, 2, 1]), 0, d + 1, 1000 + d, per) + body)
    return out


def flow_samples(datagram: bytes) -> int:
    """Flow samples (enterprise 0, format 1 or 3) of an sFlow v5 datagram, by a plain walk of its
    sample headers: what the decoders must turn into as many flow rows."""
    address_type = struct.unpack_from(">I", datagram, 4)[0]
    pos = 8 + (4 if address_type == 1 else 16 if address_type == 2 else 0)
    count = struct.unpack_from(">I", datagram, pos + 12)[0]
    pos += 16
    found = 0
    for _ in range(count):
        fmt, length = struct.unpack_from(">II", datagram, pos)
        found += fmt in (1, 3)
        pos += 8 + length
    return found


def sflow_rate(packets: list[bytes], pure: bool = False) -> tuple[float, int]:
    """Samples per CPU second through the collector's Decoder (as v5/v9/IPFIX), or ``pure``: the
    sFlow decoder alone, without the exporter rows and sequence accounting."""
    samples = 0
    dec = Decoder()
    sources = [SOURCE] * GROUP
    t0 = time.thread_time()
    for i in range(0, len(packets), GROUP):
        chunk = packets[i:i + GROUP]
        if pure:
            samples += len(sflow.decode_datagrams(chunk, 0).flow_datagram)
        else:
            samples += dec.decode(chunk, sources[:len(chunk)], 0).count
    return time.thread_time() - t0, samples


def ours(packets: list[bytes]) -> tuple[float, int]:
    dec = Decoder()
    sources = [SOURCE] * GROUP
    flows = 0
    t0 = time.thread_time()
    for i in range(0, len(packets), GROUP):
        chunk = packets[i:i + GROUP]
        batch = dec.decode(chunk, sources[:len(chunk)], 0)
        flows += batch.count
    return time.thread_time() - t0, flows


def theirs(packets: list[bytes], seconds: float = 3.0) -> tuple[float, int]:
    from netflow import parse_packet

    templates = {"netflow": {}, "ipfix": {}}
    flows = 0
    t0 = time.thread_time()
    for pkt in packets:
        flows += len(parse_packet(pkt, templates).flows)
        if time.thread_time() - t0 > seconds:
            break
    return time.thread_time() - t0, flows


def run(report) -> None:
    note = _pin_one_core()
    tune_malloc()  # the collector's allocator settings (its __main__ does the same)
    rng = np.random.default_rng(7)
    cases = [("v5", v5_packets(FLOWS, rng), "30 records/datagram")]
    t9 = _template_from("softflowd_v9_dns", 9, 1024)
    p9, per9 = templated_packets(9, t9, FLOWS, rng)
    cases.append(("v9", p9, f"softflowd template 1024, {_record_len(t9)} B records, {per9}/datagram"))
    t10 = _template_from("pmacct_ipfix_dns", 10, 1024)
    p10, per10 = templated_packets(10, t10, FLOWS, rng)
    cases.append(("ipfix", p10, f"pmacct template 1024, {_record_len(t10)} B records, {per10}/datagram"))
    for name, packets, desc in cases:
        ours(packets[:200])  # warm-up
        best = None
        for _ in range(3):
            secs, flows = ours(packets)
            rate = flows / secs
            best = rate if best is None else max(best, rate)
        report("decode", f"{name} decode into schema (ours)", best, "flows/s", f"{desc}; {flows:,} flows, {note}")
        secs, flows = theirs(packets)
        peer = flows / secs
        report("decode", f"{name} netflow 0.12.2 parse_packet", peer, "flows/s", f"same packets, {flows:,} flows")
        report("decode", f"{name} ratio ours / netflow", best / peer if peer else float("nan"), "x")
    pmacct = [d.payload for stem in ("pmacct_sflow_http", "pmacct_sflow_dns", "pmacct_sflow_dual")
              for d in read_datagrams(str(DATA / f"{stem}.pcap"))]
    samples = FLOWS // 4  # the sFlow decoder is slower per flow: a quarter of the flows keeps the run short
    # repeated, numbered anew (agent 127.0.0.1: the sequence is bytes 16-19), as a live agent numbers them
    pmacct = [p[:16] + struct.pack(">I", i + 1) + p[20:] for i, p in enumerate((pmacct * (samples // 2000 + 1))[:samples // 7])]
    for name, packets, desc in (
            ("sflow", sflow_packets(samples, rng), "switch agent, 6 flow samples/datagram (raw header + switch)"),
            ("sflow pmacct", pmacct, "pmacct sfprobe datagrams, repeated")):
        sflow_rate(packets[:200])  # warm-up
        expected = sum(map(flow_samples, packets))
        for pure, label in ((False, "decode into schema (ours)"), (True, "pure decoder (no accounting)")):
            best = None
            for _ in range(3):
                secs, got = sflow_rate(packets, pure)
                if got != expected:
                    raise RuntimeError(f"{name} {label}: {got:,} flow rows from {expected:,} flow samples")
                best = got / secs if best is None else max(best, got / secs)
            report("decode", f"{name} {label}", best, "samples/s", f"{desc}; {got:,} samples, {note}")


if __name__ == "__main__":
    def _print(section, name, value, unit="", note=""):
        print(f"{section:8} {name:40} {value:>14,.1f} {unit:8} {note}")

    run(_print)
