"""Hostile config values: every refusal is a ConfigError naming the key and saying why, through
overrides, the YAML file and FLOWLENS_<SECTION>__<KEY>; never another exception, never a value the
services would misuse at start (a retention that overflows SQLite, a million query threads)."""
import re

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


ENDPOINT_KEYS = ["bus.publish_endpoint", "bus.subscribe_endpoint", "bus.events_endpoint", "query.endpoint",
                 "storage.bus_xsub_bind", "storage.bus_xpub_bind", "storage.events_bind", "storage.query_bind"]


@pytest.mark.parametrize("key", ENDPOINT_KEYS)
@pytest.mark.parametrize("value", ["tcp://", "tcp://127.0.0.1", "tcp://127.0.0.1:65536", "tcp://127.0.0.1:0",
                                   "tcp://no such host:5", "127.0.0.1:5555", "ipc://", "abc", "", 5555])
def test_a_malformed_endpoint_is_refused_naming_the_key(key, value):
    # was accepted: the service then failed at start with "Invalid argument" and no key (the analyzer
    # with a traceback), or bound nothing and waited
    message = refusal(key, value)
    assert key in message and ("endpoint" in message or "tcp://HOST:PORT" in message or "port" in message
                               or "names no" in message)


@pytest.mark.parametrize("value", ["tcp://127.0.0.1:5555", "tcp://*:5555", "tcp://[::1]:5555", "tcp://store:5555",
                                   "ipc:///run/flowlens/query.sock", "inproc://x"])
def test_well_formed_endpoints_load(value):
    assert load_config(None, env={}, overrides={"query.endpoint": value})["query.endpoint"] == value


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:65536", "127.0.0.1:0", "999.1.1.1:80", "a b:80", 8080])
def test_a_bad_web_listen_is_refused_at_load(value):
    # 127.0.0.1:65536 was an OverflowError traceback at start, :0 a port nobody could know
    assert "web.listen" in refusal("web.listen", value)


@pytest.mark.parametrize("value", ["0.0.0.0:8080", "[::]:8080", ":8080", "localhost:80", "web.example.net:443"])
def test_good_web_listen_values_load(value):
    assert load_config(None, env={}, overrides={"web.listen": value})["web.listen"] == value


@pytest.mark.parametrize("value", ["999.1.1.1", "", "two words", "10.0.0.0/8", "tcp://0.0.0.0"])
def test_a_bad_bind_address_is_refused_at_load(value):
    # was accepted, then "cannot bind UDP listeners: ... (collector.netflow_port)": the wrong key
    assert "collector.bind_address" in refusal("collector.bind_address", value)


@pytest.mark.parametrize("value", ["0.0.0.0", "::", "127.0.0.1", "::1", "localhost", "collector.example.net"])
def test_good_bind_addresses_load(value):
    assert load_config(None, env={}, overrides={"collector.bind_address": value})["collector.bind_address"] == value


@pytest.mark.parametrize("key, too_many", [("storage.query_workers", 65), ("storage.query_queue", 100_001),
                                           ("storage.max_partitions", 10**30), ("analysis.anomaly_min_history", 10081)])
def test_counts_that_size_threads_queues_and_tables_have_a_ceiling(key, too_many):
    # were accepted up to any size: 10**30 query workers is a thread each at the store's start, a
    # queue or table bound of 10**30 no bound, 10081 minutes past the most history kept (7 days)
    message = refusal(key, too_many)
    assert key in message and "must be between 1 and" in message


FILE_KEYS = ["security.server_key", "security.client_key", "security.store_public_key", "collector.template_path",
             "storage.sqlite_path", "web.users_file", "web.session_secret_file", "web.tls_cert", "web.tls_key",
             "enrichment.geoip_asn", "enrichment.geoip_country", "notify.state_path"]


@pytest.mark.parametrize("key", FILE_KEYS)
def test_a_directory_where_a_file_goes_is_refused_naming_the_key(key, tmp_path):
    # was accepted: the store stopped with "unable to open database file" and no key, the web with
    # "DIR: Is a directory", the collector ran on and could not save its templates
    message = refusal(key, str(tmp_path))
    assert key in message and "is a directory" in message


@pytest.mark.parametrize("key", FILE_KEYS)
def test_a_file_under_a_file_is_refused_naming_the_key(key, tmp_path):
    (tmp_path / "f").write_text("x")
    for under in (tmp_path / "f" / "x", tmp_path / "f" / "sub" / "x"):
        message = refusal(key, str(under))
        assert key in message and "is a file" in message


@pytest.mark.parametrize("key", ["security.authorized_keys", "collector.spool_path"])
def test_a_file_where_a_directory_goes_is_refused_naming_the_key(key, tmp_path):
    # collector.spool_path was "cannot bind UDP listeners: [Errno 17] File exists" at start
    (tmp_path / "f").write_text("x")
    message = refusal(key, str(tmp_path / "f"))
    assert key in message and "not a directory" in message


