"""The store's names (names.py): newest row per (exporter, ifindex, source), named by precedence
options > snmp > config, bounded, saved in and loaded from a real SQLite file; reverse DNS answered
from its cache, resolved on its own thread."""
from __future__ import annotations

import sqlite3

import pytest

from flowmodel.namesconf import parse_exporters
from flowlens_store.names import NameBook, ReverseDns, load, save
from support.services import wait_until

CONFIG = parse_exporters([{"address": "192.0.2.1", "name": "edge-1", "site": "paris",
                           "interfaces": {1: {"name": "cfg-1", "description": "from config", "speed": "10G"},
                                          2: {"name": "cfg-2"}}}])


def event(source="options", exporter="192.0.2.1", rows=((1, "Gi0/1", ""),), complete=False, at=1_000):
    return {"exporter": exporter, "origin": source, "complete": complete, "learnt_at": at,
            "interfaces": [{"ifindex": i, "name": n, "description": d, "speed_bps": 0} for i, n, d in rows],
            "schema": 1, "source": "collector@x", "seq": 1}


def by_index(book):
    return {(r["exporter"], r["ifindex"]): r for r in book.interfaces()}


def test_precedence_options_over_snmp_over_config():
    book = NameBook(4096, 1000, CONFIG)
    assert by_index(book)[("192.0.2.1", 1)]["source"] == "config"
    book.apply(event("snmp", rows=[(1, "snmp-1", "snmp alias")]))
    assert by_index(book)[("192.0.2.1", 1)]["name"] == "snmp-1"
    book.apply(event("options", rows=[(1, "Gi0/1", "")]))
    row = by_index(book)[("192.0.2.1", 1)]
    # the name from options; its description and speed from the next sources that have one
    assert row == {"exporter": "192.0.2.1", "ifindex": 1, "name": "Gi0/1", "source": "options",
                   "description": "snmp alias", "speed_bps": 10 * 10**9}
    assert by_index(book)[("192.0.2.1", 2)]["name"] == "cfg-2"


def test_an_empty_name_does_not_win():
    book = NameBook(4096, 1000, CONFIG)
    book.apply(event("options", rows=[(2, "", "only a description")]))
    row = by_index(book)[("192.0.2.1", 2)]
    assert (row["name"], row["source"], row["description"]) == ("cfg-2", "config", "only a description")


def test_complete_table_drops_what_it_no_longer_lists():
    book = NameBook(4096, 1000)
    book.apply(event("snmp", rows=[(1, "a", ""), (2, "b", "")], complete=True))
    persist = book.apply(event("snmp", rows=[(2, "b", "")], complete=True, at=2_000))
    assert persist["dropped"] == [["192.0.2.1", 1, "snmp"]]
    assert set(by_index(book)) == {("192.0.2.1", 2)}


def test_bounds_per_exporter_and_in_all():
    book = NameBook(max_interfaces=2, max_rows=3)
    book.apply(event(rows=[(1, "a", ""), (2, "b", ""), (3, "c", "")]))
    assert book.refused == 1 and len(book.rows) == 2
    book.apply(event(exporter="192.0.2.2", rows=[(1, "x", ""), (2, "y", "")], at=2_000))
    assert len(book.rows) == 3 and book.evicted == 1
    assert ("192.0.2.1", 1, "options") not in book.rows  # the least recently learnt went first
    assert book.stats() == {"rows": 3, "max_rows": 3, "max_interfaces": 2, "config_interfaces": 0,
                            "config_exporters": 0, "events": 2, "refused": 1, "evicted": 1, "reverse_dns": None}


@pytest.mark.parametrize("bad, reason", [
    ({"exporter": "router-1"}, "is not an address"),
    ({"origin": "guess"}, "origin 'guess'"),
    ({"interfaces": [{"ifindex": -1, "name": "x"}]}, "ifindex -1"),
    ({"interfaces": [{"ifindex": 1, "name": 5}]}, "name must be text"),
    ({"learnt_at": "soon"}, "learnt_at"),
])
def test_bad_events_are_refused_with_a_reason(bad, reason):
    with pytest.raises(ValueError, match=reason):
        NameBook(10, 10).apply({**event(), **bad})


def test_saved_rows_load_back(tmp_path):
    db = sqlite3.connect(tmp_path / "names.db", isolation_level=None)
    book = NameBook(4096, 1000)
    save(db, book.apply(event(rows=[(1, "Gi0/1", "up"), (2, "Gi0/2", "")])), 1_000)
    save(db, book.apply(event("snmp", rows=[(1, "s1", "")], complete=True, at=2_000)), 2_000)
    save(db, book.apply(event("snmp", rows=[(3, "s3", "")], complete=True, at=3_000)), 3_000)
    db.close()
    again = NameBook(4096, 1000)
    again.load(load(sqlite3.connect(tmp_path / "names.db")))
    assert again.interfaces() == book.interfaces()
    got = {(r["ifindex"], r["source"], r["name"]) for r in again.interfaces()}
    assert got == {(1, "options", "Gi0/1"), (2, "options", "Gi0/2"), (3, "snmp", "s3")}


def test_reply_lists_exporters_with_config_names():
    book = NameBook(4096, 1000, CONFIG)
    book.apply(event(exporter="2001:db8::1"))
    reply = book.reply(["198.51.100.9"], None)
    assert reply["exporters"] == [
        {"exporter": "192.0.2.1", "name": "edge-1", "site": "paris", "dns": ""},
        {"exporter": "198.51.100.9", "name": "", "site": "", "dns": ""},
        {"exporter": "2001:db8::1", "name": "", "site": "", "dns": ""}]


def test_reverse_dns_answers_from_cache_and_resolves_on_its_thread():
    dns = ReverseDns(cache_size=2, ttl_s=3600).start()  # the system resolver: /etc/hosts names 127.0.0.1
    try:
        assert dns.lookup("127.0.0.1") == ""  # not resolved yet: never waits
        assert wait_until(lambda: dns.lookup("127.0.0.1"), timeout_s=10) == "localhost"
    finally:
        dns.stop()


def test_reverse_dns_cache_is_bounded_and_expires():
    now = [0.0]
    asked = []
    dns = ReverseDns(cache_size=2, ttl_s=60, resolve=lambda a: asked.append(a) or f"h-{a}", clock=lambda: now[0]).start()
    try:
        for n, a in enumerate(("192.0.2.1", "192.0.2.2", "192.0.2.3"), 1):
            dns.lookup(a)
            wait_until(lambda: dns.lookups == n, timeout_s=10)
        assert list(dns.cache) == ["192.0.2.2", "192.0.2.3"]
        assert dns.lookup("192.0.2.3") == "h-192.0.2.3"
        now[0] = 61.0  # past the ttl: the old answer still shows while it is asked again
        assert dns.lookup("192.0.2.3") == "h-192.0.2.3"
        wait_until(lambda: asked.count("192.0.2.3") == 2, timeout_s=10)
    finally:
        dns.stop()
