"""IP fragment reassembly in the pcap reader: IPv4 and IPv6 fragment headers, out of order and
interleaved, with bounds (datagrams in flight, bytes, age) and incomplete datagrams counted."""
from pathlib import Path

import pytest

from flowmodel.pcap import Reassembler, ReadStats, read_datagrams
from pcapbuild import ethernet, ipv4, ipv4_fragments, ipv6_fragments, udp, write_pcap

DATA = Path(__file__).resolve().parents[2] / "data"


def big_export() -> bytes:
    """The largest real v9 export datagram of a corpus capture (templates and data, > 1,200 bytes)."""
    grams = list(read_datagrams(str(DATA / "nfreplay_v9_dual.pcap")))
    return max((g.payload for g in grams), key=len)


def test_ipv4_fragments_out_of_order_and_interleaved_are_reassembled(tmp_path):
    a, b = big_export(), big_export()[::-1]
    assert len(a) > 1200
    fa = ipv4_fragments("10.9.9.1", "10.0.0.1", 1000, 2055, a, ident=7, size=504)
    fb = ipv4_fragments("10.9.9.2", "10.0.0.1", 1000, 2055, b, ident=7, size=504)  # same id, other source
    assert len(fa) == len(fb) == 3
    packets = [fa[2], fb[0], fa[0], fb[2], fa[1], fb[1]]
    stats = ReadStats()
    grams = list(read_datagrams(str(write_pcap(tmp_path / "frag.pcap", packets)), stats))
    assert [(g.src, g.payload) for g in grams] == [("10.9.9.1", a), ("10.9.9.2", b)]
    assert [g.frame for g in grams] == [5, 6]  # complete at their last fragment
    assert (stats.reassembled, stats.skipped) == (2, {})


def test_ipv6_fragment_header_is_reassembled(tmp_path):
    payload = big_export()
    frags = ipv6_fragments("2001:db8::1", "2001:db8::2", 4000, 4739, payload, ident=0x12345678, size=600)
    stats = ReadStats()
    grams = list(read_datagrams(str(write_pcap(tmp_path / "frag6.pcap", frags[::-1])), stats))
    assert len(grams) == 1
    g = grams[0]
    assert (g.src, g.sport, g.dst, g.dport, g.payload) == ("2001:db8::1", 4000, "2001:db8::2", 4739, payload)
    assert stats.reassembled == 1


def test_a_missing_fragment_is_counted_not_sent(tmp_path):
    payload = big_export()
    frags = ipv4_fragments("10.9.9.1", "10.0.0.1", 1000, 2055, payload, ident=1, size=504)
    whole = ipv4("10.9.9.1", "10.0.0.1", udp(1000, 2055, b"\x00\x05" + b"x" * 30))
    stats = ReadStats()
    grams = list(read_datagrams(str(write_pcap(tmp_path / "hole.pcap", [frags[0], whole, frags[2]])), stats))
    assert len(grams) == 1 and grams[0].frame == 2
    assert stats.skipped == {"fragments incomplete": 1}
    assert stats.reassembled == 0


def test_ethernet_padding_is_not_payload(tmp_path):
    small = ipv4("10.9.9.1", "10.0.0.1", udp(1000, 2055, b"\x00\x0a\x00\x06\x00\x00"))
    frame = ethernet(small)
    assert len(frame) == 60 > 14 + len(small)
    grams = list(read_datagrams(str(write_pcap(tmp_path / "eth.pcap", [frame], linktype=1))))
    assert [g.payload for g in grams] == [b"\x00\x0a\x00\x06\x00\x00"]


def test_reassembly_is_bounded_in_datagrams_and_bytes():
    stats = ReadStats()
    r = Reassembler(stats, max_datagrams=2, max_bytes=10_000)
    for ident in range(3):  # three first fragments; the third evicts the oldest
        assert r.add((4, "a", "b", ident, 17), 1.0, 0, True, b"x" * 800) is None
    assert len(r.pending) == 2 and r.bytes_held == 1600
    assert stats.skipped == {"fragments over reassembly limit": 1}
    # the evicted datagram's last fragment now starts a new, incomplete one
    assert r.add((4, "a", "b", 0, 17), 1.0, 800, False, b"y" * 10) is None
    r.add((4, "a", "b", 9, 17), 1.0, 0, True, b"z" * 9600)  # over max_bytes: older ones go
    assert r.bytes_held <= 10_000
    assert stats.skipped["fragments over reassembly limit"] >= 3
    r.finish()
    assert not r.pending and r.bytes_held == 0
    assert stats.skipped["fragments incomplete"] >= 1


def test_reassembly_times_out_in_capture_time():
    stats = ReadStats()
    r = Reassembler(stats, max_age_s=30.0)
    assert r.add((4, "a", "b", 1, 17), 100.0, 0, True, b"x" * 16) is None
    assert r.add((4, "a", "b", 1, 17), 131.0, 16, False, b"y" * 4) is None  # the first piece expired
    assert stats.skipped == {"fragments timed out": 1}
    assert r.add((4, "a", "b", 1, 17), 131.5, 0, True, b"x" * 16) == b"x" * 16 + b"y" * 4


@pytest.mark.parametrize("offset,more,size", [(65528, False, 16), (0, True, 13)])
def test_impossible_fragments_are_refused(offset, more, size):
    stats = ReadStats()
    r = Reassembler(stats)
    assert r.add((4, "a", "b", 1, 17), 1.0, offset, more, b"x" * size) is None
    assert stats.skipped == {"bad fragment": 1} and not r.pending


def test_unfragmented_captures_read_as_before():
    stats = ReadStats()
    grams = list(read_datagrams(str(DATA / "nfreplay_v9_dual.pcap"), stats))
    assert len(grams) == 7 and stats.reassembled == 0 and stats.skipped == {}


def test_a_piece_running_past_the_end_the_last_fragment_gives_is_refused():
    stats = ReadStats()
    r = Reassembler(stats)
    assert r.add((4, "a", "b", 1, 17), 1.0, 8, True, b"x" * 16) is None   # bytes 8..24
    assert r.add((4, "a", "b", 1, 17), 1.0, 0, True, b"y" * 8) is None    # bytes 0..8
    assert r.add((4, "a", "b", 1, 17), 1.0, 8, False, b"z" * 4) is None   # says the end is 12
    assert stats.skipped == {"bad fragment": 1} and not r.pending
