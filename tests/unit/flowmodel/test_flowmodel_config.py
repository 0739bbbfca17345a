"""Config loading: defaults, YAML, FLOWLENS_* overrides, and errors that name the key."""
import re

import pytest

from flowmodel.config import SETTINGS, ConfigError, load_config, parse_duration, parse_size


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_cover_every_setting():
    cfg = load_config(None, env={})
    assert set(cfg) == set(SETTINGS)
    assert cfg["collector.netflow_port"] == 2055
    assert cfg["storage.ring_buffer_duration"] == 600.0


def test_shipped_config_loads_and_lists_every_key():
    import yaml
    from pathlib import Path
    path = Path(__file__).resolve().parents[3] / "configs" / "flowlens.yaml"
    doc = yaml.safe_load(path.read_text())
    keys = {f"{s}.{k}" for s, body in doc.items() if isinstance(body, dict) for k in body}
    keys |= {s for s, body in doc.items() if not isinstance(body, dict)}  # top-level lists (exporters)
    assert keys == set(SETTINGS)
    cfg = load_config(path, env={})
    assert all(cfg[k] == SETTINGS[k].default for k in SETTINGS), [k for k in SETTINGS if cfg[k] != SETTINGS[k].default]


def test_yaml_values_are_parsed(tmp_path):
    cfg = load_config(write(tmp_path, "store:\n  sqlite_retention: 2d\ncollector:\n  socket_buffer: 4MiB\n"), env={})
    assert cfg["storage.sqlite_retention"] == 2 * 86400
    assert cfg["collector.socket_buffer"] == 4 << 20


def test_unknown_key_names_the_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "store:\n  sqlite_pth: x.db\n"), env={})
    assert "storage.sqlite_pth" in str(e.value) and "unknown key" in str(e.value)
    assert "storage.sqlite_path" in str(e.value)  # the hint


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown section 'stor'"):
        load_config(write(tmp_path, "stor:\n  sqlite_path: x.db\n"), env={})


@pytest.mark.parametrize("text,key", [
    ("collector:\n  netflow_port: 70000\n", "collector.netflow_port"),
    ("collector:\n  netflow_port: [1]\n", "collector.netflow_port"),
    ("store:\n  ring_capacity: -5\n", "storage.ring_capacity"),
    ("store:\n  prune_interval: soon\n", "storage.prune_interval"),
    ("analysis:\n  local_networks: [10.0.0.0/33]\n", "analysis.local_networks"),
    ("web:\n  page_size: true\n", "web.page_size"),
    ("collector:\n  receive_group: 100000\n", "collector.receive_group"),
    ("collector:\n  batch_max_flows: 2000000\n", "collector.batch_max_flows"),
    ("collector:\n  batch_max_flows: 0\n", "collector.batch_max_flows"),
    ("bus:\n  queue_bytes: lots\n", "bus.queue_bytes"),
])
def test_ill_typed_key_names_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), env={})
    assert repr(key) in str(e.value)


def test_yaml_syntax_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "store: [\n"), env={})


def test_top_level_must_be_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(write(tmp_path, "- a\n- b\n"), env={})


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml", env={})


def test_env_overrides_file(tmp_path):
    p = write(tmp_path, "store:\n  sqlite_path: file.db\n")
    cfg = load_config(p, env={"FLOWLENS_STORAGE__SQLITE_PATH": "/data/env.db", "FLOWLENS_COLLECTOR__NETFLOW_PORT": "9995",
                              "FLOWLENS_ANALYSIS__LOCAL_NETWORKS": "10.0.0.0/8, 2001:db8::/32", "HOME": "/x"})
    assert cfg["storage.sqlite_path"] == "/data/env.db"
    assert cfg["collector.netflow_port"] == 9995
    assert cfg["analysis.local_networks"] == ["10.0.0.0/8", "2001:db8::/32"]


def test_env_errors_name_the_variable():
    with pytest.raises(ConfigError, match="FLOWLENS_STORAGE__NOPE"):
        load_config(None, env={"FLOWLENS_STORAGE__NOPE": "1"})
    with pytest.raises(ConfigError, match="FLOWLENS_WEB__PAGE_SIZE"):
        load_config(None, env={"FLOWLENS_WEB__PAGE_SIZE": "many"})
    with pytest.raises(ConfigError, match="FLOWLENS_<SECTION>__<KEY>"):
        load_config(None, env={"FLOWLENS_PORT": "1"})


def test_overrides_win_over_env():
    cfg = load_config(None, env={"FLOWLENS_WEB__PAGE_SIZE": "20"}, overrides={"web.page_size": 30})
    assert cfg["web.page_size"] == 30


