"""Hostile config values: every refusal is a ConfigError naming the key and saying why, through
overrides, the YAML file and FLOWLENS_<SECTION>__<KEY>; never another exception, never a value the
services would misuse at start (a retention that overflows SQLite, a million query threads)."""
import pytest

from flowmodel.config import SETTINGS, ConfigError, load_config, parse_duration


def refusal(key, value):
    with pytest.raises(ConfigError) as e:
        load_config(None, env={}, overrides={key: value})
    return str(e.value)


@pytest.mark.parametrize("key", ["bus.high_water_mark", "collector.socket_buffer", "storage.ring_capacity",
                                 "query.timeout", "analysis.top_talker_share", "analysis.dns_qps_threshold"])
@pytest.mark.parametrize("value", [10**400, "9" * 400])
def test_a_number_past_a_float_is_refused_naming_the_key(key, value):
    # was OverflowError: int too large to convert to float, from the range check's message
    message = refusal(key, value)
    assert key in message and ("must be" in message or "number" in message or "100 years" in message)


@pytest.mark.parametrize("value", ["9" * 400 + "s", "9" * 400, 10**30, 10**400, "4000000000s", "36600d"])
def test_a_duration_past_100_years_is_refused(value):
    # was accepted as inf or 1e30 s, then int(retention * 1000) overflowed SQLite's integers at start
    message = refusal("storage.sqlite_retention", value)
    assert "storage.sqlite_retention" in message and "100 years" in message
    with pytest.raises(ValueError, match="100 years"):
        parse_duration(value)


def test_a_duration_of_100_years_still_loads():
    assert load_config(None, env={}, overrides={"storage.rollup_hourly_retention": "36500d"})[
        "storage.rollup_hourly_retention"] == 36500 * 86400.0
