"""snmp.targets: every option filled in, and a bad entry refused with the target and option named."""
import pytest

from flowmodel.config import ConfigError, load_config
from flowmodel.snmpconf import parse_targets, redacted


def test_v2c_and_v3_targets_get_their_defaults():
    v2, v3 = parse_targets([
        {"exporter": "192.0.2.1", "community": "public"},
        {"exporter": "::ffff:192.0.2.2", "host": "router2.example.net", "port": 1161, "version": 3, "user": "fl",
         "auth_key": "12345678", "priv_key": "abcdefgh"}])
    assert v2 == {"exporter": "192.0.2.1", "host": "192.0.2.1", "port": 161, "version": "2c", "community": "public"}
    assert v3 == {"exporter": "192.0.2.2", "host": "router2.example.net", "port": 1161, "version": "3", "user": "fl",
                  "auth_protocol": "sha", "auth_key": "12345678", "priv_protocol": "aes", "priv_key": "abcdefgh",
                  "context": ""}
    assert redacted(v3)["auth_key"] == "(set)" and redacted(v3)["priv_key"] == "(set)" and redacted(v2)["community"] == "(set)"
    no_auth = parse_targets([{"exporter": "2001:db8::1", "version": "3", "user": "watcher"}])[0]
    assert (no_auth["exporter"], no_auth["auth_protocol"], no_auth["priv_protocol"]) == ("2001:db8::1", "none", "none")


@pytest.mark.parametrize("targets,words", [
    ({"exporter": "192.0.2.1"}, "expected a list"),
    ([{"community": "public"}], "target 1 has no exporter"),
    ([{"exporter": "router1", "community": "public"}], "target 1: exporter must be an IP address"),
    ([{"exporter": "192.0.2.1"}], "target 192.0.2.1: SNMP v2c needs a community"),
    ([{"exporter": "192.0.2.1", "community": "x", "user": "u"}], "unknown option 'user' for SNMP v2c"),
    ([{"exporter": "192.0.2.1", "community": "x", "version": 1}], "version must be 2c or 3"),
    ([{"exporter": "192.0.2.1", "community": "x", "port": 0}], "port must be a port"),
    ([{"exporter": "192.0.2.1", "version": 3}], "SNMP v3 needs a user"),
    ([{"exporter": "192.0.2.1", "version": 3, "user": "u", "auth_key": "short"}], "auth_key must be at least 8"),
    ([{"exporter": "192.0.2.1", "version": 3, "user": "u", "auth_protocol": "sha"}], "auth_protocol sha needs an auth_key"),
    ([{"exporter": "192.0.2.1", "version": 3, "user": "u", "auth_protocol": "rot13", "auth_key": "12345678"}],
     "auth_protocol must be one of"),
    ([{"exporter": "192.0.2.1", "version": 3, "user": "u", "priv_key": "12345678"}], "needs authentication too"),
    ([{"exporter": "192.0.2.1", "community": "a"}, {"exporter": "192.0.2.1", "community": "b"}], "given twice"),
])
def test_bad_targets_are_refused_with_the_reason(targets, words):
    with pytest.raises(ValueError, match=words):
        parse_targets(targets)


def test_a_bad_target_in_the_file_names_the_key(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("snmp:\n  targets:\n    - {exporter: 192.0.2.1}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    assert "snmp.targets" in str(e.value) and "needs a community" in str(e.value)