@pytest.mark.parametrize("key", ["storage.sqlite_path", "notify.state_path"])
def test_a_file_the_service_cannot_go_without_is_not_empty(key):
    # storage.sqlite_path '' loaded and SQLite made each connection a private temporary database;
    # notify.state_path '' stopped the notifier with "No such file or directory: '.tmp' -> ''"
    message = refusal(key, "")
    assert key in message and "empty" in message


@pytest.mark.parametrize("key", FILE_KEYS + ["security.authorized_keys", "collector.spool_path"])
def test_paths_not_there_yet_still_load(key, tmp_path):
    assert load_config(None, env={}, overrides={key: str(tmp_path / "new" / "thing")})[key].endswith("thing")


@pytest.mark.parametrize("speed", ["9" * 400 + "G", 10**400, 10**30, "4294968T"])
def test_an_interface_speed_past_any_interface_is_refused_naming_the_entry(speed):
    # "9"*400 + "G" was OverflowError (int of inf); 10**400 loaded and overflowed the store's
    # INTEGER column at start
    message = refusal("exporters", [{"address": "192.0.2.1", "interfaces": {1: {"speed": speed}}}])
    assert "'exporters'" in message and "exporters[0].interfaces.1.speed" in message and "faster than" in message


def test_the_fastest_interface_speed_still_loads():
    cfg = load_config(None, env={}, overrides={"exporters": [{"address": "192.0.2.1",
                                                             "interfaces": {1: {"speed": "4294967295M"}}}]})
    assert cfg["exporters"][0]["interfaces"][1]["speed_bps"] == 4_294_967_295 * 10**6


@pytest.mark.parametrize("value", ["javascript:alert(1)", "not a url", "flowlens.example.net", "ftp://x", "https://",
                                   "https://a b", 5])
def test_a_public_url_that_is_no_web_address_is_refused(value):
    # was accepted and put at the start of every notification's link
    message = refusal("web.public_url", value)
    assert "web.public_url" in message and "http://" in message


@pytest.mark.parametrize("value", ["", "https://flowlens.example.net", "http://10.0.0.5:8080/flowlens/"])
def test_good_public_urls_load(value):
    assert load_config(None, env={}, overrides={"web.public_url": value})["web.public_url"] == value


@pytest.mark.parametrize("value", ["not an address", ["noc@example.net", "boss"], "a@b@c", [None]])
def test_a_report_recipient_that_is_no_email_address_is_refused(value):
    # 'not an address' loaded; the SMTP server refused it each morning
    message = refusal("report.email_to", value)
    assert "report.email_to" in message and ("email address" in message or "list of strings" in message)


def test_report_recipients_load_from_a_list_or_the_environment():
    assert load_config(None, env={"FLOWLENS_REPORT__EMAIL_TO": "noc@example.net, boss@example.net"})[
        "report.email_to"] == ["noc@example.net", "boss@example.net"]


@pytest.mark.parametrize("key", ["analysis.anomaly_min_bytes", "analysis.dns_response_bytes"])
@pytest.mark.parametrize("value", [10**400, 10**16])
def test_byte_thresholds_past_a_petabyte_are_refused(key, value):
    # 10**400 loaded, then every DNS and anomaly window raised OverflowError (int / float)
    message = refusal(key, value)
    assert key in message and "must be between" in message


# ---------------------------------------------------------------- the sweep: every key, hostile values
# Each value either loads (a string key may take 'abc') or is a ConfigError naming the key; nothing
# else may come out of load_config. The values every key must refuse are checked to be refused.

HOSTILE = [["a"], {"a": 1}, "abc", True, False, 0, -1, "", None, float("inf"), float("nan"), 10**30, 10**400, "9" * 400,
           "1e309", "5 parsecs", "-1s", "1e999s", "10 MiBs", 65536, "0", "-5", "nan", "tcp://", "tcp://127.0.0.1",
           "999.1.1.1", "10.0.0.0/33", "10.0.0.1/8", "1.5", "  ", "\x00", [None], [{"a": [1]}]]
REFUSED_BY_EVERY_KEY = [{"a": 1}, [{"a": [1]}], "\x00"]
LIST_KEYS = {"exporters", "notify.targets", "notify.rules", "snmp.targets", "report.email_to",
             "storage.query_warm_ranges", "analysis.internal_networks", "analysis.dns_ports"}


def _outcome(**load):
    try:
        load_config(None, **load)
    except ConfigError as e:
        return str(e)
    return None


