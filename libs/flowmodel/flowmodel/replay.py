"""``flowlens replay CAPTURE --to HOST:PORT [--speed N|max]``: send the NetFlow/IPFIX/sFlow payloads of
a pcap/pcapng file to a collector, the way an engineer reproduces a problem from a capture.

Only export datagrams are sent: a UDP payload whose first two bytes (the version) are not 5, 9
or 10 (or whose first four are not sFlow's 5), or that is shorter than that version's header, is
skipped and counted (a capture taken on a busy link holds DNS and the like). IP fragments are reassembled first (see ``flowmodel.pcap``).

Exporters stay apart: an exporter is an original source address. Towards an IPv4 loopback target
each one sends from its own 127.0.0.N, with one socket per original source port bound to that
address, so the collector sees one exporter with as many transport sessions as the original had.
Towards ::1 (one loopback address only) or a remote target the exporters cannot keep distinct
addresses; each original (address, port) still gets its own socket and source port. The mapping is
printed before sending. Datagrams go only to the --to address.
"""
from __future__ import annotations

import argparse
import ipaddress
import math
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator

from .pcap import Datagram, PcapError, ReadStats, read_datagrams

MAX_PACE_EVERY = 200       # --speed max: a short pause every this many datagrams keeps loopback lossless
MAX_PACE_SLEEP_S = 0.002
PROGRESS_MIN_DATAGRAMS = 2000
PROGRESS_MIN_SECONDS = 2.0

# version -> shortest datagram that can be one: v5 header 24 bytes, v9 header 20, IPFIX message header 16
EXPORT_HEADER_BYTES = {5: 24, 9: 20, 10: 16}
V5_RECORD_BYTES, V5_MAX_RECORDS = 48, 30


def _sets_fill(payload: bytes, start: int) -> bool:
    """v9 flowsets / IPFIX sets from ``start``: each (id, length >= 4) header, ending exactly at the end."""
    p, end = start, len(payload)
    while p < end:
        if p + 4 > end:
            return False
        length = int.from_bytes(payload[p + 2:p + 4], "big")
        if length < 4:
            return False
        p += length
    return p == end


def _sflow_check(payload: bytes) -> str | None:
    """sFlow v5: a known agent address type, and its samples (format, length) within the datagram."""
    atype = int.from_bytes(payload[4:8], "big") if len(payload) >= 8 else -1
    if atype not in (0, 1, 2):
        return "not netflow/ipfix/sflow"
    head = 24 + {0: 0, 1: 4, 2: 16}[atype]
    if len(payload) < head:
        return "shorter than an sflow header"
    p, end = head, len(payload)
    for _ in range(int.from_bytes(payload[head - 4:head], "big")):
        if p + 8 > end:
            return "sflow header does not fit the datagram"
        p += 8 + int.from_bytes(payload[p + 4:p + 8], "big")
    return None if p <= end else "sflow header does not fit the datagram"  # trailing bytes: as the decoder


def export_check(payload: bytes) -> str | None:
    """None when ``payload`` has the shape of a NetFlow v5/v9, IPFIX or sFlow v5 datagram, else why not.

    The version field alone is two bytes any protocol may start with (a DNS query with id 5 does),
    so the header's own length facts are checked too: a v5 record count of 1-30 that the length
    matches, IPFIX's message length, and v9/IPFIX sets that fill the datagram exactly.
    """
    if len(payload) < 2:
        return "not netflow/ipfix"
    if payload[:4] == b"\0\0\0\5":
        return _sflow_check(payload)
    version = int.from_bytes(payload[:2], "big")
    need = EXPORT_HEADER_BYTES.get(version)
    if need is None:
        return "not netflow/ipfix"
    if len(payload) < need:
        return f"shorter than a v{version} header"
    count = int.from_bytes(payload[2:4], "big")
    if version == 5:
        records = (len(payload) - 24) // V5_RECORD_BYTES
        ok = 1 <= count <= V5_MAX_RECORDS and records == count
    elif version == 9:
        ok = _sets_fill(payload, 20)
    else:
        ok = count == len(payload) and _sets_fill(payload, 16)
    return None if ok else f"v{version} header does not fit the datagram"


@dataclass
class Session:
    """One original (exporter address, source port) and the socket that stands in for it."""

    sport: int
    sock: socket.socket
    local: tuple[str, int]
    datagrams: int = 0
    bytes: int = 0


