"""Enrichment against MaxMind's own test databases (tests/data/GeoLite2-*-Test.mmdb): every network's
first and last address, and the address just past it, is looked up a column at a time and compared
with what the maxminddb reader says for that one address; the exporter's own AS numbers win; labels
replace countries for special ranges; a bad database path is a config error naming its key."""
from __future__ import annotations

import ipaddress
import zlib
from pathlib import Path

import maxminddb
import numpy as np
import pytest

from flowlens_collector import geotable
from flowlens_collector.enrich import Enricher, asn_of, country_of
from flowmodel import addr
from flowmodel.config import ConfigError
from flowmodel.geo import country_code, pack_country
from flowmodel.schema import HINT_CONST, FlowBatch

DATA = Path(__file__).resolve().parents[2] / "data"
ASN_DB = str(DATA / "GeoLite2-ASN-Test.mmdb")
COUNTRY_DB = str(DATA / "GeoLite2-Country-Test.mmdb")


def _probe_addresses(path: str) -> list[str]:
    """First, last and one-past-the-end address of every network in the database."""
    out = []
    with maxminddb.open_database(path) as reader:
        for net, _rec in reader:
            out.append(str(net.network_address))
            out.append(str(net.broadcast_address))
            after = int(net.broadcast_address) + 1
            if after < (1 << net.max_prefixlen):
                out.append(str(ipaddress.IPv6Address(after) if net.version == 6 else ipaddress.IPv4Address(after)))
    return out


def _expected(path: str, texts: list[str], value_of) -> list[int]:
    with maxminddb.open_database(path) as reader:
        return [value_of(rec) if isinstance(rec := reader.get(t), dict) else 0 for t in texts]


@pytest.fixture(scope="module")
def enricher():
    e = Enricher(ASN_DB, COUNTRY_DB)
    e.open()
    return e


@pytest.mark.parametrize("path,table,value_of", [(ASN_DB, "asn", asn_of), (COUNTRY_DB, "country", country_of)])
def test_every_network_edge_is_found_as_the_reader_finds_it(enricher, path, table, value_of):
    texts = _probe_addresses(path)
    want = _expected(path, texts, value_of)
    assert sum(1 for v in want if v) > 200          # the probes hit the database, not only its gaps
    assert 0 in want                                # and its gaps too
    got = getattr(enricher, table).lookup(addr.from_texts(texts))
    assert got.tolist() == want


def test_known_entries_of_the_test_databases(enricher):
    col = addr.from_texts(["1.0.0.1", "81.2.69.142", "2001:218::1", "8.8.4.4"])
    assert enricher.asn.lookup(col).tolist()[0] == 15169
    assert [country_code(v) for v in enricher.country.lookup(col)] == ["", "GB", "JP", ""]


def _batch(src: list[str], dst: list[str], src_as: list[int]) -> FlowBatch:
    b = FlowBatch({"src_addr": addr.from_texts(src), "dst_addr": addr.from_texts(dst),
                   "src_as": np.array(src_as, np.uint32)}, hints={"dst_as": HINT_CONST, "src_country": HINT_CONST})
    return b


def test_a_batch_gets_as_numbers_where_the_exporter_left_none_and_countries(enricher):
    b = _batch(["1.0.0.1", "1.0.0.2", "10.1.2.3", "81.2.69.142"], ["81.2.69.142", "2001:db8::1", "1.128.0.1", "100.64.0.9"],
               [0, 64500, 0, 0])
    enricher.apply(b)
    assert b["src_as"].tolist() == [15169, 64500, 0, 0]   # the exporter's 64500 stays
    assert b["dst_as"].tolist() == [0, 0, 1221, 0]
    assert [country_code(v) for v in b["src_country"]] == ["", "", "XP", "GB"]
    assert [country_code(v) for v in b["dst_country"]] == ["GB", "XD", "", "XC"]
    assert "dst_as" not in b.hints and "src_country" not in b.hints   # the columns changed: no promise left
    assert b["src_country"].dtype == np.dtype("<u2") and b["src_as"].dtype == np.dtype("<u4")


def test_only_the_configured_database_is_used():
    e = Enricher(country_path=COUNTRY_DB)
    e.open()
    b = _batch(["1.0.0.1"], ["81.2.69.142"], [0])
    e.apply(b)
    assert e.asn is None and b["src_as"].tolist() == [0]
    assert country_code(b["dst_country"][0]) == "GB"
    assert not Enricher().enabled


@pytest.mark.parametrize("key,kw", [("enrichment.geoip_asn", "asn_path"), ("enrichment.geoip_country", "country_path")])
def test_a_missing_or_unreadable_database_is_a_config_error_naming_its_key(tmp_path, key, kw):
    with pytest.raises(ConfigError, match=f"^{key}: .*not a file"):
        Enricher(**{kw: str(tmp_path / "absent.mmdb")}).open()
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match=f"^{key}: cannot read"):
        Enricher(**{kw: str(junk)}).open()


def test_the_wrong_kind_of_database_is_a_config_error():
    with pytest.raises(ConfigError, match="^enrichment.geoip_asn: .*GeoLite2-Country.*holds no AS numbers"):
        Enricher(asn_path=COUNTRY_DB).open()
    with pytest.raises(ConfigError, match="^enrichment.geoip_country: .*holds no countries"):
        Enricher(country_path=ASN_DB).open()


def test_a_database_over_the_range_bound_is_refused_naming_the_bound():
    with pytest.raises(ConfigError, match="enrichment.max_ranges"):
        Enricher(asn_path=ASN_DB, max_ranges=100).open()


