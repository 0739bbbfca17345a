"""flowlens replay: real corpus captures sent over loopback UDP to a socket the test owns."""
import io
import socket
import struct
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from flowmodel.pcap import read_datagrams
from flowmodel.replay import Progress, loopback_source, main, parse_speed, parse_target, replay

DATA = Path(__file__).resolve().parents[2] / "data"
TWO_SESSIONS = DATA / "pmacct-ta_ipfix_cisco-100.pcap"   # one router, two exporter source ports
ONE_EXPORTER = DATA / "pmacct-ta_ipfix_cisco-srv6-400.pcap"
V5 = DATA / "pynetflow_v5_softflowd.pcap"


@pytest.fixture
def receiver():
    socks = []

    def make(host="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((host, 0))
        s.settimeout(0.5)
        socks.append(s)
        return s

    yield make
    for s in socks:
        s.close()


def drain(sock) -> list[tuple[bytes, tuple]]:
    out = []
    try:
        while True:
            data, addr = sock.recvfrom(65535)
            out.append((data, addr[:2]))
    except socket.timeout:
        return out


def write_raw_pcap(path: Path, datagrams) -> None:
    """A classic pcap (linktype 101, raw IPv4) holding the given datagrams' UDP payloads with
    their original addresses: a multi-exporter capture made of real exporters' packets."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    for d in datagrams:
        udp = struct.pack("!HHHH", d.sport, d.dport, 8 + len(d.payload), 0) + d.payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton(d.src), socket.inet_aton(d.dst)) + udp
        sec = int(d.ts)
        out.append(struct.pack("<IIII", sec, int((d.ts - sec) * 1e6), len(ip), len(ip)) + ip)
    path.write_bytes(b"".join(out))


def test_parse_target_and_speed():
    assert parse_target("127.0.0.1:2055") == ("127.0.0.1", 2055)
    assert parse_target("[::1]:4739") == ("::1", 4739)
    for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:x", ":2055"):
        with pytest.raises(ValueError):
            parse_target(bad)
    assert parse_speed("max") is None
    assert parse_speed("2.5") == 2.5
    for bad in ("0", "-1", "fast"):
        with pytest.raises(ValueError):
            parse_speed(bad)


def test_loopback_sources_are_distinct_and_valid():
    addrs = [loopback_source(i) for i in range(600)]
    assert addrs[:3] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert len(set(addrs)) == 600
    assert all(not a.endswith((".0", ".255")) for a in addrs)


def test_one_routers_two_source_ports_replay_from_one_address_two_ports(receiver):
    """One exporter address stays one exporter (one 127.0.0.N); its two transport sessions stay two
    source ports, so the collector still keys their templates apart as the original did."""
    r = receiver()
    port = r.getsockname()[1]
    out = io.StringIO()
    res = replay(str(TWO_SESSIONS), ("127.0.0.1", port), None, out=out, progress=False)
    got = drain(r)
    originals = list(read_datagrams(str(TWO_SESSIONS)))
    assert res.sent == len(got) == len(originals) == 6
    assert [e.src for e in res.exporters] == ["138.187.0.13"]
    sessions = res.exporters[0].sessions
    assert sorted(sessions) == [50109, 50111]
    assert {s.local[0] for s in sessions.values()} == {"127.0.0.1"}
    assert len({s.local[1] for s in sessions.values()}) == 2
    # every datagram came from its session's stand-in, unchanged and in order
    by_source = defaultdict(list)
    for data, addr in got:
        by_source[addr].append(data)
    for sport, sess in sessions.items():
        assert by_source[sess.local] == [d.payload for d in originals if d.sport == sport]
    text = out.getvalue()
    assert "exporter 138.187.0.13:50109 -> from 127.0.0.1:" in text
    assert "exporter 138.187.0.13:50111 -> from 127.0.0.1:" in text


def test_multi_exporter_capture_maps_each_address(receiver, tmp_path):
    merged = (list(read_datagrams(str(ONE_EXPORTER)))[:50] + list(read_datagrams(str(TWO_SESSIONS)))
              + list(read_datagrams(str(V5))))
    cap = tmp_path / "merged.pcap"
    write_raw_pcap(cap, merged)
    r = receiver()
    res = replay(str(cap), ("127.0.0.1", r.getsockname()[1]), None, out=io.StringIO(), progress=False)
    got = drain(r)
    assert res.sent == len(got) == len(merged)
    assert [(e.src, e.replayed_from, e.datagrams) for e in res.exporters] == [
        ("203.0.113.90", "127.0.0.1", 50), ("138.187.0.13", "127.0.0.2", 6), ("192.0.2.10", "127.0.0.3", 1)]
    assert Counter(a[0] for _d, a in got) == {"127.0.0.1": 50, "127.0.0.2": 6, "127.0.0.3": 1}


def test_ipv6_target_keeps_exporters_apart_by_port(receiver):
    try:
        r = receiver("::1")
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    res = replay(str(TWO_SESSIONS), ("::1", r.getsockname()[1]), None, out=io.StringIO(), progress=False)
    got = drain(r)
    assert res.sent == len(got) == 6
    sources = Counter(a for _d, a in got)
    assert len(sources) == 2 and all(a[0] == "::1" and n == 3 for a, n in sources.items())


def test_speed_follows_the_capture_pacing(receiver):
    originals = list(read_datagrams(str(ONE_EXPORTER)))
    span = originals[-1].ts - originals[0].ts
    r = receiver()
    res = replay(str(ONE_EXPORTER), ("127.0.0.1", r.getsockname()[1]), 2.0, out=io.StringIO(), progress=False)
    assert len(drain(r)) == res.sent == len(originals)
    assert res.seconds >= span / 2 * 0.9


def test_main_prints_mapping_and_summary(receiver, capsys):
    r = receiver()
    rc = main([str(TWO_SESSIONS), "--to", f"127.0.0.1:{r.getsockname()[1]}", "--speed", "max"])
    assert rc == 0
    assert len(drain(r)) == 6
    out = capsys.readouterr().out
    assert "1 exporter(s) (2 source port(s))" in out
    assert "sent 6 datagrams" in out
    assert "138.187.0.13 (as 127.0.0.1, 2 source port(s)): 6 datagrams" in out


def test_main_rejects_bad_arguments(capsys, tmp_path):
    assert main([str(V5), "--to", "nowhere"]) == 2
    assert main([str(V5), "--to", "127.0.0.1:9", "--speed", "0"]) == 2
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    assert main([str(junk), "--to", "127.0.0.1:9"]) == 2
    assert "not a pcap" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.pcap"), "--to", "127.0.0.1:9"]) == 2
    assert "missing.pcap: No such file or directory" in capsys.readouterr().err
    assert main([str(tmp_path), "--to", "127.0.0.1:9"]) == 2
    assert "Is a directory" in capsys.readouterr().err


def test_progress_bar_text():
    buf = io.StringIO()
    p = Progress(1000, stream=buf)
    for done in range(0, 1001, 50):
        p.update(done)
    p.close()
    lines = buf.getvalue().splitlines()
    assert lines[-1].startswith("[" + "#" * 30 + "] 100.0% 1000/1000")
    assert 5 <= len(lines) <= 11
