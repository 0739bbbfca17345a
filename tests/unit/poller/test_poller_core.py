"""The poller's pure core: a column-parallel GETBULK walk (where it moves on, when each column ends,
its bounds) and the walked IF-MIB columns as an interfaces event (flowmodel.events)."""
from flowmodel.events import INTERFACE_EVENT_FIELDS, INTERFACE_NAME_MAX, INTERFACES_PER_EVENT

from flowlens_poller.ifmib import (COLUMNS, IF_DESCR, IF_NAME, IF_SPEED, TableWalk, interface_event,
                                   interfaces_from_columns, speed_bps, text)

IF_X_NEXT = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 2)  # ifInMulticastPkts: the column after ifName


def bulk(asked, agent, repetitions):
    """What an agent holding ``agent`` (sorted {oid: value}) answers to a GETBULK of ``asked`` OIDs."""
    oids = sorted(agent)
    out = []
    cursors = list(asked)
    for _ in range(repetitions):
        for i, start in enumerate(cursors):
            nxt = next((o for o in oids if o > start), None)
            out.append((nxt or start, agent[nxt] if nxt else None))
            cursors[i] = nxt or start
    return out


def walk(agent, columns, max_rows, repetitions=3, max_requests=100):
    w = TableWalk(columns, max_rows)
    requests = 0
    while not w.done and requests < max_requests:
        asked = w.next_oids()
        w.absorb([n for n, _ in asked], bulk([o for _, o in asked], agent, repetitions))
        requests += 1
    return w, requests


def test_a_walk_reads_each_column_to_its_end_and_no_further():
    agent = {IF_NAME + (1,): b"lo", IF_NAME + (2,): b"eth0", IF_NAME + (7,): b"eth1",
             IF_X_NEXT + (1,): 5, IF_X_NEXT + (2,): 6,
             IF_DESCR + (1,): b"lo", IF_DESCR + (2,): b"Intel eth0",
             IF_SPEED + (1,): 10_000_000, IF_SPEED + (2,): 1_000_000_000}
    w, requests = walk(agent, {"name": IF_NAME, "descr": IF_DESCR, "speed": IF_SPEED}, 100)
    assert w.done and not w.cut and not w.not_increasing
    assert w.rows == {"name": {1: b"lo", 2: b"eth0", 7: b"eth1"}, "descr": {1: b"lo", 2: b"Intel eth0"},
                      "speed": {1: 10_000_000, 2: 1_000_000_000}}
    assert requests == 2  # 3 repetitions hold every row; the second request only finds the columns' ends


def test_a_walk_stops_at_max_rows_and_says_it_cut():
    agent = {IF_NAME + (i,): f"ge-0/0/{i}".encode() for i in range(1, 51)}
    w, requests = walk(agent, {"name": IF_NAME}, 10, repetitions=4)
    assert w.done and w.cut == {"name"}
    assert sorted(w.rows["name"]) == list(range(1, 11))
    assert requests == 3  # 4 + 4 + 2 taken, the 11th refused


def test_an_agent_that_goes_backwards_ends_the_column():
    w = TableWalk({"name": IF_NAME}, 100)
    w.absorb(["name"], [(IF_NAME + (5,), b"a"), (IF_NAME + (3,), b"b"), (IF_NAME + (9,), b"c")])
    assert w.done and w.not_increasing == {"name"} and w.rows["name"] == {5: b"a"}


def test_an_empty_response_or_exception_values_end_the_columns():
    w = TableWalk(dict(COLUMNS), 100)
    w.absorb(["name", "alias"], [(IF_NAME + (1,), None), (COLUMNS["alias"] + (1,), b"uplink")])
    assert w.finished == {"name"} and w.rows["alias"] == {1: b"uplink"}
    w.absorb([n for n, _ in w.next_oids()], [])
    assert w.done


def test_speed_prefers_ifhighspeed_and_falls_back_to_ifspeed():
    assert speed_bps(100_000, 4_294_967_295) == 100_000_000_000   # 100G: ifSpeed is stuck at 2^32-1
    assert speed_bps(10, 10_000_000) == 10_000_000
    assert speed_bps(0, 64_000) == 64_000                        # under 1 Mbit/s: ifHighSpeed is 0
    assert speed_bps(None, 1_000_000) == 1_000_000              # no ifXTable
    assert speed_bps(None, None) == 0 and speed_bps(b"x", -1) == 0


def test_text_of_octet_strings():
    assert text(b"Gi0/1\x00\x00") == "Gi0/1"
    assert text("transit: AS64500 ".encode()) == "transit: AS64500"
    assert text(b"caf\xe9") == "caf\u00e9"                       # not UTF-8: bytes as Latin-1
    assert text(None) == "" and text(7) == ""
    assert len(text(b"x" * 1000)) == INTERFACE_NAME_MAX


