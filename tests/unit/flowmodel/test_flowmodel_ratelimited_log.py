"""flowmodel.logs.RateLimitedLog: one line per key per interval, and a bounded table of keys."""
import logging

from flowmodel.logs import RateLimitedLog


def test_one_line_per_key_per_interval_with_the_suppressed_count(caplog):
    rl = RateLimitedLog(logging.getLogger("t"), interval_s=3600)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            rl.warning("10.0.0.1", "bad packet")
        rl.warning("10.0.0.2", "bad packet")
    assert len(caplog.records) == 2
    assert rl._suppressed == {"10.0.0.1": 4}


def test_a_flood_of_keys_shares_one_entry_beyond_the_bound(caplog):
    rl = RateLimitedLog(logging.getLogger("t"), interval_s=3600, max_keys=100)
    with caplog.at_level(logging.WARNING):
        for i in range(10_000):
            rl.warning(f"exporter {i}", "bad packet")
    assert len(rl._last) <= 101 and len(rl._suppressed) <= 101
    # the first 100 keys and one line for all the others; the rest are counted, not logged
    assert len(caplog.records) == 101
    assert rl._suppressed[RateLimitedLog.OVERFLOW_KEY] == 10_000 - 101


def test_quiet_keys_make_room_for_new_ones():
    rl = RateLimitedLog(logging.getLogger("t"), interval_s=0.0, max_keys=10)
    for i in range(50):
        rl.warning(f"exporter {i}", "bad packet")
    assert "exporter 49" in rl._last and RateLimitedLog.OVERFLOW_KEY not in rl._last
    assert len(rl._last) <= 10
