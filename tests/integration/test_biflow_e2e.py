"""End to end with real processes: RFC 5103 biflow IPFIX exports (ipfixprobe's from Akvorado's
test data, softflowd -b's from the corpus) sent over UDP to a collector, stored, and read back
through StoreClient flow by flow against the captures' tshark ground truth, reverse halves
included; the store's top talkers and totals count both directions."""
from __future__ import annotations

import socket
from collections import Counter

import pytest

from support.e2e import all_flows, running, store_client, wait_for_flows
from support.services import free_port, send_udp, stack_config, wait_until, write_config
from unit.collector.collector_truth import _norm, expected_by_frame, load_datagrams, reverse_records

# capture -> source address of its datagrams (two exporters)
CAPTURES = {"akvorado_ipfix_ipfixprobe": "127.0.0.2", "softflowd_ipfix-biflow_telnet": "127.0.0.3"}
# ipfixprobe's flows are from 2009: the window and the retention reach back that far
SINCE_MS, UNTIL_MS = 1_200_000_000_000, 1_900_000_000_000


def truth(name: str) -> Counter:
    """The flows tshark shows (forward and reverse halves), as collector_truth's tuples."""
    grams = load_datagrams(name)
    out: Counter = Counter()
    for frame in expected_by_frame(name, grams).values():
        out.update(frame)
    return out


def as_tuple(r: dict) -> tuple:
    return (_norm(r["src_addr"]), _norm(r["dst_addr"]), r["src_port"], r["dst_port"], r["protocol"], r["bytes"],
            r["packets"], r["tcp_flags"], r["tos"], r["input_if"], r["output_if"], r["src_as"], r["dst_as"],
            _norm(r["next_hop"]), r["time_start"], r["time_end"], r["sampling_rate"], r["icmp_type"],
            r["icmp_code"], r["flow_version"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("biflow")
    cfg = stack_config(tmp, collector={"sflow_port": free_port(socket.SOCK_DGRAM)},
                       store={"sqlite_retention": "7000d", "rollup_retention": "7000d"})
    path = write_config(tmp / "flowlens.yaml", cfg)
    with running(("store", path), ("collector", path)), store_client(cfg) as client:
        for name, src in CAPTURES.items():
            send_udp(cfg["collector"]["ipfix_port"], [d.payload for d in load_datagrams(name)], source=(src, 0))
        wait_for_flows(client, sum(sum(truth(name).values()) for name in CAPTURES), since=SINCE_MS, until=UNTIL_MS)
        yield client


def test_every_biflow_half_arrived_as_its_truth(stack):
    got = all_flows(stack, since=SINCE_MS, until=UNTIL_MS)
    want = truth("akvorado_ipfix_ipfixprobe") + truth("softflowd_ipfix-biflow_telnet")
    assert reverse_records("akvorado_ipfix_ipfixprobe") == 2
    assert len(got) == sum(want.values()) == 4 + 2 + 50
    assert Counter(map(as_tuple, got)) == want
    # every record of a biflow template is a forward half; the two with reverse traffic have a reverse one
    assert Counter(r["biflow"] for r in got) == {1: 54, 2: 2}


def test_top_talkers_and_totals_count_the_reverse_direction(stack):
    def query():
        return stack.top(by="src", metric="bytes", limit=10, since=SINCE_MS, until=1_300_000_000_000)

    # a window this old is answered from SQLite, which may commit after the ring had the flows
    wait_until(lambda: query()["totals"]["flows"] >= 6, timeout_s=20, interval_s=0.2)
    top = query()
    by_src = {r["key"]: r["bytes"] for r in top["rows"]}
    # 74.53.140.153 only ever sent in the reverse direction of ipfixprobe's SMTP biflow
    assert by_src["74.53.140.153"] == 1546 and by_src["10.10.1.1"] == 128
    assert top["totals"]["bytes"] == 62 + 128 + 229 + 21673 + 1546 + 2304
    assert top["totals"]["flows"] == 6
