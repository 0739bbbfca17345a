"""Ground truth of the corpus captures (tshark CSV + JSONL) as comparable per-flow tuples.

Each capture in tests/data/ is decoded one datagram at a time (frame by frame, as a collector
receives them); the flows decoded from frame N are compared, as a multiset, with the CSV rows of
frame N. Time columns are converted the way the CSV defines them: v5/v9 FIRST/LAST_SWITCHED via the
export header (uptime, unix secs[, nsecs]) read from the capture, IPFIX 21/22 via
systemInitTimeMilliseconds, absolute IEs as printed.
"""
from __future__ import annotations

import csv
import gzip
import ipaddress
import json
import struct
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

from flowmodel import addr
from flowmodel.pcap import read_datagrams

DATA = Path(__file__).resolve().parents[2] / "data"


def captures(versions: tuple[int, ...]) -> list[str]:
    out = []
    for totals in sorted(DATA.glob("*.totals.json")):
        stem = totals.name[: -len(".totals.json")]
        t = json.loads(totals.read_text())
        vers = {int(v) for v in t["export_packets_by_version"]}
        if vers & set(versions) and (DATA / f"{stem}.pcap").exists():
            out.append(stem)
    return out


def load_datagrams(stem: str):
    return list(read_datagrams(str(DATA / f"{stem}.pcap")))


def _int(s: str, default=0) -> int:
    if s in ("", None):
        return default
    s = str(s)
    return int(s, 16) if s.startswith("0x") else int(s)


def _addr_text(s: str) -> str:
    return _norm(s) if s else "::"


def _ms_from_abs(s: str) -> int:
    """Epoch seconds with 9 decimals -> ms, truncated (exact decimal arithmetic)."""
    whole, _, frac = s.partition(".")
    return int(whole) * 1000 + int((frac + "000")[:3])


def _tshark_time_ms(text: str) -> int:
    """'Nov 24, 2026 04:20:47.458000000 UTC' -> ms."""
    text = text.replace(" UTC", "")
    head, _, frac = text.partition(".")
    dt = datetime.strptime(" ".join(head.split()), "%b %d, %Y %H:%M:%S").replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * 1000 + int((frac + "000")[:3])


def _init_abs(init_ms: int, export_ms: int, value: int) -> int:
    """IPFIX uptime IEs: init + value + k * 2^32 (the 32-bit ms uptime wrapped k >= 0 times) within 2^31 ms of export."""
    t = init_ms + value
    return t + (max(0, (export_ms - t + 2**31) >> 32) << 32)


def _uptime_abs(uptime_ms: int, export_ms: int, value: int) -> int:
    delta = (uptime_ms - value) & 0xFFFFFFFF
    if delta >= 0x80000000:
        delta -= 0x100000000
    return export_ms - delta


