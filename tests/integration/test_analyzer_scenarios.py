"""Scenario tests through the real services (store + collector + analyzer as processes): replay real
exporter captures to the collector and read the advisories back through the store client.

The captures are years old; the analyzer's windows run on the flows' own time, and with no more
flows arriving, idle wall time moves flow time on so the windows close (analysis.idle_after).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from flowmodel.pcap import read_datagrams
from support.services import ServiceStack, send_udp, wait_until

DATA = Path(__file__).resolve().parents[1] / "data"
FAST = {"interval": "2s", "window": "60s", "watermark": "1s", "idle_after": "1s", "health_interval": "1s",
        "update_change": 0.01,  # publish every change, so the store holds the final numbers
        "local_networks": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "127.0.0.0/8"]}


def payloads(name: str) -> list[bytes]:
    return [d.payload for d in read_datagrams(str(DATA / name))]


def advisories_for(client, analyzer: str) -> list[dict]:
    return client.advisories(analyzer=analyzer, include_resolved=True, limit=100)


def replay(tmp_path, capture: str, analyzer: str, want_key: str, until=lambda a: True, also: str | None = None,
           then=None, **analysis):
    """Replay a capture through store + collector + analyzer; the advisory for want_key once until(it)
    holds (and the one for ``also``, returned in the stack's ``found`` map; with ``then``, the stack's
    maps are read once want_key's advisory also satisfies then(it)). ``stack.everything``: every
    advisory the store holds at the end."""
    with ServiceStack(tmp_path, ["store", "collector", "analyzer"], analysis={**FAST, **analysis}) as stack:
        client = stack.client()
        try:
            send_udp(stack.netflow_port, payloads(capture))
            found = wait_until(lambda: [a for a in advisories_for(client, analyzer) if a["key"] == want_key and until(a)], 30)
            if then is not None:
                wait_until(lambda: [a for a in advisories_for(client, analyzer) if a["key"] == want_key and then(a)], 30)
            stack.found = {a["key"]: a for a in advisories_for(client, analyzer)}
            stack.everything = client.advisories(include_resolved=True, limit=1000)
            if also:
                stack.found[also] = wait_until(lambda: {a["key"]: a for a in advisories_for(client, analyzer)}.get(also), 10)
        except AssertionError:
            raise AssertionError(f"no {want_key} advisory; analyzer log:\n" + stack.procs["analyzer"].log()[-4000:])
        finally:
            client.close()
    assert stack.procs["analyzer"].proc.returncode == 0, stack.procs["analyzer"].log()[-2000:]
    return found[0], stack


@pytest.mark.parametrize("capture", ["softflowd_v9_telnet.pcap", "softflowd_ipfix_telnet.pcap"])
def test_telnet_capture_raises_the_telnet_advisory(tmp_path, capture):
    # The first window to close may hold part of the capture; the advisory is updated as the rest arrives.
    # The capture's flows arrive up to 4.6 s out of flow-time order: a watermark of 5 s keeps them all.
    adv, _stack = replay(tmp_path, capture, "protocol_mix", "protocol_mix:telnet:127.0.0.1",
                         until=lambda a: a["evidence"]["flows"] == 10, watermark="5s")
    assert adv["severity"] == "WARNING"
    assert adv["description"].startswith("Telnet traffic (port 23) detected from 127.0.0.1 to 127.0.0.1")
    # 5 sessions, both directions; the 20 SYN -> RST/ACK attempts on the closed port are not telnet use.
    assert ": 10 flows," in adv["description"]
    assert "SSH" in adv["action"]
    assert adv["filter"]["port"] == 23 and adv["filter"]["addr"] == "127.0.0.1"
    # Flow time, not arrival time: the capture was made long before this test ran.
    assert adv["first_seen"] < 1_800_000_000_000 and adv["filter"]["until"] - adv["filter"]["since"] == 60_000


def test_dns_capture_raises_the_query_rate_advisory_and_nothing_critical(tmp_path):
    # The corpus DNS scenario talks to a responder on port 5300 (not 53): count that port as DNS.
    adv, stack = replay(tmp_path, "softflowd_v9_dns.pcap", "dns", "dns:127.0.0.1",
                        until=lambda a: a["evidence"]["queries"] >= 500, dns_ports=["53", "5300"], dns_qps_threshold=5,
                        resolve_after="3s", window="10s", then=lambda a: a["state"] == "resolved")
    assert adv["severity"] == "WARNING"
    # Once the advisory has resolved (short windows: the capture spans 6 s), every window holding the
    # capture has run and been published. The responder's replies (from 5300 to 199 client ports, one
    # packet each) are not a port scan, and nothing is CRITICAL.
    assert stack.found["dns:127.0.0.1"]["state"] == "resolved"
    assert [a["key"] for a in stack.everything if a["analyzer"] == "scan"] == []
    assert [a["key"] for a in stack.everything if a["severity"] == "CRITICAL"] == []
    assert "DNS queries/sec" in adv["description"] and "mostly to 127.0.0.1" in adv["description"]
    assert adv["evidence"]["queries"] >= 500
    assert adv["filter"]["src"] == "127.0.0.1" and adv["filter"]["port"] == 5300


@pytest.mark.parametrize("capture", ["softflowd_v9_scan.pcap", "softflowd_ipfix_scan.pcap"])
def test_nmap_capture_raises_the_scan_advisories(tmp_path, capture):
    adv, stack = replay(tmp_path, capture, "scan", "scan:127.0.0.1", until=lambda a: a["evidence"]["ports"] == 300,
                        also="scan:127.0.0.1 port 22")
    assert adv["severity"] == "CRITICAL"
    assert adv["description"].startswith("127.0.0.1 contacted 300 ports on 127.0.0.1 in 60 s (ports 1-300")
    assert "likely a port scan" in adv["description"]
    assert adv["evidence"]["syn_only_share"] == 1.0
    assert adv["filter"]["src"] == "127.0.0.1" and adv["filter"]["dst"] == "127.0.0.1"
    sweep = stack.found["scan:127.0.0.1 port 22"]
    assert sweep["severity"] == "CRITICAL"
    assert sweep["description"].startswith("127.0.0.1 contacted 61 hosts on port 22 (SSH) in 60 s")  # 127.0.0.2-61 and 127.0.0.1 itself
    assert sweep["filter"]["port"] == 22


def test_exporter_that_stops_sending_raises_a_health_advisory(tmp_path):
    with ServiceStack(tmp_path, ["store", "collector", "analyzer"], analysis={**FAST, "exporter_silence": "2s"},
                      collector={"stats_interval": "1s"}) as stack:
        client = stack.client()
        try:
            send_udp(stack.netflow_port, payloads("softflowd_v9_telnet.pcap"))
            found = wait_until(lambda: [a for a in advisories_for(client, "health") if a["key"] == "health:exporter 127.0.0.1/0"], 30)
        finally:
            client.close()
    adv = found[0]
    assert adv["severity"] == "CRITICAL"
    assert adv["description"].startswith("Exporter 127.0.0.1 (observation domain 0) stopped sending")
    assert "50 flows before that" in adv["description"]
    assert adv["filter"]["exporter"] == "127.0.0.1"


def test_collector_restart_raises_no_silence_advisories(tmp_path):
    # review 4, finding 3: after a collector restart (new pid, new source id) the old id's exporter state
    # raised "Exporter 127.0.0.1 stopped sending" and "Collector ... has not reported" for good.
    import time

    from support.services import ServiceProcess

    with ServiceStack(tmp_path, ["store", "collector", "analyzer"], analysis={**FAST, "exporter_silence": "3s"},
                      collector={"stats_interval": "1s"}) as stack:
        client = stack.client()
        try:
            send_udp(stack.netflow_port, payloads("softflowd_v9_telnet.pcap"))
            wait_until(lambda: advisories_for(client, "protocol_mix"), 30)  # the first collector's flows analysed
            old = stack.procs["collector"]
            assert old.stop() == 0
            stack.procs["collector"] = ServiceProcess("collector", stack.config_path).start()
            # The exporter goes on sending through the new collector for three times exporter_silence.
            until = time.monotonic() + 9
            while time.monotonic() < until:
                send_udp(stack.netflow_port, payloads("softflowd_v9_telnet.pcap")[:5])
                time.sleep(0.5)  # the exporter's pace, not a wait for the bus
            health = advisories_for(client, "health")
        finally:
            client.close()
    log = stack.procs["analyzer"].log()
    assert "health:exporter" not in " ".join(a["key"] for a in health), health
    assert [a["key"] for a in health if a["key"].startswith("health:collector")] == [], health
    assert "msg=advisory" in log  # the analyzer was publishing all along
