from flowlens_analyzer import top_talkers
from flowlens_analyzer.common import Context, view_from_batch
from flowmodel.schema import FlowBatch

from flows import T0, batch, config, normal_mix


def run(b, state=None, **cfg):
    return top_talkers.analyze(view_from_batch(b, T0, T0 + 60_000), Context(config(**cfg)), {} if state is None else state)


def heavy(host="10.0.1.50", peer="52.94.7.10"):
    big = batch(host, peer, 443, bytes=730_000_000)  # 730 MB in 60 s = 97.3 Mbps
    rest = batch("10.0.1.60", "203.0.113.9", 80, bytes=270_000_000)
    return FlowBatch.concat([big, rest])


def test_top_talker_share_rate_peer_and_service():
    [f] = run(heavy())
    assert f.key == "top_talkers:10.0.1.50"
    assert f.severity == "INFO"
    assert f.description == "10.0.1.50 is using 73% of total bandwidth (97.3 Mbps), mostly HTTPS to 52.94.7.10"
    assert "52.94.7.10" in f.action
    assert f.evidence["share"] == 0.73 and f.evidence["peer"] == "52.94.7.10"
    assert f.filter == {"addr": "10.0.1.50", "since": T0, "until": T0 + 60_000}


def test_host_bytes_add_both_directions():
    b = FlowBatch.concat([batch("10.0.0.1", "10.0.0.2", 443, bytes=400), batch("10.0.0.2", "10.0.0.1", 50000, src_port=443, bytes=400),
                          batch("10.0.0.3", "10.0.0.4", 443, bytes=500)])
    ranked = top_talkers.host_bytes(view_from_batch(b, T0, T0 + 60_000), 3)
    assert ranked[0] == ("10.0.0.1", 800.0) and ranked[1] == ("10.0.0.2", 800.0)


def test_change_of_top_talker_is_reported():
    state = {}
    run(heavy(), state)
    found = run(heavy("10.0.1.77"), state)
    change = [f for f in found if f.key == "top_talkers:change"]
    assert len(change) == 1
    assert change[0].description.startswith("The top talker changed from 10.0.1.50 to 10.0.1.77 (73% of")


def test_normal_mix_raises_nothing():
    assert run(normal_mix()) == []


def test_traffic_of_a_host_with_itself_counts_once():
    b = FlowBatch.concat([batch("127.0.0.1", "127.0.0.1", 23, bytes=900), batch("10.0.0.3", "10.0.0.4", 443, bytes=100)])
    [f] = run(b)
    assert f.description.startswith("127.0.0.1 (outside your networks) is using 90% of total bandwidth")


def test_long_flow_counts_only_its_part_inside_the_window():
    # review 4, finding 9: a 30-min 10 GB backup ending in this window is 44 Mbps, not 1.3 Gbps.
    backup = batch("10.0.1.50", "10.0.9.9", 873, bytes=10_000_000_000, time_end=T0 + 60_000 - 1)
    backup["time_start"][:] = T0 + 60_000 - 1 - 30 * 60_000
    web = batch("10.0.1.60", "203.0.113.9", 443, bytes=30_000_000)  # 30 MB inside the window
    [f] = run(FlowBatch.concat([backup, web]))
    assert f.key == "top_talkers:10.0.1.50"
    assert f.description.startswith("10.0.1.50 is using 92% of total bandwidth (44.4 Mbps)")
    assert f.evidence["bytes"] == 333_327_777  # 10 GB x 59,999 / 1,800,000 ms
    # A flow that lies wholly inside the window counts whole; one of zero length too.
    assert top_talkers.host_bytes(view_from_batch(web, T0, T0 + 60_000), 1) == [("10.0.1.60", 30_000_000.0)]


def test_top_talker_change_only_between_hosts_above_the_share():
    # review 4, finding 10: in a flat mix the top host changes every window; that is no news.
    state = {}
    for seed in range(1, 12):
        assert [f.key for f in run(normal_mix(seed=seed, n=2000), state)] == []
    run(heavy(), state)
    assert [f.key for f in run(heavy("10.0.1.77"), state)] == ["top_talkers:10.0.1.77", "top_talkers:change"]
    assert [f.key for f in run(normal_mix(), state)] == []
    assert [f.key for f in run(heavy(), state)] == ["top_talkers:10.0.1.50"]  # back above it: raised, no 'change'


def test_no_dominant_service_is_not_named_after_the_first_port():
    # review 4, finding 12: a scan's top talker was "mostly port 1/TCP".
    import numpy as np

    [f] = run(batch("10.0.0.9", "10.0.0.5", np.arange(1, 301), bytes=1000))
    assert "100% of total bandwidth (40.0 kbps), mostly TCP on 300 ports to 10.0.0." in f.description
