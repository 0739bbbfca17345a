"""End to end with real processes: a collector configured with MaxMind's test databases
(tests/data/GeoLite2-*-Test.mmdb) and a store; IPFIX flows with IPv4 and IPv6 addresses from those
databases (and private, CGNAT and documentation ones) sent over loopback UDP come back from the
store's flows op with the AS numbers and countries the maxminddb reader gives for each address, the
exporter's own AS numbers kept, and the special ranges labelled. A missing database stops the
collector with exit 2 and a message naming its key."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import maxminddb
import pytest

from support.e2e import running, store_client, wait_for_flows
from support.services import send_udp, stack_config, wait_until, write_config
from unit.collector.packet_builders import be, ipfix_packet, set_, tmpl_ipfix, v4

DATA = Path(__file__).resolve().parents[1] / "data"
ASN_DB, COUNTRY_DB = DATA / "GeoLite2-ASN-Test.mmdb", DATA / "GeoLite2-Country-Test.mmdb"
REPO = Path(__file__).resolve().parents[2]

# src, dst, src_as, dst_as as exported (0: the exporter did not know)
FLOWS = [
    ("1.0.0.1", "81.2.69.142", 0, 0),
    ("10.1.2.3", "2.125.160.217", 64500, 0),      # the exporter's AS stays; a private source
    ("100.64.1.1", "192.0.2.9", 0, 0),            # CGNAT to documentation: labels, no AS
    ("89.160.20.113", "1.128.0.1", 0, 0),
    ("2001:218::1", "2001:db8::1", 0, 0),         # IPv6: a country, then documentation
    ("2001:1700::5", "fd00::1", 0, 0),            # an IPv6 AS, then unique local (private)
]
LABELS = {"10.1.2.3": "private", "100.64.1.1": "shared (CGNAT)", "192.0.2.9": "documentation",
          "2001:db8::1": "documentation", "fd00::1": "private"}
TID4, TID6 = 300, 301
FIELDS_V4 = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4), (16, 4), (17, 4), (152, 8), (153, 8)]
FIELDS_V6 = [(27, 16), (28, 16), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4), (16, 4), (17, 4), (152, 8), (153, 8)]


def _record(src: str, dst: str, src_as: int, dst_as: int, i: int, now_ms: int) -> bytes:
    import ipaddress

    a = (lambda t: v4(t)) if ":" not in src else (lambda t: ipaddress.IPv6Address(t).packed)
    return (a(src) + a(dst) + be(40000 + i, 2) + be(443, 2) + be(6, 1) + be(1000 + i, 4) + be(3, 4)
            + be(src_as, 4) + be(dst_as, 4) + be(now_ms - 2000, 8) + be(now_ms - 1000, 8))


def _packets() -> list[bytes]:
    now_ms = int(time.time() * 1000)
    sets = [set_(2, tmpl_ipfix(TID4, FIELDS_V4) + tmpl_ipfix(TID6, FIELDS_V6))]
    v4s = b"".join(_record(*f, i, now_ms) for i, f in enumerate(FLOWS) if ":" not in f[0])
    v6s = b"".join(_record(*f, i, now_ms) for i, f in enumerate(FLOWS) if ":" in f[0])
    return [ipfix_packet(sets + [set_(TID4, v4s), set_(TID6, v6s)], export_s=now_ms // 1000, seq=0, domain=1)]


def _want() -> dict[int, dict]:
    """Port -> the AS numbers and countries the reader gives (labels where the range has one)."""
    want = {}
    with maxminddb.open_database(str(ASN_DB)) as asn, maxminddb.open_database(str(COUNTRY_DB)) as country:
        def as_of(a, exported):
            rec = asn.get(a)
            return exported or (rec or {}).get("autonomous_system_number", 0)

        def country_of(a):
            if a in LABELS:
                return LABELS[a]
            rec = country.get(a) or {}
            return (rec.get("country") or rec.get("registered_country") or {}).get("iso_code", "")

        for i, (src, dst, src_as, dst_as) in enumerate(FLOWS):
            want[40000 + i] = {"src_as": as_of(src, src_as), "dst_as": as_of(dst, dst_as),
                               "src_country": country_of(src), "dst_country": country_of(dst)}
    return want


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("enrich")
    cfg = stack_config(tmp)
    cfg["enrichment"] = {"geoip_asn": str(ASN_DB), "geoip_country": str(COUNTRY_DB)}
    cfg["collector"]["stats_interval"] = "0.2s"
    path = write_config(tmp / "flowlens.yaml", cfg)
    with running(("store", path), ("collector", path)), store_client(cfg) as client:
        send_udp(cfg["collector"]["ipfix_port"], _packets(), source=("127.0.0.2", 0))
        wait_for_flows(client, len(FLOWS), since="1h")
        yield client


def test_stored_flows_carry_the_as_numbers_and_countries_of_the_databases(stack):
    rows = stack.flows(since="1h", limit=100).rows()
    got = {r["src_port"]: {k: r[k] for k in ("src_as", "dst_as", "src_country", "dst_country")} for r in rows}
    want = _want()
    assert got == want
    # the probes are not all empty: the databases answered for most of them
    assert want[40000] == {"src_as": 15169, "dst_as": want[40000]["dst_as"], "src_country": "",
                           "dst_country": "GB"}
    assert want[40001]["src_as"] == 64500 and want[40004]["src_country"] == "JP"
    assert sum(1 for w in want.values() for k in ("src_as", "dst_as") if w[k]) >= 5


def test_the_collectors_health_counts_what_enrichment_filled(stack):
    want = _want()
    exported = {40000 + i: (f[2], f[3]) for i, f in enumerate(FLOWS)}
    filled = sum(1 for port, w in want.items() for side, k in enumerate(("src_as", "dst_as"))
                 if w[k] and not exported[port][side])
    found = sum(1 for w in want.values() for k in ("src_country", "dst_country") if w[k])

    def counters():
        collectors = stack.request("exporters")["collectors"]
        c = collectors[0]["counters"] if collectors else {}
        return c if c.get("enriched_flows") == len(FLOWS) else None

    c = wait_until(counters, timeout_s=15, interval_s=0.2)
    assert (c["as_filled"], c["country_found"]) == (filled, found) == (4, 9)


def test_a_missing_database_stops_the_collector_naming_the_key(tmp_path):
    cfg = stack_config(tmp_path)
    cfg["enrichment"] = {"geoip_country": str(tmp_path / "absent.mmdb")}
    path = write_config(tmp_path / "flowlens.yaml", cfg)
    proc = subprocess.run([sys.executable, "-m", "flowlens_collector", "--config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "enrichment.geoip_country" in proc.stderr and "absent.mmdb" in proc.stderr