@dataclass
class Exporter:
    """One original exporter address of the capture and its sessions (one per source port)."""

    src: str
    sessions: dict[int, Session] = field(default_factory=dict)

    @property
    def datagrams(self) -> int:
        return sum(s.datagrams for s in self.sessions.values())

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.sessions.values())

    @property
    def replayed_from(self) -> str:
        """The stand-in source address(es)."""
        return ", ".join(dict.fromkeys(s.local[0] for s in self.sessions.values()))

    def mapping_lines(self) -> list[str]:
        return [f"{_hostport(self.src, sport)} -> from {_hostport(*s.local)}" for sport, s in self.sessions.items()]


@dataclass
class ReplayResult:
    sent: int = 0
    errors: int = 0
    exporters: list[Exporter] = field(default_factory=list)
    seconds: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)     # frames and datagrams not sent, by reason
    reassembled: int = 0                                        # datagrams put together from IP fragments

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_target(text: str) -> tuple[str, int]:
    """'127.0.0.1:2055', '[::1]:2055', 'localhost:2055' -> (address, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"--to wants HOST:PORT, got {text!r}")
    host = host.strip("[]")
    try:
        port_n = int(port)
    except ValueError:
        raise ValueError(f"--to: {port!r} is not a port number") from None
    if not 0 < port_n < 65536:
        raise ValueError(f"--to: port {port_n} is outside 1-65535")
    try:
        infos = socket.getaddrinfo(host, port_n, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise ValueError(f"--to: cannot resolve {host[:60]!r}: {e}") from None
    except UnicodeError:  # a label over 63 characters fails IDNA encoding before any lookup
        raise ValueError(f"--to: {host[:60]!r}... is not a host name (a label is longer than 63 characters)") from None
    return infos[0][4][0], port_n


MIN_SPEED = 0.001  # a second of the capture's gaps takes at most 1,000 s


def parse_speed(text: str) -> float | None:
    """'max' -> None (as fast as loopback stays lossless); 'N' -> N times the capture's pacing."""
    if text.lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ValueError(f"--speed wants a number or 'max', got {text!r}") from None
    if not math.isfinite(speed):
        raise ValueError(f"--speed wants a finite number (or max), got {text!r}")
    if speed < MIN_SPEED:  # slower and one gap's sleep overflows time_t (1e-300 did, with a traceback)
        raise ValueError(f"--speed must be at least {MIN_SPEED:g}, got {text!r}")
    return speed


def loopback_source(index: int) -> str:
    """The index-th (0-based) stand-in source address in 127.0.0.0/8: 127.0.0.1, 127.0.0.2, ...
    (skipping .0 and .255 of every /24)."""
    per24 = 254
    block, host = divmod(index, per24)
    b2, b3 = divmod(block, 256)
    if b2 > 255:
        raise ValueError("more than 16 million exporters in one capture")
    return f"127.{b2}.{b3}.{host + 1}"


