"""A silence set with the CLI reaches the analyzer through the store: the replayed nmap capture raises
no scan advisory for the silenced address, the analyzer counts what it held back, and the other
analyzers' advisories for the same traffic are stored as usual."""
from __future__ import annotations

from support.services import ServiceProcess, ServiceStack, send_udp, wait_until
from test_analyzer_scenarios import FAST, payloads
from support.notify import flowlens


def analyzer_counters(client) -> dict:
    rows = [c for c in client.exporters()["collectors"] if c.get("kind") == "analyzer"]
    return rows[0]["counters"] if rows else {}


def test_a_silenced_scanner_raises_no_scan_advisory(tmp_path):
    with ServiceStack(tmp_path, ["store"], analysis=FAST) as stack:
        client = stack.client()
        try:
            rc, out, err = flowlens(stack.config_path, "silence", "add", "--analyzer", "scan", "--address", "127.0.0.1",
                                    "--for", "1h", "--comment", "our Nessus scanner")
            assert rc == 0, err
            for name in ("collector", "analyzer"):
                stack.procs[name] = ServiceProcess(name, stack.config_path).start()
            wait_until(lambda: analyzer_counters(client).get("silences") == 1, 20)  # read from the store
            send_udp(stack.netflow_port, payloads("softflowd_v9_scan.pcap"))
            counters = wait_until(lambda: (c := analyzer_counters(client)) and c.get("advisories_silenced", 0) >= 2
                                  and c, 30)  # the port scan and the sweep of port 22
            stored = wait_until(lambda: (s := client.advisories(include_resolved=True, limit=1000)) and
                                any(a["key"] == "top_talkers:127.0.0.1" for a in s) and s, 30)
        finally:
            client.close()
    assert [a["key"] for a in stored if a["analyzer"] == "scan"] == []
    assert counters["silence_reads_failed"] == 0
