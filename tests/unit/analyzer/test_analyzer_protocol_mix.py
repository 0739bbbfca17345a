from flowlens_analyzer import protocol_mix
from flowlens_analyzer.common import Context, view_from_batch

from flows import T0, batch, config, normal_mix


def run(b, state=None, **cfg):
    return protocol_mix.analyze(view_from_batch(b, T0, T0 + 60_000), Context(config(**cfg)), {} if state is None else state)


def test_telnet_inside_is_a_warning_with_ssh_advice():
    b = batch(["10.0.2.15", "10.0.0.5"], ["10.0.0.5", "10.0.2.15"], [23, 51000], src_port=[51000, 23], bytes=[4000, 9000])
    [f] = run(b)
    assert f.key == "protocol_mix:telnet:10.0.2.15"
    assert f.severity == "WARNING"
    assert f.description.startswith("Telnet traffic (port 23) detected from 10.0.2.15 to 10.0.0.5: 2 flows, 13.0 kB")
    assert f.description.endswith("consider migrating to SSH")
    assert "SSH" in f.action
    assert f.filter["addr"] == "10.0.2.15" and f.filter["port"] == 23


def test_rdp_from_the_internet_to_inside_is_critical():
    [f] = run(batch("198.51.100.9", "10.0.0.7", 3389))
    assert f.key == "protocol_mix:rdp:198.51.100.9"
    assert f.severity == "CRITICAL"
    assert "from the internet (198.51.100.9) to 10.0.0.7" in f.description


def test_smb_inside_only_is_fine_but_to_outside_is_flagged():
    assert run(batch("10.0.0.8", "10.0.0.9", 445)) == []
    [f] = run(batch("10.0.0.8", "203.0.113.50", 445))
    assert f.severity == "WARNING" and "to the internet (203.0.113.50)" in f.description


def test_snmp_only_across_the_boundary():
    assert run(batch("10.0.0.2", "10.0.0.1", 161, protocol=17)) == []
    [f] = run(batch("203.0.113.3", "10.0.0.1", 161, protocol=17))
    assert f.key == "protocol_mix:snmp:203.0.113.3"
    assert "SNMPv3" in f.action


def test_syslog_udp_514_is_not_rsh():
    assert run(batch("10.0.0.2", "10.0.0.1", 514, protocol=17)) == []


def test_shift_in_protocol_mix_after_a_baseline():
    state = {}
    for _ in range(6):
        assert run(normal_mix(), state) == []
    gre = batch("10.0.0.2", "203.0.113.9", 0, protocol=47, bytes=10**9)
    found = run(gre, state)
    by_key = {f.key: f for f in found}
    assert set(by_key) == {"protocol_mix:shift:GRE", "protocol_mix:shift:TCP"}
    f = by_key["protocol_mix:shift:GRE"]
    assert f.severity == "WARNING" and f.filter["protocol"] == 47
    assert "fell" in by_key["protocol_mix:shift:TCP"].description
    assert "The GRE share of traffic rose from 0% to 100%" in f.description


def test_probes_and_refused_connections_are_not_protocol_use():
    probes = batch("10.0.0.66", "10.0.0.5", [21, 23, 445, 3389], packets=1, tcp_flags=0x02)
    refused = batch("10.0.0.5", "10.0.0.66", 40000, src_port=[21, 23, 445, 3389], packets=1, tcp_flags=0x14)
    assert run(probes) == [] and run(refused) == []
    # An exporter that reports no TCP flags at all: count the flows.
    assert [f.key for f in run(batch("10.0.0.66", "10.0.0.5", 23, tcp_flags=0))] == ["protocol_mix:telnet:10.0.0.66"]


def test_normal_mix_raises_nothing():
    assert run(normal_mix()) == []


def test_no_shift_in_a_window_below_the_byte_floor():
    # review 4, finding 10: "UDP share fell from 31% to 0% of 4.3 kB" is noise.
    state = {}
    for _ in range(6):
        run(normal_mix(), state)
    assert run(batch("10.0.0.2", "203.0.113.9", 0, protocol=47, bytes=4300), state) == []
    assert {f.key for f in run(batch("10.0.0.2", "203.0.113.9", 0, protocol=47, bytes=10**6), state)} >= {
        "protocol_mix:shift:GRE"}


def test_one_other_server_is_singular():
    b = batch("10.0.0.7", ["10.0.0.23", "10.0.0.24"], 23, bytes=[900, 100])
    [f] = [f for f in run(b, {}) if f.key == "protocol_mix:telnet:10.0.0.7"]
    assert "from 10.0.0.7 to 10.0.0.23 and 1 other server:" in f.description
