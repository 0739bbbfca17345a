import numpy as np

from flowlens_analyzer import scan
from flowlens_analyzer.common import Context, view_from_batch
from flowmodel.schema import FlowBatch

from flows import T0, batch, config, normal_mix


def run(b, **cfg):
    return scan.analyze(view_from_batch(b, T0, T0 + 60_000), Context(config(**cfg)), {})


def test_vertical_scan_is_critical_with_the_numbers():
    b = batch("172.16.0.55", "10.0.0.5", np.arange(1, 2848), packets=1, tcp_flags=0x02)
    [f] = run(b)
    assert f.key == "scan:172.16.0.55"
    assert f.severity == "CRITICAL"
    assert f.description.startswith("172.16.0.55 contacted 2,847 ports on 10.0.0.5 in 60 s")
    assert "100% SYN-only" in f.description and "likely a port scan" in f.description
    assert "authorised scanner" in f.action
    assert f.evidence["ports"] == 2847 and f.evidence["window_start"] == T0
    assert f.filter == {"src": "172.16.0.55", "dst": "10.0.0.5", "since": T0, "until": T0 + 60_000}


def test_scan_from_outside_is_worded_as_outside():
    b = batch("198.51.100.7", "10.0.0.5", np.arange(1000, 1200), packets=1, tcp_flags=0x02)
    [f] = run(b)
    assert "198.51.100.7 (outside your networks) contacted 200 ports" in f.description
    assert f.action.startswith("Block 198.51.100.7 at the edge")


def test_below_threshold_and_replies_raise_nothing():
    assert run(batch("10.0.0.9", "10.0.0.5", np.arange(1, 100), packets=1, tcp_flags=0x02)) == []
    # A busy server answering one client on 500 ephemeral ports is not a scan.
    replies = batch("10.0.0.5", "10.0.0.9", np.arange(40000, 40500), src_port=443, packets=20)
    assert run(replies) == []


def test_horizontal_sweep():
    hosts = [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(300)]
    [f] = run(batch("10.0.0.66", hosts, 445, packets=1, tcp_flags=0x02))
    assert f.key == "scan:10.0.0.66 port 445"
    assert f.severity == "CRITICAL"
    assert "contacted 300 hosts on port 445 (SMB) in 60 s" in f.description
    assert f.filter["port"] == 445 and f.filter["src"] == "10.0.0.66"


def test_busy_client_with_full_sessions_is_not_a_sweep():
    hosts = [f"203.0.113.{i}" for i in range(1, 200)]
    assert run(batch("10.0.0.66", hosts, 443, packets=40, tcp_flags=0x1b)) == []


def test_dns_resolver_talking_to_many_servers_is_not_a_sweep():
    hosts = [f"203.0.113.{i}" for i in range(1, 200)]
    assert run(batch("10.0.0.53", hosts, 53, protocol=17, packets=1, tcp_flags=0)) == []


def test_threshold_comes_from_config():
    b = batch("10.0.0.9", "10.0.0.5", np.arange(1, 31), packets=1, tcp_flags=0x02)
    assert run(b) == []
    assert [f.key for f in run(b, scan_threshold=30)] == ["scan:10.0.0.9"]


def test_normal_mix_raises_nothing():
    assert run(normal_mix()) == []
    assert run(FlowBatch.empty(0)) == []
