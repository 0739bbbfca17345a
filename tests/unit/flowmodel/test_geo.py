"""flowmodel.geo: country codes packed in two bytes, and the labels of special address ranges
(every labelled range's edges, and the addresses just outside them, which are nobody's label)."""
import ipaddress

import pytest

from flowmodel import addr
from flowmodel.geo import (LABEL_NETWORKS, LABELS, CountryError, address_labels, country_code, country_text,
                           countries_text, pack_country, parse_country)


def test_codes_pack_into_two_bytes_that_sort_as_their_letters():
    assert pack_country("US") == 0x5553 and pack_country("us") == 0x5553
    assert country_code(0x5553) == "US" and country_code(0) == ""
    assert pack_country("AD") < pack_country("AE") < pack_country("BA")
    for bad in ("USA", "U", "1A", "é1"):
        with pytest.raises(CountryError):
            pack_country(bad)


def test_labels_print_as_words_and_parse_back():
    assert country_text(pack_country("XP")) == "private"
    assert country_text(pack_country("XD")) == "documentation"
    assert country_text(pack_country("FR")) == "FR" and country_text(0) == ""
    assert countries_text(address_labels(addr.from_texts(["10.0.0.1", "8.8.8.8"]))) == ["private", ""]
    for code, words in LABELS.items():
        assert parse_country(words) == parse_country(code.lower()) == pack_country(code)
    assert parse_country(" de ") == pack_country("DE")
    with pytest.raises(CountryError, match="two-letter country code or one of: private"):
        parse_country("France")
    with pytest.raises(CountryError):
        parse_country("")


def _edges():
    """(address text, expected code) for the first and last address of every labelled network, and
    for the addresses just before and after it when no other label covers them."""
    nets = [(ipaddress.ip_network(t), c) for t, c in LABEL_NETWORKS]
    out = []
    for net, code in nets:
        out += [(str(net.network_address), code), (str(net.broadcast_address), code)]
        for outside in (int(net.network_address) - 1, int(net.broadcast_address) + 1):
            if 0 <= outside < (1 << net.max_prefixlen):
                a = ipaddress.IPv6Address(outside) if net.version == 6 else ipaddress.IPv4Address(outside)
                covering = [c for n, c in nets if n.version == net.version and a in n]
                out.append((str(a), covering[0] if covering else ""))
    return out


def test_every_labelled_range_edge_and_its_neighbours():
    edges = _edges()
    got = address_labels(addr.from_texts([t for t, _c in edges]))
    assert [(t, country_code(v)) for (t, _c), v in zip(edges, got)] == edges


@pytest.mark.parametrize("text,label", [
    ("10.1.2.3", "private"), ("172.31.255.255", "private"), ("172.32.0.0", ""), ("192.168.1.1", "private"),
    ("100.64.0.1", "shared (CGNAT)"), ("100.128.0.0", ""), ("127.0.0.1", "loopback"), ("169.254.1.1", "link-local"),
    ("192.0.2.7", "documentation"), ("198.51.100.1", "documentation"), ("203.0.113.200", "documentation"),
    ("224.0.0.251", "multicast"), ("255.255.255.255", "reserved"), ("0.0.0.0", "reserved"), ("8.8.8.8", ""),
    ("::1", "loopback"), ("::2", ""), ("2001:db8::1", "documentation"), ("3fff:fff::1", "documentation"),
    ("fd12:3456::1", "private"), ("fe80::1", "link-local"), ("ff02::1", "multicast"), ("2001:4860::8888", ""),
])
def test_a_few_addresses_everyone_knows(text, label):
    assert country_text(address_labels(addr.from_texts([text]))[0]) == label


def test_flowlens_query_takes_country_filters_and_refuses_a_bad_one(capsys):
    from flowmodel import cli

    args = cli.build_parser().parse_args(["query", "top", "--by", "dst_country", "--src-country", "private",
                                          "--country", "DE"])
    assert (args.by, args.src_country, args.country) == ("dst_country", "private", "DE")
    assert cli.main(["query", "flows", "--dst-country", "Narnia", "--endpoint", "tcp://127.0.0.1:1"]) == 2
    assert "dst_country: 'Narnia' is not a two-letter country code" in capsys.readouterr().err
