"""The ``exporters:`` list and the ``names.*`` keys: parsed at load, a bad entry named by its path."""
import pytest

from flowmodel.config import ConfigError, load_config
from flowmodel.namesconf import parse_speed


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_exporters_list_is_parsed(tmp_path):
    cfg = load_config(write(tmp_path, """
exporters:
  - {address: 192.0.2.1, name: edge-1, site: paris, interfaces: {1: {name: Gi0/1, speed: 1G}, 2: Gi0/2}}
  - address: "::ffff:198.51.100.7"
    name: core
names:
  reverse_dns: true
"""), env={})
    first, second = cfg["exporters"]
    assert first == {"address": "192.0.2.1", "name": "edge-1", "site": "paris",
                     "interfaces": {1: {"name": "Gi0/1", "description": "", "speed_bps": 10**9},
                                    2: {"name": "Gi0/2", "description": "", "speed_bps": 0}}}
    assert second["address"] == "198.51.100.7" and second["site"] == "" and second["interfaces"] == {}
    assert cfg["names.reverse_dns"] is True
    assert cfg.as_nested()["exporters"] == cfg["exporters"]


@pytest.mark.parametrize("entry, message", [
    ("[{address: 192.0.2.1}, {address: 192.0.2.2}, {address: 192.0.2.3, interfaces: {7: {speed: 1Q}}}]",
     "exporters[2].interfaces.7.speed: '1Q' is not a speed"),
    ("[{address: edge-1}]", "exporters[0].address: 'edge-1' is not an IP address"),
    ("[{name: x}]", "exporters[0].address: required"),
    ("[{address: 192.0.2.1, colour: red}]", "exporters[0]: unknown key 'colour'"),
    ("[{address: 192.0.2.1}, {address: 192.0.2.1}]", "exporters[1].address: 192.0.2.1 is given twice"),
    ("[{address: 192.0.2.1, interfaces: {eth0: x}}]", "exporters[0].interfaces.eth0: the key must be an ifIndex"),
    ("[{address: 192.0.2.1, interfaces: {3: {nom: x}}}]", "exporters[0].interfaces.3: unknown key 'nom'"),
    ("{address: 192.0.2.1}", "expected a list"),
])
def test_bad_entry_names_its_key(tmp_path, entry, message):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, f"exporters: {entry}\n"), env={})
    assert message in str(e.value)
    assert "key 'exporters'" in str(e.value)


def test_speeds():
    assert parse_speed("10G") == 10 * 10**9
    assert parse_speed("2.5g") == 2_500_000_000
    assert parse_speed("100Mbps") == 100 * 10**6
    assert parse_speed(1000) == 1000
    with pytest.raises(ValueError):
        parse_speed("fast")
