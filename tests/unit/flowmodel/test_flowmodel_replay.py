"""flowlens replay's contract on real captures: which payloads count as exports, one 127.0.0.N per
exporter address with a socket per original source port, and the printed mapping and summary."""
import io
import socket
from collections import defaultdict
from pathlib import Path

import pytest

from flowmodel.pcap import read_datagrams
from flowmodel.replay import export_check, main, replay

DATA = Path(__file__).resolve().parents[2] / "data"
TWO_SESSIONS = DATA / "pmacct-ta_ipfix_cisco-100.pcap"   # one router (138.187.0.13), two source ports


@pytest.fixture
def receiver():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    yield s
    s.close()


def drain(sock):
    out = []
    while True:
        try:
            data, addr = sock.recvfrom(65535)
        except BlockingIOError:
            return out
        out.append((data, addr[:2]))


@pytest.mark.parametrize("name", sorted(p.stem for p in DATA.glob("*.pcap") if (DATA / f"{p.stem}.totals.json").exists()))
def test_every_corpus_export_datagram_is_an_export(name):
    grams = list(read_datagrams(str(DATA / f"{name}.pcap")))
    assert grams and all(export_check(g.payload) is None for g in grams)


@pytest.mark.parametrize("payload,reason", [
    (b"", "not netflow/ipfix"), (b"\x00\x07" + bytes(30), "not netflow/ipfix"),
    (b"\x00\x05" + bytes(10), "shorter than a v5 header"), (b"\x00\x0a" + bytes(8), "shorter than a v10 header"),
    (b"\x00\x05\x00\x02" + bytes(20 + 48), "v5 header does not fit"),          # count 2, one record
    (b"\x00\x05\x00\x00" + bytes(20), "v5 header does not fit"),               # no records
    (b"\x00\x0a\x00\x40" + bytes(12) + b"\x00\x02\x00\x04", "v10 header does not fit"),  # length says 64, has 20
    (b"\x00\x09\x00\x01" + bytes(16) + b"\x01\x00\x00\x08\x00\x00", "v9 header does not fit"),  # set runs past the end
])
def test_non_exports_are_refused_with_a_reason(payload, reason):
    assert reason in export_check(payload)


def test_one_router_with_two_source_ports_is_one_exporter_with_two_sockets(receiver):
    out = io.StringIO()
    res = replay(str(TWO_SESSIONS), ("127.0.0.1", receiver.getsockname()[1]), None, out=out, progress=False)
    got = drain(receiver)
    originals = list(read_datagrams(str(TWO_SESSIONS)))
    assert res.sent == len(got) == len(originals) == 6
    assert [e.src for e in res.exporters] == ["138.187.0.13"]
    sessions = res.exporters[0].sessions
    assert sorted(sessions) == [50109, 50111]
    locals_ = {sport: s.local for sport, s in sessions.items()}
    assert {l[0] for l in locals_.values()} == {"127.0.0.1"} and len({l[1] for l in locals_.values()}) == 2
    by_source = defaultdict(list)
    for data, addr in got:
        by_source[addr].append(data)
    for sport, local in locals_.items():
        assert by_source[local] == [d.payload for d in originals if d.sport == sport]
    text = out.getvalue()
    assert f"exporter 138.187.0.13:50109 -> from 127.0.0.1:{locals_[50109][1]}" in text
    assert "1 exporter(s) (2 source port(s))" in text


def test_summary_names_exporters_and_skips(receiver, capsys):
    assert main([str(TWO_SESSIONS), "--to", f"127.0.0.1:{receiver.getsockname()[1]}", "--speed", "max"]) == 0
    out = capsys.readouterr().out
    assert "sent 6 datagrams" in out
    assert "138.187.0.13 (as 127.0.0.1, 2 source port(s)): 6 datagrams" in out
    assert "skipped: 0" in out
