"""IPFIX flowStart/EndSysUpTime (IEs 22/21) against systemInitTimeMilliseconds (IE 160): the 32-bit ms
uptime wraps every ~49.7 days (review 3, finding 5); times must land at or just before the export time."""
from __future__ import annotations

import pytest

from packet_builders import DAY_MS, EXP, EXPORT_S, be, ipfix_packet, options_ipfix, set_, tmpl_ipfix, v4
from flowlens_collector.decode import Decoder

EXPORT_MS = EXPORT_S * 1000
WRAP = 2**32


def _options_then_data(init_ms: int, start_up: int, end_up: int):
    """softflowd's layout: options template (scope 143 meteringProcessId, 160 systemInitTimeMilliseconds),
    its data, a data template with 22/21, one record."""
    opts = options_ipfix(256, [(143, 4)], [(160, 8)])
    return ipfix_packet([set_(3, opts), set_(256, be(1, 4) + be(init_ms, 8)),
                         set_(2, tmpl_ipfix(301, [(8, 4), (22, 4), (21, 4)])),
                         set_(301, v4("10.0.0.1") + be(start_up, 4) + be(end_up, 4))])


@pytest.mark.parametrize("days_up", [1, 49, 50, 60, 100, 200])
def test_ipfix_uptime_times_land_just_before_export_whatever_the_uptime(days_up):
    init = EXPORT_MS - days_up * DAY_MS
    up_now = (days_up * DAY_MS) % WRAP
    b = Decoder().decode([_options_then_data(init, (up_now - 5_000) % WRAP, (up_now - 1_000) % WRAP)], [EXP], 0)
    assert b["time_end"].tolist() == [EXPORT_MS - 1_000]
    assert b["time_start"].tolist() == [EXPORT_MS - 5_000]


def test_ipfix_flow_that_spans_the_uptime_wrap():
    # up 49.7 days + 2 s: the flow started 8 s before the wrap and ended 1 s after it
    init = EXPORT_MS - (WRAP + 2_000)
    b = Decoder().decode([_options_then_data(init, WRAP - 8_000, 1_000)], [EXP], 0)
    assert b["time_start"].tolist() == [EXPORT_MS - 10_000]
    assert b["time_end"].tolist() == [EXPORT_MS - 1_000]


def test_ipfix_system_init_in_the_record_itself_up_60_days():
    init = EXPORT_MS - 60 * DAY_MS
    up_now = (60 * DAY_MS) % WRAP
    fields = [(8, 4), (160, 8), (22, 4), (21, 4)]
    rec = v4("10.0.0.1") + be(init, 8) + be(up_now - 3_000, 4) + be(up_now - 2_000, 4)
    b = Decoder().decode([ipfix_packet([set_(2, tmpl_ipfix(300, fields)), set_(300, rec)])], [EXP], 0)
    assert b["time_start"].tolist() == [EXPORT_MS - 3_000] and b["time_end"].tolist() == [EXPORT_MS - 2_000]


def test_ipfix_uptime_without_wrap_is_unchanged_init_plus_value():
    init = EXPORT_MS - 3_600_000
    b = Decoder().decode([_options_then_data(init, 10, 3_599_000)], [EXP], 0)
    assert b["time_start"].tolist() == [init + 10] and b["time_end"].tolist() == [init + 3_599_000]
