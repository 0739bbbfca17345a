"""pcap reader on real exporter captures: every export datagram, with addresses and ports."""
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from flowmodel.pcap import PcapError, ReadStats, read_datagrams

DATA = Path(__file__).resolve().parents[2] / "data"
CAPTURES = ["softflowd_v5_dns", "pmacct_v5_http", "fprobe_v5_dual"]


def totals(name):
    return json.loads((DATA / f"{name}.totals.json").read_text())


@pytest.mark.parametrize("name", CAPTURES)
def test_every_export_packet_is_read(name):
    t = totals(name)
    stats = ReadStats()
    grams = list(read_datagrams(str(DATA / f"{name}.pcap"), stats))
    assert len(grams) == t["export_packets"]
    assert stats.skipped == {}
    port = t["decode_as_ports"][0]
    assert {g.dport for g in grams} == {port}
    exporter = t["exporters"][0].split("/")[0]
    assert {f"{g.src}:{g.sport}" for g in grams} == {exporter}
    # v5 header: version 5, count = records in the datagram, 24 + 48 * count bytes.
    records = 0
    for g in grams:
        version, count = struct.unpack("!HH", g.payload[:4])
        assert version == 5 and len(g.payload) == 24 + 48 * count
        records += count
    assert records == t["flow_records"]
    assert [g.frame for g in grams] == sorted(g.frame for g in grams)
    assert all(g.ts > 1.7e9 for g in grams)


def test_pcapng_gives_the_same_datagrams(tmp_path):
    editcap = shutil.which("editcap")
    if not editcap:
        pytest.skip("editcap (Debian wireshark-common/tshark) is not installed, so no pcapng can be made")
    ng = tmp_path / "dns.pcapng"
    subprocess.run([editcap, "-F", "pcapng", str(DATA / "softflowd_v5_dns.pcap"), str(ng)], check=True)
    assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    classic = list(read_datagrams(str(DATA / "softflowd_v5_dns.pcap")))
    again = list(read_datagrams(str(ng)))
    assert [g.payload for g in again] == [g.payload for g in classic]
    assert [round(g.ts, 6) for g in again] == [round(g.ts, 6) for g in classic]


def test_not_a_capture(tmp_path):
    p = tmp_path / "x.pcap"
    p.write_bytes(b"hello world, not a capture")
    with pytest.raises(PcapError, match="not a pcap or pcapng"):
        list(read_datagrams(str(p)))


def test_truncated_capture_stops_cleanly(tmp_path):
    raw = (DATA / "softflowd_v5_dns.pcap").read_bytes()
    p = tmp_path / "cut.pcap"
    p.write_bytes(raw[: len(raw) // 2])
    grams = list(read_datagrams(str(p)))
    assert 0 < len(grams) < totals("softflowd_v5_dns")["export_packets"]