def _open_socket(target: tuple[str, int], exporter_index: int) -> socket.socket:
    """A socket for one session of the exporter_index-th exporter (towards IPv4 loopback: bound to
    that exporter's 127.0.0.N, any free port)."""
    ip = ipaddress.ip_address(target[0])
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if ip.version == 4 and ip.is_loopback:
            sock.bind((loopback_source(exporter_index), 0))
        elif ip.version == 6:
            sock.bind(("::1" if ip.is_loopback else "::", 0))
        else:
            sock.bind(("0.0.0.0", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    except OSError:
        sock.close()
        raise
    return sock


def export_datagrams(path: str, stats: ReadStats) -> Iterator[Datagram]:
    """The capture's NetFlow/IPFIX datagrams; the others are counted in ``stats`` by reason."""
    for d in read_datagrams(path, stats):
        why = export_check(d.payload)
        if why:
            stats.skip(why)
            continue
        yield d


def scan(path: str) -> tuple[int, dict[str, list[int]], float, float]:
    """First pass: export datagram count, exporter addresses (in order of appearance) with their
    source ports, first and last timestamps."""
    count, first, last = 0, None, 0.0
    seen: dict[str, dict[int, None]] = {}
    for d in export_datagrams(path, ReadStats()):
        count += 1
        seen.setdefault(d.src, {}).setdefault(d.sport, None)
        if first is None:
            first = d.ts
        last = d.ts
    return count, {src: list(ports) for src, ports in seen.items()}, first or 0.0, last


class Progress:
    """A one-line text progress bar on stderr (\\r updates on a terminal, a line per 10 % otherwise)."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_shown = -1
        self._started = time.monotonic()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        step = 1000 if self.tty else 10
        shown = done * step // self.total
        if shown == self._last_shown:
            return
        self._last_shown = shown
        frac = done / self.total
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        rate = done / max(time.monotonic() - self._started, 1e-6)
        text = f"[{bar}] {frac * 100:5.1f}% {done}/{self.total} datagrams {rate:,.0f}/s"
        if self.tty:
            self.stream.write("\r" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def replay(path: str, target: tuple[str, int], speed: float | None, out=None, progress: bool = True) -> ReplayResult:
    """Send the NetFlow/IPFIX payloads of ``path`` to ``target``; returns what was sent, per exporter."""
    out = out or sys.stdout
    total, originals, first_ts, last_ts = scan(path)
    result = ReplayResult()
    by_origin: dict[tuple[str, int], Session] = {}
    try:
        for i, (src, ports) in enumerate(originals.items()):
            exp = Exporter(src)
            result.exporters.append(exp)
            for sport in ports:
                sock = _open_socket(target, i)
                exp.sessions[sport] = by_origin[(src, sport)] = Session(sport, sock, sock.getsockname()[:2])
        print(f"replaying {path}: {total} export datagrams from {len(originals)} exporter(s)"
              f" ({len(by_origin)} source port(s)) to {_hostport(*target)}"
              f" at {'max speed' if speed is None else f'{speed:g}x capture pacing'}", file=out)
        for exp in result.exporters:
            for line in exp.mapping_lines():
                print(f"  exporter {line}", file=out)
        out.flush()
        duration = (last_ts - first_ts) / speed if speed else 0.0
        bar = Progress(total, enabled=progress and (total >= PROGRESS_MIN_DATAGRAMS or duration >= PROGRESS_MIN_SECONDS))
        stats = ReadStats()
        start = time.monotonic()
        for n, d in enumerate(export_datagrams(path, stats), 1):
            if speed is not None:
                wait = start + (d.ts - first_ts) / speed - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            elif n % MAX_PACE_EVERY == 0:
                time.sleep(MAX_PACE_SLEEP_S)
            session = by_origin[(d.src, d.sport)]
            try:
                session.sock.sendto(d.payload, target)
            except OSError as e:
                result.errors += 1
                if result.errors <= 3:
                    print(f"send error: {e}", file=sys.stderr)
                continue
            session.datagrams += 1
            session.bytes += len(d.payload)
            result.sent += 1
            if n % 64 == 0 or n == total:
                bar.update(n)
        bar.close()
        result.seconds = time.monotonic() - start
        result.skipped = dict(stats.skipped)
        result.reassembled = stats.reassembled
    finally:
        for session in by_origin.values():
            session.sock.close()
    return result


def print_summary(result: ReplayResult, out=None) -> None:
    out = out or sys.stdout
    print(f"sent {result.sent} datagrams in {result.seconds:.2f} s"
          f"{f', {result.errors} send errors' if result.errors else ''}", file=out)
    for exp in result.exporters:
        print(f"  {exp.src} (as {exp.replayed_from}, {len(exp.sessions)} source port(s)):"
              f" {exp.datagrams} datagrams, {exp.bytes} bytes", file=out)
    if result.reassembled:
        print(f"  reassembled from IP fragments: {result.reassembled} datagrams", file=out)
    print(f"  skipped: {result.skipped_total}" + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(result.skipped.items())) + ")"
                                                  if result.skipped else ""), file=out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowlens replay",
                                description="Send the NetFlow/IPFIX/sFlow datagrams of a pcap/pcapng capture to a collector.")
    p.add_argument("capture", help="pcap or pcapng file holding UDP export datagrams")
    p.add_argument("--to", required=True, metavar="HOST:PORT", help="collector address, e.g. 127.0.0.1:2055")
    p.add_argument("--speed", default="1", metavar="N|max",
                   help="N times the capture's own pacing (default 1), or max: as fast as stays lossless on loopback")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        target = parse_target(args.to)
        speed = parse_speed(args.speed)
    except ValueError as e:
        print(f"flowlens replay: {e}", file=sys.stderr)
        return 2
    try:
        result = replay(args.capture, target, speed, progress=not args.no_progress)
    except OSError as e:  # the capture named is missing, a directory, unreadable: refused, as a bad --to is
        print(f"flowlens replay: {args.capture}: {e.strerror or e}", file=sys.stderr)
        return 2
    except PcapError as e:
        print(f"flowlens replay: {e}", file=sys.stderr)
        return 2
    print_summary(result)
    if result.sent == 0 and result.errors == 0:
        print(f"flowlens replay: {args.capture} holds no NetFlow v5/v9 or IPFIX datagrams", file=sys.stderr)
        return 1
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