def test_columns_become_interfaces_with_ifdescr_as_the_fallback_name():
    rows = {"name": {1: b"lo", 2: b"", 4: b"eth0"}, "alias": {1: b"", 4: b"to core"},
            "high_speed": {1: 10, 2: 0, 4: 10_000}, "descr": {1: b"lo", 2: b"Serial0/0", 3: b"Tunnel1"},
            "speed": {1: 10_000_000, 2: 64_000, 4: 4_294_967_295}}
    interfaces, left_out = interfaces_from_columns(rows, 10)
    assert left_out == 0
    assert interfaces == [
        {"ifindex": 1, "name": "lo", "description": "", "speed_bps": 10_000_000},
        {"ifindex": 2, "name": "Serial0/0", "description": "", "speed_bps": 64_000},
        {"ifindex": 3, "name": "Tunnel1", "description": "", "speed_bps": 0},
        {"ifindex": 4, "name": "eth0", "description": "to core", "speed_bps": 10_000_000_000}]
    kept, left_out = interfaces_from_columns(rows, 2)
    assert [i["ifindex"] for i in kept] == [1, 2] and left_out == 2


def test_the_interface_list_is_bounded_by_one_event():
    rows = {"name": {i: b"x" for i in range(1, INTERFACES_PER_EVENT + 11)}}
    kept, left_out = interfaces_from_columns(rows, 1_000_000)
    assert len(kept) == INTERFACES_PER_EVENT and left_out == 10


def test_the_event_follows_the_contract():
    event = interface_event("192.0.2.1", [{"ifindex": 1, "name": "lo", "description": "", "speed_bps": 0}], 1234)
    assert set(event) == set(INTERFACE_EVENT_FIELDS)
    assert (event["origin"], event["complete"], event["learnt_at"]) == ("snmp", True, 1234)


def test_schedule_walks_at_start_then_every_interval_and_retries_failures_sooner():
    from flowlens_poller.targets import Schedule

    sch = Schedule(["192.0.2.1", "192.0.2.2"], interval_s=3600, retry_interval_s=300, failing_after=2)
    assert sch.due(0.0) == ["192.0.2.1", "192.0.2.2"]
    sch.started("192.0.2.1")
    sch.started("192.0.2.2")
    assert sch.due(0.0) == []  # not twice at once
    event = interface_event("192.0.2.1", [{"ifindex": 1, "name": "lo", "description": "", "speed_bps": 0}], 5)
    assert sch.walked("192.0.2.1", 10.0, 5, event, 0) is None
    assert sch.failed("192.0.2.2", 10.0, "timeout") is None          # one failure: not yet failing
    assert sch.due(309.9) == [] and sch.due(310.0) == ["192.0.2.2"]
    sch.started("192.0.2.2")
    assert sch.failed("192.0.2.2", 310.0, "timeout") == "raised"    # the second in a row
    assert sch.due(3609.9) == ["192.0.2.2"] and sch.due(3610.0) == ["192.0.2.2", "192.0.2.1"]
    health = sch.health()
    assert (health["targets"], health["targets_failing"], health["walks"], health["walk_failures"]) == (2, 1, 3, 2)
    assert health["per_target"][0]["exporter"] == "192.0.2.2"       # failing first
    sch.states["192.0.2.2"].failing_since_ms = 7
    sch.started("192.0.2.2")
    assert sch.walked("192.0.2.2", 700.0, 9, interface_event("192.0.2.2", [], 9), 0) == "resolved"
    assert sch.states["192.0.2.2"].failures_in_a_row == 0


def test_failing_advisory_follows_the_contract_and_is_not_the_analyzers():
    from flowmodel.events import ADVISORY_FIELDS, SEVERITIES

    from flowlens_poller.targets import TargetState, target_failing_event

    s = TargetState("192.0.2.66", failures_in_a_row=3, last_error="No SNMP response received before timeout",
                    failing_since_ms=1000)
    for state in ("raised", "resolved"):
        event = target_failing_event(s, state, "10.0.0.66", 2, 2000)
        assert set(event) == set(ADVISORY_FIELDS) and event["severity"] in SEVERITIES
        assert event["key"] == "poller:target:192.0.2.66" != f"{event['analyzer']}:{event['subject']}"
        assert (event["first_seen"], event["last_seen"], event["filter"]) == (1000, 2000, {"exporter": "192.0.2.66"})
    assert "3 times in a row" in target_failing_event(s, "raised", "10.0.0.66", 2, 2000)["description"]
    assert "timeout" in target_failing_event(s, "raised", "10.0.0.66", 2, 2000)["description"]
