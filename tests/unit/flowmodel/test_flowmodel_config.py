"""Config loading: defaults, YAML, FLOWLENS_* overrides, and errors that name the key."""
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
    assert cfg["store.ring_buffer_duration"] == 600.0


def test_shipped_config_loads_and_lists_every_key():
    import yaml
    from pathlib import Path
    path = Path(__file__).resolve().parents[3] / "configs" / "flowlens.yaml"
    doc = yaml.safe_load(path.read_text())
    keys = {f"{s}.{k}" for s, body in doc.items() for k in body}
    assert keys == set(SETTINGS)
    cfg = load_config(path, env={})
    assert all(cfg[k] == SETTINGS[k].default for k in SETTINGS), [k for k in SETTINGS if cfg[k] != SETTINGS[k].default]


def test_yaml_values_are_parsed(tmp_path):
    cfg = load_config(write(tmp_path, "store:\n  sqlite_retention: 2d\ncollector:\n  buffer_size: 4MiB\n"), env={})
    assert cfg["store.sqlite_retention"] == 2 * 86400
    assert cfg["collector.buffer_size"] == 4 << 20


def test_unknown_key_names_the_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "store:\n  sqlite_pth: x.db\n"), env={})
    assert "store.sqlite_pth" in str(e.value) and "unknown key" in str(e.value)
    assert "store.sqlite_path" in str(e.value)  # the hint


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown section 'stor'"):
        load_config(write(tmp_path, "stor:\n  sqlite_path: x.db\n"), env={})


@pytest.mark.parametrize("text,key", [
    ("collector:\n  netflow_port: 70000\n", "collector.netflow_port"),
    ("collector:\n  netflow_port: [1]\n", "collector.netflow_port"),
    ("store:\n  ring_capacity: -5\n", "store.ring_capacity"),
    ("store:\n  prune_interval: soon\n", "store.prune_interval"),
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
    cfg = load_config(p, env={"FLOWLENS_STORE__SQLITE_PATH": "/data/env.db", "FLOWLENS_COLLECTOR__NETFLOW_PORT": "9995",
                              "FLOWLENS_ANALYSIS__LOCAL_NETWORKS": "10.0.0.0/8, 2001:db8::/32", "HOME": "/x"})
    assert cfg["store.sqlite_path"] == "/data/env.db"
    assert cfg["collector.netflow_port"] == 9995
    assert cfg["analysis.local_networks"] == ["10.0.0.0/8", "2001:db8::/32"]


def test_env_errors_name_the_variable():
    with pytest.raises(ConfigError, match="FLOWLENS_STORE__NOPE"):
        load_config(None, env={"FLOWLENS_STORE__NOPE": "1"})
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