def test_durations_and_sizes():
    assert parse_duration("250ms") == 0.25
    assert parse_duration("10m") == 600
    assert parse_duration(5) == 5.0
    assert parse_size("512k") == 512 * 1024
    assert parse_size("1MB") == 1_000_000
    for bad in ("-1s", "ten", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError):
        parse_size("8 parsecs")


def test_section_view():
    cfg = load_config(None, env={})
    assert cfg.section("web")["page_size"] == 50
    assert set(cfg.as_nested()) == {k.split(".")[0] for k in SETTINGS}


# ---------------------------------------------------------------- ranges and duplicate keys

NUMERIC = sorted(k for k, s in SETTINGS.items() if isinstance(s.default, (int, float)) and not isinstance(s.default, bool))


@pytest.mark.parametrize("key", NUMERIC)
def test_every_numeric_key_refuses_a_negative_value(key):
    with pytest.raises(ConfigError) as e:
        load_config(env={}, overrides={key: -3})
    assert repr(key) in str(e.value)


@pytest.mark.parametrize("key", NUMERIC)
def test_every_numeric_key_accepts_its_default(key):
    assert load_config(env={}, overrides={key: SETTINGS[key].default})[key] == SETTINGS[key].default


@pytest.mark.parametrize("text,key,reason", [
    ("query:\n  retries: -3\n", "query.retries", "between 0 and 100"),
    ("collector:\n  netflow_port: 0\n", "collector.netflow_port", "outside 1-65535"),
    ("collector:\n  ipfix_port: 65536\n", "collector.ipfix_port", "outside 1-65535"),
    ("query:\n  timeout: .nan\n", "query.timeout", "not a duration"),
    ("analysis:\n  anomaly_spike_factor: .inf\n", "analysis.anomaly_spike_factor", "finite"),
    ("analysis:\n  anomaly_spike_factor: 0.5\n", "analysis.anomaly_spike_factor", "at least 1.01"),
    ("bus:\n  high_water_mark: 0\n", "bus.high_water_mark", "between 1 and"),
    ("collector:\n  buffer_size: 10\n", "collector.buffer_size", "at least 512"),
    ("collector:\n  buffer_size: 8MiB\n", "collector.buffer_size", "collector.socket_buffer"),
    ("store:\n  partition_interval: 1s\n", "storage.partition_interval", "between 60 and"),
    ("web:\n  refresh: -1\n", "web.refresh", "between 0 and"),
    ("web:\n  page_size: 0\n", "web.page_size", "between 1 and"),
    ("collector:\n  max_templates_per_exporter: 100000\n", "collector.max_templates_per_exporter", "between 1 and 65536"),
])
def test_out_of_range_values_name_key_and_range(tmp_path, text, key, reason):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), env={})
    assert repr(key) in str(e.value) and re.search(reason, str(e.value)), str(e.value)


def test_ipfix_port_zero_still_disables_and_env_ports_are_checked():
    assert load_config(env={}, overrides={"collector.ipfix_port": 0})["collector.ipfix_port"] == 0
    with pytest.raises(ConfigError, match="FLOWLENS_COLLECTOR__NETFLOW_PORT.*outside 1-65535"):
        load_config(env={"FLOWLENS_COLLECTOR__NETFLOW_PORT": "0"})


def test_duplicate_key_names_the_key_and_both_lines(tmp_path):
    text = "collector:\n  netflow_port: 2055\n  ipfix_port: 4739\n  netflow_port: 9995\n"
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), env={})
    assert "key 'collector.netflow_port' appears twice: line 2 and line 4" in str(e.value)
    assert str(tmp_path) in str(e.value)


def test_duplicate_key_in_a_list_item_names_its_path(tmp_path):
    text = "exporters:\n  - address: 192.0.2.1\n    name: edge1\n  - address: 192.0.2.2\n    name: a\n    name: b\n"
    with pytest.raises(ConfigError, match=r"key 'exporters\[1\]\.name' appears twice: line 5 and line 6"):
        load_config(write(tmp_path, text), env={})


def test_duplicate_section_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="key 'store' appears twice: line 1 and line 3"):
        load_config(write(tmp_path, "store:\n  ring_capacity: 5\nstore:\n  ring_capacity: 6\n"), env={})


def test_same_key_in_two_sections_is_not_a_duplicate(tmp_path):
    cfg = load_config(write(tmp_path, "analysis:\n  instance_id: a\ncollector:\n  instance_id: c\n"), env={})
    assert (cfg["analysis.instance_id"], cfg["collector.instance_id"]) == ("a", "c")


def test_a_binary_file_given_as_the_config_is_refused_in_words(tmp_path):
    """A pcap or other binary where the YAML goes raised UnicodeDecodeError (a traceback, exit 1)."""
    path = tmp_path / "capture.pcap"
    path.write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(range(256)))
    with pytest.raises(ConfigError, match=r"capture\.pcap: not a config file: byte 0 is not UTF-8 text"):
        load_config(path, env={})
