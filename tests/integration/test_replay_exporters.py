"""`flowlens replay` over real sockets: only NetFlow/IPFIX datagrams are sent (a DNS capture sends
nothing), one 127.0.0.N per original exporter address with one socket per original source port,
IP-fragmented exports reassembled; then the same capture through a real collector and store."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from flowmodel.pcap import read_datagrams
from flowmodel.replay import main as replay_main
from support.services import ServiceStack, wait_until
from unit.flowmodel.pcapbuild import ipv4, ipv4_fragments, udp, write_pcap

DATA = Path(__file__).resolve().parents[1] / "data"


def payloads(name: str) -> list[bytes]:
    return [d.payload for d in read_datagrams(str(DATA / f"{name}.pcap"))]


def flow_records(name: str) -> int:
    return json.loads((DATA / f"{name}.totals.json").read_text())["flow_records"]


# (original source, capture whose exports it sends)
SESSIONS = [(("10.9.9.1", 1000), "softflowd_v5_dns"), (("10.9.9.1", 1001), "pmacct_v5_http"),
            (("10.9.9.2", 1000), "nfreplay_v9_dual")]


def mixed_capture(path: Path) -> list[tuple[tuple[str, int], bytes]]:
    """A raw-IPv4 pcap: three export sessions of two exporters (the v9 one IP-fragmented at 504
    bytes), interleaved with every datagram of tests/data/dns.pcap sent from 10.9.9.1:53 and
    10.9.9.3:53. Returns the export datagrams in capture order as (original source, payload)."""
    exports = {src: payloads(name) for src, name in SESSIONS}
    junk = payloads("dns")
    packets, sent = [], []
    rounds = max(len(v) for v in exports.values())
    per_round = len(junk) // rounds + 1
    for i in range(rounds):
        for (src, sport), grams in exports.items():
            if i < len(grams):
                if len(grams[i]) > 1000:
                    packets.extend(ipv4_fragments(src, "10.0.0.1", sport, 2055, grams[i], ident=i + 1, size=504))
                else:
                    packets.append(ipv4(src, "10.0.0.1", udp(sport, 2055, grams[i])))
                sent.append(((src, sport), grams[i]))
        for j, p in enumerate(junk[i * per_round:(i + 1) * per_round]):
            packets.append(ipv4("10.9.9.1" if j % 2 else "10.9.9.3", "10.0.0.1", udp(53, 5300, p)))
    assert sum(len(g) > 1000 for g in exports[("10.9.9.2", 1000)]) >= 3  # fragmentation is exercised
    write_pcap(path, packets)
    return sent


@pytest.fixture
def receiver():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    yield s
    s.close()


def drain(sock) -> list[tuple[bytes, tuple[str, int]]]:
    """What has arrived; replay returns after its last sendto, and loopback delivers at once."""
    got = []
    while True:
        try:
            got.append(sock.recvfrom(65535))
        except BlockingIOError:
            return got


def test_dns_capture_sends_nothing(receiver, capsys):
    rc = replay_main([str(DATA / "dns.pcap"), "--to", f"127.0.0.1:{receiver.getsockname()[1]}", "--speed", "max",
                      "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 1 and "holds no NetFlow" in captured.err
    assert drain(receiver) == []
    assert "0 export datagrams from 0 exporter(s)" in captured.out
    # 1,010 DNS datagrams (six with ids 5, 9 and 10) and 10 non-UDP frames, every one counted
    assert "skipped: 1020 (" in captured.out
    assert "not netflow/ipfix=1004" in captured.out and "v5 header does not fit the datagram=2" in captured.out


def test_exporters_keep_their_address_and_sessions(receiver, tmp_path, capsys):
    sent = mixed_capture(tmp_path / "mixed.pcap")
    rc = replay_main([str(tmp_path / "mixed.pcap"), "--to", f"127.0.0.1:{receiver.getsockname()[1]}", "--speed", "max",
                      "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    got = drain(receiver)
    assert [p for p, _src in got] == [p for _orig, p in sent]  # exports only, in order, whole
    stand_in = {}
    for (orig, _p), (_payload, src) in zip(sent, got):
        stand_in.setdefault(orig, set()).add(src)
    assert all(len(v) == 1 for v in stand_in.values())  # one socket per original session
    a, b, c = (next(iter(stand_in[orig])) for orig, _name in SESSIONS)
    assert a[0] == b[0] == "127.0.0.1" and a[1] != b[1]  # one exporter address, two source ports
    assert c[0] == "127.0.0.2"
    assert f"exporter 10.9.9.1:1000 -> from 127.0.0.1:{a[1]}" in out
    assert f"exporter 10.9.9.1:1001 -> from 127.0.0.1:{b[1]}" in out
    assert f"exporter 10.9.9.2:1000 -> from 127.0.0.2:{c[1]}" in out
    assert f"sent {len(sent)} datagrams" in out
    fragmented = sum(len(p) > 1000 for _o, p in sent)
    assert f"reassembled from IP fragments: {fragmented} datagrams" in out
    assert "skipped: 1010 (not netflow/ipfix=1004" in out


def test_replayed_capture_reaches_the_store_as_two_exporters(tmp_path, capsys):
    sent = mixed_capture(tmp_path / "mixed.pcap")
    want = {"127.0.0.1": flow_records("softflowd_v5_dns") + flow_records("pmacct_v5_http"),
            "127.0.0.2": flow_records("nfreplay_v9_dual")}
    with ServiceStack(tmp_path, ["store", "collector"],
                      store={"sqlite_retention": "3650d", "rollup_retention": "3650d"}) as stack:
        assert replay_main([str(tmp_path / "mixed.pcap"), "--to", f"127.0.0.1:{stack.netflow_port}",
                            "--speed", "max", "--no-progress"]) == 0
        assert f"sent {len(sent)} datagrams" in capsys.readouterr().out
        client = stack.client()
        try:
            def store_counts():
                rows = client.request("exporters")["exporters"]
                counts = {}
                for r in rows:
                    counts[r["exporter"]] = counts.get(r["exporter"], 0) + (r.get("store_flows") or 0)
                return counts if counts == want else None
            wait_until(store_counts, timeout_s=20, interval_s=0.2)
            st = client.request("status")
            assert st["flows_in"] == sum(want.values())
        finally:
            client.close()
