"""Query argument parsing: times, ports, protocols and filters, with plain-language reasons."""
import pytest

from flowmodel import addr
from flowmodel.protocol import (QueryError, error_reply, is_digits, normalise_flow_filters, parse_port, parse_protocol,
                                parse_uint_arg, parse_when, protocol_name)

NOW = 1_800_000_000_000


@pytest.mark.parametrize("value,expected", [
    ("15m", NOW - 15 * 60_000), ("24h", NOW - 86_400_000), ("7d", NOW - 7 * 86_400_000), ("30s", NOW - 30_000),
    ("now", NOW), (1234, 1234), ("1234", 1234), ("1.5h", NOW - 5_400_000),
    ("2026-11-24T14:30", 1795530600000), ("2026-11-24T14:30:00Z", 1795530600000),
    ("2026-11-24T15:30:00+01:00", 1795530600000),
])
def test_parse_when(value, expected):
    assert parse_when(value, NOW) == expected


@pytest.mark.parametrize("value", ["yesterday", "15 minutes", "2026-13-01", True, ""])
def test_parse_when_errors(value):
    with pytest.raises(QueryError, match="is not a time"):
        parse_when(value, NOW, name="since")


@pytest.mark.parametrize("value,expected", [("tcp", 6), ("UDP", 17), ("icmp", 1), ("ipv6-icmp", 58), ("6", 6), (47, 47)])
def test_parse_protocol(value, expected):
    assert parse_protocol(value) == expected


@pytest.mark.parametrize("value,reason", [("tcpp", "not a protocol name"), ("256", "outside 0-255"), (-1, "outside")])
def test_parse_protocol_errors(value, reason):
    with pytest.raises(QueryError, match=reason):
        parse_protocol(value)


def test_parse_port():
    assert parse_port("443") == 443 and parse_port(0) == 0
    with pytest.raises(QueryError, match="dst_port 70000 is outside 0-65535"):
        parse_port(70000, "dst_port")
    with pytest.raises(QueryError, match="'https' is not a number"):
        parse_port("https")


def test_normalise_flow_filters():
    out = normalise_flow_filters({"src": "10.0.0.0/8", "dst": "2001:db8::1", "port": "53", "protocol": "udp",
                                  "since": "1h", "until": "now", "unknown": "x", "exporter": ""}, NOW)
    assert out["src"] == (addr.to_bytes("10.0.0.0"), addr.to_bytes("10.255.255.255"))
    assert out["dst"][0] == out["dst"][1] == addr.to_bytes("2001:db8::1")
    assert out["port"] == 53 and out["protocol"] == 17
    assert out["since"] == NOW - 3_600_000 and out["until"] == NOW
    assert "unknown" not in out and "exporter" not in out


@pytest.mark.parametrize("args,reason", [
    ({"src": "10.0.0.1/8"}, "src: '10.0.0.1/8' has host bits set"),
    ({"addr": "not-an-ip"}, "addr:"),
    ({"since": "1h", "until": "2h"}, "since is after until"),
    ({"src_port": "-1"}, "src_port -1 is outside"),
])
def test_normalise_flow_filter_errors(args, reason):
    with pytest.raises(QueryError, match=reason):
        normalise_flow_filters(args, NOW)


def test_names_and_error_reply():
    assert protocol_name(6) == "TCP" and protocol_name(253) == "253"
    assert error_reply("bad port") == {"ok": False, "error": "bad port"}


@pytest.mark.parametrize("parse, value, words", [
    (lambda v: parse_when(v, NOW, name="from"), "\u00b2", "from '\u00b2' is not a time"),
    (lambda v: parse_when(v, NOW, name="from"), "-\u00b9\u00b2", "from '-\u00b9\u00b2' is not a time"),
    (parse_protocol, "\u00b2", "protocol '\u00b2' is not a protocol name"),
    (lambda v: parse_uint_arg(v, "input_if", 2**32 - 1), "\u00b2", "input_if '\u00b2' is not a whole number"),
])
def test_digits_int_cannot_read_are_refused_in_words(parse, value, words):
    """str.isdigit() takes superscripts ('\u00b2') that int() refuses: a QueryError, not a ValueError."""
    with pytest.raises(QueryError, match=words):
        parse(value)


def test_ascii_digits_only():
    assert is_digits("0123456789")
    assert not any(is_digits(t) for t in ("", "\u00b2", "\u0663", "\uff13", "1 ", "-1", "1.5"))
