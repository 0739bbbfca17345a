"""The one reader of the store's names reply (namebook.NameBook): tolerant of bad rows, keeping an
interface known only by its speed, and the labels the flow table and Explore show from it."""
from __future__ import annotations

from flowlens_web import explore as ex
from flowlens_web import flowtable
from flowlens_web.namebook import NameBook

REPLY = {"exporters": [{"exporter": "192.0.2.1", "name": "", "site": "par1", "dns": "r1.example.net"},
                       {"exporter": "192.0.2.2", "name": "edge-2", "site": "", "dns": "e2.example.net"}, {"x": 1}],
         "interfaces": [{"exporter": "192.0.2.1", "ifindex": "2", "name": "xe-0/0/1", "description": "transit",
                         "speed_bps": 10**10, "source": "snmp"},
                        {"exporter": "192.0.2.1", "ifindex": "bad", "name": "n"},
                        {"exporter": "192.0.2.1", "name": "no ifindex"},
                        {"exporter": "192.0.2.1", "ifindex": 4, "name": "", "description": "", "speed_bps": 10**9,
                         "source": "config"}]}


def test_reads_tolerantly():
    book = NameBook.from_reply(REPLY)
    assert book.exporter_name("192.0.2.1") == "r1.example.net" and book.exporter_name("192.0.2.2") == "edge-2"
    assert book.exporter_name("192.0.2.9") == "" and book.exporter_label("192.0.2.9") == "192.0.2.9"
    assert book.exporter_label("192.0.2.2") == "edge-2 (192.0.2.2)"
    assert book.exporter_info("192.0.2.1") == {"name": "", "site": "par1", "dns": "r1.example.net"}
    assert book.interface("192.0.2.1", 2)["name"] == "xe-0/0/1"
    assert [i["ifindex"] for i in book.exporter_interfaces("192.0.2.1")] == ["2", 4]  # the bad rows left out
    assert len(book) == 4 and len(NameBook.from_reply(None)) == 0


def test_an_interface_with_a_speed_but_no_name_is_kept():
    book = NameBook.from_reply(REPLY)
    assert book.speed_bps("192.0.2.1", 4) == 10**9
    assert book.interface_label("192.0.2.1", 4) == "ifIndex 4"
    # Explore rates its utilisation; the flow table shows its number, saying no name is known
    assert ex.series_speed("in_if", {"exporter": "192.0.2.1", "input_if": 4}, book) == 10**9
    assert flowtable.interface_cell(book, "192.0.2.1", 4) == {"text": "4", "title": "ifIndex 4 (no name known)",
                                                              "ifindex": 4}
    assert flowtable.interface_cell(book, "192.0.2.1", 2) == {"text": "xe-0/0/1", "title": "ifIndex 2, transit",
                                                              "ifindex": 2}
