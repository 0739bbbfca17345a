"""Address helpers: text <-> 16 bytes, CIDR bounds, vectorised masks for IPv4 and IPv6."""
import numpy as np
import pytest

from flowmodel import addr


def test_text_round_trip_both_families():
    for text in ("10.1.2.3", "0.0.0.0", "255.255.255.255", "2001:db8::1", "::1", "fe80::1:2:3:4"):
        assert addr.to_text(addr.to_bytes(text)) == text
    assert addr.to_bytes("10.0.0.1") == b"\x00" * 10 + b"\xff\xff" + bytes([10, 0, 0, 1])
    assert addr.to_bytes(bytes([1, 2, 3, 4])) == addr.to_bytes("1.2.3.4")


def test_bad_address():
    with pytest.raises(addr.AddressError):
        addr.to_bytes("10.0.0.256")
    with pytest.raises(addr.AddressError):
        addr.to_bytes(b"\x01\x02")


@pytest.mark.parametrize("text,lo,hi,plen", [
    ("10.0.0.0/8", "10.0.0.0", "10.255.255.255", 8),
    ("192.168.1.7", "192.168.1.7", "192.168.1.7", 32),
    ("0.0.0.0/0", "0.0.0.0", "255.255.255.255", 0),
    ("2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 32),
    ("::1", "::1", "::1", 128),
])
def test_cidr_bounds(text, lo, hi, plen):
    l, h, p = addr.parse_network(text)
    assert (addr.to_text(l), addr.to_text(h), p) == (lo, hi, plen)


def test_ipv4_range_excludes_ipv6_and_neighbours():
    lo, hi, _ = addr.parse_network("10.0.0.0/8")
    inside = addr.to_bytes("10.200.1.1")
    outside = [addr.to_bytes(t) for t in ("11.0.0.0", "9.255.255.255", "2001:db8::1", "::a00:1")]
    assert lo <= inside <= hi
    assert not any(lo <= o <= hi for o in outside)


def test_host_bits_set_is_an_error_with_a_hint():
    with pytest.raises(addr.AddressError, match="did you mean 10.0.0.0/8"):
        addr.parse_network("10.0.0.1/8")
    with pytest.raises(addr.AddressError):
        addr.parse_network("")
    with pytest.raises(addr.AddressError):
        addr.parse_network("10.0.0.0/40")


def test_mask_column_v4_and_v6():
    col = addr.from_texts(["10.1.2.3", "192.168.77.200", "2001:db8:1:2:3:4:5:6", "::ffff:0:0"])
    masked = addr.column_to_text(addr.mask_column(col, 24, 64))
    assert masked == ["10.1.2.0", "192.168.77.0", "2001:db8:1:2::", "0.0.0.0"]
    assert addr.column_to_text(addr.mask_column(col, 12, 20)) == ["10.0.0.0", "192.160.0.0", "2001::", "0.0.0.0"]
    assert addr.column_to_text(addr.mask_column(col, 32, 128))[:3] == ["10.1.2.3", "192.168.77.200", "2001:db8:1:2:3:4:5:6"]
    assert addr.column_to_text(addr.mask_column(col, 0, 0))[:3] == ["0.0.0.0", "0.0.0.0", "::"]


def test_is_ipv4_and_ipv4_columns():
    col = addr.from_texts(["1.2.3.4", "::1", "::ffff:8.8.8.8"])
    assert addr.is_ipv4(col).tolist() == [True, False, True]
    u32 = np.array([0x0A000001, 0xC0A80101], dtype=np.uint32)
    assert addr.column_to_text(addr.ipv4_column(u32)) == ["10.0.0.1", "192.168.1.1"]
    raw = np.array([[10, 0, 0, 1], [172, 16, 0, 9]], dtype=np.uint8)
    assert addr.column_to_text(addr.ipv4_column_from_raw(raw)) == ["10.0.0.1", "172.16.0.9"]
    # the same bytes as '<u4' words (a record field or np.frombuffer view), strided or not
    words = np.frombuffer(raw.tobytes(), dtype="<u4")
    assert addr.column_to_text(addr.ipv4_column_from_raw(words)) == ["10.0.0.1", "172.16.0.9"]
    rec = np.zeros(2, dtype=[("a", "<u2"), ("ip", "<u4")])
    rec["ip"] = words
    assert addr.column_to_text(addr.ipv4_column_from_raw(rec["ip"])) == ["10.0.0.1", "172.16.0.9"]
    with pytest.raises(TypeError):
        addr.ipv4_column_from_raw(words.astype(">u4"))  # values, not bytes: would come out reversed


def test_prefix_text():
    assert addr.prefix_text(addr.to_bytes("10.1.2.0"), 24, 64) == "10.1.2.0/24"
    assert addr.prefix_text(addr.to_bytes("2001:db8::"), 24, 64) == "2001:db8::/64"
