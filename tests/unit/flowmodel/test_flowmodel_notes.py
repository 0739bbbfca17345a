"""Operators' notes (flowmodel.notes): what the store accepts, and which advisories a silence or an
acknowledgement covers."""
import pytest

from flowmodel.configtypes import parse_duration
from flowmodel.notes import acknowledged, advisory_addresses, check_note, new_silence, silence_matches

ADV = {"key": "scan:10.0.5.20", "analyzer": "scan", "subject": "10.0.5.20", "first_seen": 1000,
       "filter": {"src": "10.0.5.20", "dst": "192.168.1.0/24"}}


def silence(**kw):
    return {"kind": "silence", "id": "s1", "created_at": 0, "expires_at": 10_000, **kw}


@pytest.mark.parametrize("kw, hit", [
    ({"analyzer": "scan"}, True), ({"analyzer": "dns"}, False),
    ({"subject": "10.0.5.*"}, True), ({"subject": "10.0.6.*"}, False),
    ({"address": "10.0.5.20"}, True), ({"address": "10.0.5.21"}, False),
    ({"network": "10.0.5.0/24"}, True), ({"network": "192.168.0.0/16"}, True),  # the filter's dst
    ({"network": "172.16.0.0/12"}, False),
    ({"analyzer": "scan", "network": "172.16.0.0/12"}, False),  # every match must hold
])
def test_silence_matches_every_given_field(kw, hit):
    assert silence_matches(silence(**kw), ADV, 5000) is hit


def test_silence_ends_at_its_expiry_and_ack_covers_one_episode():
    assert not silence_matches(silence(analyzer="scan"), ADV, 10_000)
    ack = {"kind": "ack", "id": "scan:10.0.5.20", "episode": 1000}
    assert acknowledged(ack, ADV)
    assert not acknowledged(ack, {**ADV, "first_seen": 9000})  # raised again after it resolved
    assert not acknowledged(None, ADV)


def test_addresses_of_an_advisory_come_from_subject_and_filter():
    found = {str(a) for a in advisory_addresses({"subject": "telnet:10.1.1.1 port 23", "filter": {"addr": "fd00::1"}})}
    assert found == {"10.1.1.1/32", "fd00::1/128"}


@pytest.mark.parametrize("note, words", [
    ({"kind": "mute", "id": "x", "created_at": 1}, "kind"),
    ({"kind": "ack", "id": "k", "created_at": 1}, "episode"),
    (silence(), "without a match"),
    (silence(network="10.0.0.0/33"), "not an address"),
    ({**silence(analyzer="scan"), "expires_at": None}, "expires_at"),
])
def test_bad_notes_are_refused_with_the_reason(note, words):
    with pytest.raises(ValueError, match=words):
        check_note(note)


@pytest.mark.parametrize("duration, words", [
    ("0s", "longer than zero"),
    # parse_duration refuses past 100 years; new_silence's own check stays for a number of seconds
    ("9" * 400 + "d", "100 years"),  # parsed to inf: int() of it raised OverflowError (a 500 on the web)
    ("99999999999999999999d", "100 years"),  # past an int64 of ms: the bus could not encode it
])
def test_a_silence_of_no_time_or_forever_is_refused_in_words(duration, words):
    with pytest.raises(ValueError, match=words):
        new_silence({"analyzer": "scan"}, parse_duration(duration), "ops", "", 1_800_000_000_000)
    assert new_silence({"analyzer": "scan"}, parse_duration("3650d"), "ops", "", 0)["expires_at"] == 3650 * 86_400_000
    with pytest.raises(ValueError, match="too far in the future"):
        new_silence({"analyzer": "scan"}, 1e20, "ops", "", 1_800_000_000_000)


def test_cli_refuses_a_silence_without_a_match_before_sending(tmp_path):
    import io

    from flowmodel.notecli import main

    err = io.StringIO()
    assert main(["silence", "add", "--for", "1h", "--config", str(tmp_path / "none.yaml")], err=err) == 2
    assert "cannot read config file" in err.getvalue()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("log: {level: warning}\n")
    err = io.StringIO()
    assert main(["silence", "add", "--for", "1h", "--config", str(cfg)], err=err) == 2
    assert "needs at least one of --analyzer, --subject, --address, --network" in err.getvalue()
    err = io.StringIO()
    assert main(["silence", "add", "--network", "10.0.0.0/33", "--config", str(cfg)], err=err) == 2
    assert "not an address" in err.getvalue()
