import numpy as np

from flowlens_analyzer import dns
from flowlens_analyzer.common import Context, view_from_batch
from flowmodel.schema import FlowBatch

from flows import T0, batch, config, normal_mix


def run(b, **cfg):
    return dns.analyze(view_from_batch(b, T0, T0 + 60_000), Context(config(**cfg)), {})


def test_query_flood_from_one_source():
    # 720,000 queries in 60 s from 10.0.1.100 (UDP flows of 1,000 queries each) = 12,000/s.
    b = batch("10.0.1.100", "10.0.0.53", 53, src_port=np.arange(20000, 20720), protocol=17, packets=1000)
    [f] = run(b)
    assert f.key == "dns:10.0.1.100"
    assert f.severity == "WARNING"
    assert f.description.startswith("10.0.1.100 is generating 12,000 DNS queries/sec (720,000 in 60 s, mostly to 10.0.0.53")
    assert f.description.endswith("possible loop or misconfigured resolver")
    assert "resolver" in f.action
    assert f.filter["src"] == "10.0.1.100" and f.filter["port"] == 53


def test_dns_ports_come_from_config():
    b = batch("10.0.1.100", "10.0.0.53", 5300, protocol=17, packets=600)
    assert run(b) == []
    [f] = run(b, dns_ports=["53", "5300"], dns_qps_threshold=5)
    assert "10 DNS queries/sec" in f.description


def test_large_responses_leaving_the_network_look_like_reflection():
    victims = [f"198.51.100.{i}" for i in range(1, 51)]
    b = batch("10.0.0.53", victims, 40000, src_port=53, protocol=17, bytes=400_000, packets=100)
    [f] = run(b)
    assert f.key == "dns:reflection:10.0.0.53"
    assert f.severity == "CRITICAL"
    assert f.description.startswith("10.0.0.53 sent 20.0 MB of DNS responses to 50 hosts on the internet in 60 s")
    assert "average response 4000 bytes" in f.description
    assert "RRL" in f.action


def test_normal_mix_raises_nothing():
    assert run(normal_mix()) == []
    assert run(FlowBatch.empty(0)) == []