def _bounds(networks, space_last):
    firsts, lasts, values = (np.array(c, np.uint64) for c in zip(*networks)) if networks else [np.zeros(0, np.uint64)] * 3
    starts, vals = geotable.boundaries(firsts, lasts, values.astype(np.uint32), space_last)
    return list(zip(starts.tolist(), vals.tolist()))


def test_boundaries_fill_gaps_and_merge_equal_neighbours():
    nets = [(0, 9, 5), (10, 19, 5), (30, 39, 7), (40, 49, 8), (50, 59, 0), (70, 99, 3)]
    assert _bounds(nets, 99) == [(0, 5), (20, 0), (30, 7), (40, 8), (50, 0), (70, 3)]   # 99 ends the space
    assert _bounds(nets, 200) == [(0, 5), (20, 0), (30, 7), (40, 8), (50, 0), (70, 3), (100, 0)]
    assert _bounds([(5, 6, 1)], 99) == [(0, 0), (5, 1), (7, 0)]
    assert _bounds([], 99) == [(0, 0)]
    top = (1 << 64) - 1   # a network reaching the end of the 64-bit space adds no gap after it
    assert _bounds([(1 << 63, top, 4)], top) == [(0, 0), (1 << 63, 4)]


def test_network_lasts_for_every_prefix_length():
    bits = 64
    lengths = np.arange(0, 65)
    prefixes = np.zeros(len(lengths), np.uint64)
    want = [((1 << (bits - n)) - 1) for n in lengths.tolist()]
    assert geotable.network_lasts(prefixes, lengths, bits).tolist() == want
    assert geotable.network_lasts(np.array([0x0A000000], np.uint64), np.array([8]), 32).tolist() == [0x0AFFFFFF]


def test_ipv6_networks_longer_than_64_bits_are_asked_of_the_database():
    asked = []

    def fallback(packed: bytes) -> int:
        asked.append(packed)
        return 99 if packed == ipaddress.IPv6Address("2001:db8:0:1::5").packed else 0

    hi = int(ipaddress.IPv6Address("2001:db8:0:1::")) >> 64
    table = geotable.RangeTable(np.array([0], np.uint32), np.array([0], np.uint32),
                                np.array([0, hi, hi + 1], np.uint64), np.array([0, 7, 0], np.uint32),
                                long_v6=np.array([hi], np.uint64), fallback=fallback)
    col = addr.from_texts(["2001:db8:0:1::5", "2001:db8:0:1::5", "2001:db8:0:1::6", "2001:db8:0:2::1", "1.2.3.4"])
    assert table.lookup(col).tolist() == [99, 99, 0, 0, 0]
    assert len(asked) == 2   # once per distinct address of the batch


def test_country_of_prefers_where_the_address_is_then_where_it_is_registered():
    assert country_of({"country": {"iso_code": "DE"}, "registered_country": {"iso_code": "FR"}}) == pack_country("DE")
    assert country_of({"registered_country": {"iso_code": "FR"}}) == pack_country("FR")
    assert country_of({"continent": {"code": "EU"}}) == 0
    assert asn_of({"autonomous_system_number": 13335}) == 13335 and asn_of({}) == 0


def test_a_large_table_sorts_its_keys_and_finds_what_a_plain_search_finds():
    rng = np.random.default_rng(5)
    starts = np.unique(np.concatenate([[0], rng.integers(1, 1 << 32, 100_000, dtype=np.uint64)]))
    values = rng.integers(1, 1 << 31, len(starts)).astype(np.uint32)
    assert len(starts) > geotable.SORT_KEYS_ABOVE
    table = geotable.RangeTable(starts.astype(np.uint32), values, np.array([0], np.uint64), np.array([0], np.uint32))
    keys = rng.integers(0, 1 << 32, 5000, dtype=np.uint64).astype(np.uint32)
    want = values[np.searchsorted(starts.astype(np.uint32), keys, side="right") - 1]
    assert table.lookup(addr.ipv4_column(keys)).tolist() == want.tolist()


def _ip_value(record: dict) -> int:
    """MaxMind's MaxMind-DB-test-* records are {'ip': text}: a value of their own per record."""
    return zlib.crc32(record["ip"].encode()) | 1


@pytest.mark.parametrize("name", ["MaxMind-DB-test-mixed-24", "MaxMind-DB-test-mixed-32", "MaxMind-DB-test-ipv4-24"])
def test_trees_of_24_and_32_bit_records_ipv4_trees_and_long_ipv6_networks(name):
    """Record sizes other than GeoLite2's 28 bits, a tree of IPv4 only, and IPv6 networks longer
    than /64 (asked of the reader), each address compared with the reader's answer."""
    path = str(DATA / f"{name}.mmdb")
    with maxminddb.open_database(path) as reader:
        table = geotable.build(reader, path, _ip_value, np.dtype("<u4"), 1000)
        texts = _probe_addresses(path)
        if "mixed" in name:
            assert table.long_v6 is not None and any(":" in t for t in texts)
        want = _expected(path, texts, _ip_value)
        assert sum(1 for v in want if v) >= 10
        assert table.lookup(addr.from_texts(texts)).tolist() == want


def test_maxminds_6to4_alias_of_ipv4_is_not_copied_into_the_ipv6_table(enricher):
    with maxminddb.open_database(ASN_DB) as reader:
        assert reader.get("2002:100::1")["autonomous_system_number"] == 15169   # the alias of 1.0.0.0
        v6_networks = sum(1 for net, _ in reader if net.version == 6)
    assert enricher.asn.lookup(addr.from_texts(["2002:100::1", "1.0.0.1"])).tolist() == [0, 15169]
    assert len(enricher.asn.v6_starts) <= 2 * v6_networks + 1   # IPv6 networks and their gaps only