@pytest.mark.parametrize("key", sorted(SETTINGS))
def test_every_key_refuses_hostile_values_by_name_or_loads_them(key):
    for value in HOSTILE:
        message = _outcome(env={}, overrides={key: value})  # any other exception fails the test here
        if message is not None:
            assert key in message, (value, message)
        elif value in REFUSED_BY_EVERY_KEY or (key not in LIST_KEYS and isinstance(value, list)):
            pytest.fail(f"{key} loaded {value!r}")
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and "." in key:
            section, name = key.split(".", 1)
            variable = f"FLOWLENS_{section.upper()}__{name.upper()}"
            message = _outcome(env={variable: str(value)})
            assert message is None or (variable in message and key in message), (value, message)


@pytest.mark.parametrize("key", sorted(SETTINGS))
def test_a_file_with_a_bad_value_names_the_key_and_the_file(key, tmp_path):
    import yaml

    section, _, name = key.partition(".")
    doc = {section: [{"a": [1]}]} if not name else {section: {name: {"a": 1}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    assert str(path) in str(e.value) and repr(key) in str(e.value)


@pytest.mark.parametrize("text, words", [
    ("storage:\n  sqlite_pth: x\n", "'storage.sqlite_pth': unknown key; did you mean 'storage.sqlite_path'?"),
    ("storag:\n  sqlite_path: x\n", "unknown section 'storag'; did you mean 'storage'?"),
    ("analyzer:\n  window: 60s\n", "unknown section 'analyzer'; did you mean 'analysis'?"),
    ("web:\n  1: 2\n", "'web.1': unknown key"),
    ("web: 5\n", "section 'web' must be a mapping of keys"),
    ("web:\n  listen: a:1\n  listen: b:2\n", "'web.listen' appears twice"),
    ("exporters:\n  - address: 192.0.2.1\n    nmae: edge\n", "exporters[0]: unknown key 'nmae'"),
    ("exporters:\n  - address: 192.0.2.1\n  - address: 192.0.2.1\n", "exporters[1].address: 192.0.2.1 is given twice"),
    ("exporters:\n  - address: 999.1.1.1\n", "exporters[0].address: '999.1.1.1' is not an IP address"),
    ("exporters:\n  - 5\n", "exporters[0]: expected a map"),
    ("web:\n  listen: !!python/object:os.system x\n", "not valid YAML"),
])
def test_unknown_names_and_bad_structure_are_refused_in_words(tmp_path, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    assert words in str(e.value)


@pytest.mark.parametrize("variable, words", [
    ("FLOWLENS_WEB__LISTN", "unknown key; did you mean 'web.listen'?"),
    ("FLOWLENS_WEB", "use FLOWLENS_<SECTION>__<KEY>"),
    ("FLOWLENS_NOPE__X", "FLOWLENS_NOPE__X (key 'nope.x'): unknown key"),
])
def test_unknown_environment_variables_are_refused_in_words(variable, words):
    assert words in _outcome(env={variable: "1"})


@pytest.mark.parametrize("key", ["collector.instance_id", "analysis.instance_id", "web.metrics_token", "report.target",
                                 "storage.sqlite_path", "query.endpoint"])
@pytest.mark.parametrize("value", ["a\x00b", "line\nbreak", "\x1b[31m"])
def test_a_control_character_in_text_is_refused(key, value):
    # a NUL in an instance id loaded: no XHTML page can show it, no HTTP header carry a token with it
    message = refusal(key, value)
    assert key in message and "control character" in message


HOOK = {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/x"}
MAIL = {"name": "mail", "type": "email", "host": "smtp", "from": "a@example.net", "to": ["b@example.net"]}


@pytest.mark.parametrize("overrides, words", [
    ({"notify.rules": [{"targets": ["nope"]}]}, "notify.rules: rule 1 sends to 'nope', which is not in notify.targets"),
    ({"report.email_to": ["c@example.net"], "report.target": "nope"}, "report.target 'nope' is not in"),
    ({"report.email_to": ["c@example.net"], "report.target": "hook"}, "report.target 'hook' is a webhook target"),
    ({"notify.targets": [HOOK], "report.email_to": ["c@example.net"]}, "notify.targets has no email target"),
])
def test_a_name_another_key_must_hold_is_checked_at_load(overrides, words):
    # loaded before: flowlens config check said the file was fine and the notifier exited 1 at start
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_config(None, env={}, overrides={"notify.targets": [HOOK, MAIL], **overrides})


def test_names_that_hold_and_a_box_without_targets_load():
    assert load_config(None, env={}, overrides={"notify.targets": [HOOK, MAIL], "notify.rules": [{"targets": ["mail"]}],
                                                "report.email_to": ["c@example.net"], "report.target": "mail"})
    # no targets: no notifier runs on this box, the rules and report are for another
    assert load_config(None, env={}, overrides={"notify.rules": [{"targets": ["mail"]}], "report.target": "mail",
                                                "report.email_to": ["c@example.net"]})
