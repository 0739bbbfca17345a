"""The if-counters delta core: wraps, resets, late samples and its bounds."""
from flowlens_collector.decoders.sflow_records import IF_COUNTER_FIELDS
from flowlens_collector.sflow_counters import CounterDeltas, counter_delta, rebooted


def sample(ifindex=3, **values):
    s = {name: 0 for name, _w, _n in IF_COUNTER_FIELDS}
    s.update(if_index=ifindex, if_speed=10**9, **values)
    return s


def test_counter_delta_wraps_32_bit_and_resets_64_bit():
    assert counter_delta(10, 25, 32) == 15
    assert counter_delta(2**32 - 5, 3, 32) == 8
    assert counter_delta(2**40, 7, 64) is None


def test_reboot_is_uptime_going_back_but_not_its_wrap():
    assert rebooted(50_000, 1_000)
    assert not rebooted(2**32 - 100, 500)
    assert not rebooted(1_000, 2_000)


def test_first_sample_is_a_baseline_then_deltas():
    d = CounterDeltas(10)
    assert d.add("192.0.2.1", 0, 1000, 1, sample(in_octets=1000, out_octets=50, in_ucast_pkts=10), 60_000) is None
    row = d.add("192.0.2.1", 0, 21_000, 2, sample(in_octets=4000, out_octets=80, in_ucast_pkts=14, in_broadcast_pkts=1,
                                                  in_errors=2, out_discards=3), 80_000)
    assert (row["in_octets"], row["out_octets"], row["in_packets"]) == (3000, 30, 5)
    assert (row["in_errors"], row["out_discards"], row["resets"]) == (2, 3, 0)
    assert (row["exporter"], row["ifindex"], row["time_ms"], row["interval_ms"], row["speed_bps"]) == \
        ("192.0.2.1", 3, 80_000, 20_000, 10**9)
    assert d.take() == [row] and d.take() == []


def test_octets_going_down_is_a_reset_with_no_traffic():
    d = CounterDeltas(10)
    d.add("a", 0, 1000, 1, sample(in_octets=9000, out_octets=9000), 0)
    row = d.add("a", 0, 2000, 2, sample(in_octets=100, out_octets=9100, in_ucast_pkts=3), 1000)
    assert row["resets"] == 1 and row["in_octets"] == 0 and row["out_octets"] == 0 and row["in_packets"] == 0
    after = d.add("a", 0, 3000, 3, sample(in_octets=600, out_octets=9200, in_ucast_pkts=5), 2000)
    assert (after["resets"], after["in_octets"], after["in_packets"]) == (0, 500, 2)
    assert d.counters["if_counter_resets"] == 1


def test_agent_reboot_is_a_reset_even_when_counters_grew():
    d = CounterDeltas(10)
    d.add("a", 0, 900_000, 50, sample(in_octets=10), 0)
    row = d.add("a", 0, 5_000, 1, sample(in_octets=20), 1000)
    assert row["resets"] == 1 and row["in_octets"] == 0


def test_late_sample_keeps_the_baseline():
    d = CounterDeltas(10)
    d.add("a", 0, 1000, 5, sample(in_octets=100), 0)
    assert d.add("a", 0, 1000, 5, sample(in_octets=90), 10) is None
    assert d.counters["if_counter_out_of_order"] == 1
    assert d.add("a", 0, 2000, 6, sample(in_octets=150), 20)["in_octets"] == 50


def test_bounds_forget_the_least_recent_interface_and_drop_rows():
    d = CounterDeltas(2)
    for i in (1, 2, 3):
        d.add("a", 0, 1000, 1, sample(ifindex=i), 0)
    assert len(d) == 2 and d.counters["if_counter_forgotten"] == 1
    assert d.add("a", 0, 2000, 2, sample(ifindex=1), 10) is None  # forgotten: a new baseline
    for seq in range(2, 6):
        d.add("a", 0, 1000 + seq, seq, sample(ifindex=3, in_octets=seq), seq)
    assert len(d.take()) == 2 and d.counters["if_counter_rows_dropped"] == 2