def _headers(datagrams) -> dict[int, tuple[int, int]]:
    """frame -> (sys_uptime_ms, export_ms) from the v5/v9 header."""
    out = {}
    for d in datagrams:
        p = d.payload
        version = struct.unpack_from(">H", p)[0]
        if version == 5:
            _v, _c, up, secs, nsecs = struct.unpack_from(">HHIII", p)
            out[d.frame] = (up, secs * 1000 + nsecs // 1_000_000)
        elif version == 9:
            _v, _c, up, secs = struct.unpack_from(">HHII", p)
            out[d.frame] = (up, secs * 1000)
        elif version == 10:
            out[d.frame] = (None, struct.unpack_from(">I", p, 4)[0] * 1000)
    return out


def expected_by_frame(stem: str, datagrams) -> dict[int, Counter]:
    """frame -> Counter of expected flow tuples (see ``flow_tuple``)."""
    headers = _headers(datagrams)
    rows = list(csv.DictReader(open(DATA / f"{stem}.flows.csv")))
    jsonl = DATA / f"{stem}.flows.jsonl.gz"
    extra = [json.loads(line) for line in gzip.open(jsonl, "rt")] if jsonl.exists() else [{} for _ in rows]
    assert len(extra) == len(rows)
    init_ms: dict[tuple, int] = {}          # (exporter, port, domain) -> systemInitTimeMilliseconds
    rates: dict[tuple, int] = {}            # (exporter, port, domain, sampler id or None) -> rate
    out: dict[int, Counter] = defaultdict(Counter)
    for row, ex in zip(rows, extra):
        f = ex.get("fields", {})
        key = (row["exporter"], row["exporter_port"], row["source_id"])
        if row["kind"] == "options":
            if "cflow.sys_init_time" in f:
                init_ms[key] = _tshark_time_ms(f["cflow.sys_init_time"])
            rate = _options_rate(row, f)
            if rate is not None:
                sid = row["sampler_id"] or None
                rates[key + (_int(sid) if sid else None,)] = rate
            continue
        frame = int(row["frame"])
        version = int(row["version"])
        if version == 5:
            interval = _int(row["sampling"].split("interval=")[1]) & 0x3FFF
            sampling = interval or 1
        else:
            sid = row["sampler_id"]
            if sid:
                sampling = rates.get(key + (_int(sid),), 0)
            else:
                sampling = rates.get(key + (None,), 1)
        if row["start_abs"]:
            start, end = _ms_from_abs(row["start_abs"]), _ms_from_abs(row["end_abs"])
        elif row["start_uptime_ms"] != "":
            s_up, e_up = int(row["start_uptime_ms"]), int(row["end_uptime_ms"])
            if version in (5, 9):
                up, export_ms = headers[frame]
                start, end = _uptime_abs(up, export_ms, s_up), _uptime_abs(up, export_ms, e_up)
            elif key in init_ms:
                base, export_ms = init_ms[key], headers[frame][1]
                start, end = _init_abs(base, export_ms, s_up), _init_abs(base, export_ms, e_up)
            else:  # no systemInitTimeMilliseconds: the decoder anchors the end at export time
                end = headers[frame][1]
                start = end - max(0, e_up - s_up)
        else:
            start = end = None
        proto = _int(row["proto"])
        icmp_type = icmp_code = 0
        if proto in (1, 58):
            if row["icmp_type_code"]:
                tc = _int(row["icmp_type_code"])
            else:
                tc = _int(row["dst_port"])
            icmp_type, icmp_code = tc >> 8, tc & 0xFF
        # tshark shows the first address IE of the template even when it is zero; the decoder takes
        # the first non-zero one (e.g. IPv6 addresses of an MPLS template that also has IPv4 ones).
        src = _first_nonzero(f, ("cflow.srcaddr", "cflow.srcaddrv6"), row["src_addr"])
        dst = _first_nonzero(f, ("cflow.dstaddr", "cflow.dstaddrv6"), row["dst_addr"])
        nh = _first_nonzero(f, ("cflow.nexthop", "cflow.nexthopv6", "cflow.bgpnexthop", "cflow.bgpnexthopv6"),
                            row["next_hop"])
        out[frame][(
            src, dst, _int(row["src_port"]), _int(row["dst_port"]),
            proto, _int(row["octets"]), _int(row["packets"]), _int(row["tcp_flags"]), _int(row["tos"]),
            _int(row["in_if"]), _int(row["out_if"]), _int(row["src_as"]), _int(row["dst_as"]),
            nh, start, end, sampling, icmp_type, icmp_code, version,
        )] += 1
        rev = _reverse_half(row, f, src, dst, start, end, sampling, version)
        if rev is not None:
            out[frame][rev] += 1
    return out


def reverse_records(stem: str) -> int:
    """Biflow records of a capture whose reverse direction carried traffic (tshark's fields)."""
    jsonl = DATA / f"{stem}.flows.jsonl.gz"
    if not jsonl.exists():
        return 0
    n = 0
    for line in gzip.open(jsonl, "rt"):
        f = json.loads(line).get("fields", {})
        octets, packets = _second(f, "cflow.octets"), _second(f, "cflow.packets")
        n += octets is not None and bool(_int(octets) or _int(packets))
    return n


def _second(f: dict, name: str):
    """The reverse value of an RFC 5103 biflow record: tshark lists the forward and the reverse
    element under one field name, in the record's order (forward first in every biflow template
    of the corpus: softflowd -b, ipfixprobe)."""
    v = f.get(name)
    return v[1] if isinstance(v, list) and len(v) == 2 else None


def _reverse_half(row, f, src, dst, start, end, sampling, version):
    """The flow a biflow record's reverse direction becomes, or None when it carried nothing:
    endpoints, interfaces and AS numbers swapped, the reverse counters, flags and TOS (0 without
    a reverse element), no next hop, the forward times (no corpus template has reverse times)."""
    octets, packets = _second(f, "cflow.octets"), _second(f, "cflow.packets")
    if octets is None or (not _int(octets) and not _int(packets)):
        return None
    proto = _int(row["proto"])
    icmp_type = icmp_code = 0
    if proto in (1, 58):
        tc = _second(f, "cflow.icmp_type_code_ipv4") or _second(f, "cflow.icmp_type_code_ipv6")
        tc = _int(tc) if tc is not None else (0 if row["icmp_type_code"] else _int(row["src_port"]))
        icmp_type, icmp_code = tc >> 8, tc & 0xFF
    return (dst, src, _int(row["dst_port"]), _int(row["src_port"]), proto, _int(octets), _int(packets),
            _int(_second(f, "cflow.tcpflags") or 0), _int(_second(f, "cflow.tos") or 0),
            _int(row["out_if"]), _int(row["in_if"]), _int(row["dst_as"]), _int(row["src_as"]),
            "::", start, end, sampling, icmp_type, icmp_code, version)


def _first_nonzero(f: dict, names, shown: str) -> str:
    for name in names:
        v = f.get(name)
        if isinstance(v, list):
            v = v[0]
        if v and _addr_text(v) != "::":
            return _addr_text(v)
    return _addr_text(shown)


def _options_rate(row, f) -> int | None:
    s = row["sampling"]
    if not s:
        return None
    size, population = _int(f.get("cflow.sampling_size", "0")), _int(f.get("cflow.sampling_population", "0"))
    if size and population:
        return max(1, population // size)
    kv = dict(part.split("=", 1) for part in s.replace(",", ";").split(";") if "=" in part)
    for name in ("sampling_interval", "sampler_random_interval", "interval", "random_interval"):
        if name in kv:
            return _int(kv[name]) or 1
    if "sampling_packet_interval" in kv:
        interval = _int(kv["sampling_packet_interval"])
        space = _int(kv.get("sampling_packet_space", "0"))
        return max(1, (interval + space) // interval) if interval else 1
    return None


def flow_tuples(batch, has_times: bool = True) -> Counter:
    c = batch.columns
    out = Counter()
    src = addr.column_to_text(c["src_addr"])
    dst = addr.column_to_text(c["dst_addr"])
    nh = addr.column_to_text(c["next_hop"])
    for i in range(batch.count):
        out[(
            _norm(src[i]), _norm(dst[i]), int(c["src_port"][i]), int(c["dst_port"][i]), int(c["protocol"][i]),
            int(c["bytes"][i]), int(c["packets"][i]), int(c["tcp_flags"][i]), int(c["tos"][i]),
            int(c["input_if"][i]), int(c["output_if"][i]), int(c["src_as"][i]), int(c["dst_as"][i]),
            _norm(nh[i]), int(c["time_start"][i]) if has_times else None,
            int(c["time_end"][i]) if has_times else None, int(c["sampling_rate"][i]),
            int(c["icmp_type"][i]), int(c["icmp_code"][i]), int(c["flow_version"][i]),
        )] += 1
    return out


def _norm(text: str) -> str:
    """IPv4-mapped as dotted quad, '::'/'0.0.0.0' both as '::' (absent)."""
    ip = ipaddress.ip_address(text)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    s = str(ip)
    return "::" if s in ("0.0.0.0", "::") else s


def check_capture(stem: str):
    """Decode a capture one datagram at a time and compare each frame's flows with tshark's.
    Returns (flows decoded, the Decoder) so callers can check totals and counters."""
    from flowlens_collector.decode import Decoder

    datagrams = load_datagrams(stem)
    expected = expected_by_frame(stem, datagrams)
    dec = Decoder()
    total = 0
    for d in datagrams:
        batch = dec.decode([d.payload], [(d.src, d.sport)], now_ms=1_000)
        exp = expected.get(d.frame, {})
        has_times = not exp or next(iter(exp))[14] is not None
        got = flow_tuples(batch, has_times)
        assert got == exp, f"{stem} frame {d.frame}: missing {exp - got}, extra {got - exp}"
        total += batch.count
    return total, dec
