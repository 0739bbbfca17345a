"""Hostile command-line values the `flowlens` parsers must refuse in words naming the option (exit 2),
never with a traceback: each case here once raised one (found by tests/integration/test_cli_hostile.py)."""
from __future__ import annotations

import pytest

from flowmodel import cli
from flowmodel.replay import parse_speed, parse_target


@pytest.mark.parametrize("text", ["1e-300", "0.0000001", "nan", "inf", "-inf", "1e309"])
def test_replay_speed_refuses_what_would_overflow_a_sleep_or_mean_nothing(text):
    with pytest.raises(ValueError, match="--speed"):
        parse_speed(text)


def test_replay_speed_keeps_its_ordinary_values():
    assert parse_speed("max") is None
    assert parse_speed("0.001") == 0.001 and parse_speed("10") == 10


def test_replay_target_with_a_label_too_long_for_idna_names_to():
    with pytest.raises(ValueError, match="^--to: .*not a host name"):
        parse_target("x" * 5000 + ":2055")


@pytest.mark.parametrize("endpoint", ["garbage", "tcp://", "udp://127.0.0.1:5", "tcp://127.0.0.1:99999", "", "x" * 5000])
def test_query_endpoint_is_checked_as_the_config_checks_query_endpoint(endpoint, capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["query", "status", "--endpoint", endpoint])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --endpoint:" in err and "Traceback" not in err


def test_query_endpoint_keeps_good_ones():
    for endpoint in ("tcp://127.0.0.1:5555", "tcp://[::1]:5555", "ipc:///run/flowlens/query.sock"):
        assert cli.build_parser().parse_args(["query", "status", "--endpoint", endpoint]).endpoint == endpoint


@pytest.mark.parametrize("step", [str(10 ** 30), "1e309", "nan", "-inf", "-1"])
def test_query_step_refuses_what_msgpack_cannot_carry_or_no_op_takes(step, capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["query", "series", "--step", step])
    assert e.value.code == 2 and "argument --step:" in capsys.readouterr().err


def test_query_step_keeps_whole_and_fractional_seconds():
    assert cli.build_parser().parse_args(["query", "series", "--step", "300"]).step == 300
    assert cli.build_parser().parse_args(["query", "series", "--step", "0"]).step == 0
    assert cli.build_parser().parse_args(["query", "series", "--step", "0.5"]).step == 0.5


@pytest.mark.parametrize("services", ["", ",", " , "])
def test_up_with_no_service_named_exits_2_in_words(tmp_path, services, capsys):
    import argparse

    from flowmodel.supervisor import Supervisor

    config = tmp_path / "plain.yaml"
    config.write_text("log: {level: warning}\n")
    args = argparse.Namespace(config=str(config), collector_config=[], services=services, stop_timeout=5.0,
                              max_backoff=1.0, stable_after=1.0)
    with pytest.raises(SystemExit) as e:
        Supervisor.from_args(args)
    assert e.value.code == 2 and "--services names no service" in capsys.readouterr().err


def test_users_file_that_is_not_text_is_refused_in_words(tmp_path, capsys):
    binary = tmp_path / "capture.pcap"
    binary.write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(range(256)))
    args = cli.build_parser().parse_args(["users", "list", "--file", str(binary)])
    assert cli.run_users(args) == 2
    assert "not an accounts file" in capsys.readouterr().err


@pytest.mark.parametrize("limit", [str(10 ** 30), str(10 ** 12 + 1), "0", "-1"])
def test_query_limit_refuses_what_no_store_holds_or_msgpack_cannot_carry(limit, capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["query", "flows", "--limit", limit])
    assert e.value.code == 2 and "argument --limit: wants 1 to" in capsys.readouterr().err


def test_query_limit_keeps_its_range():
    assert cli.build_parser().parse_args(["query", "flows", "--limit", str(10 ** 12)]).limit == 10 ** 12
    assert cli.build_parser().parse_args(["query", "flows", "--limit", "1"]).limit == 1


def test_users_add_never_replaces_a_device_named_as_the_accounts_file(tmp_path, capsys):
    """`flowlens users add x --file /dev/null` as root renamed a regular file over /dev/null."""
    import os
    import stat

    if os.geteuid() != 0:
        pytest.skip("making a character device (a stand-in /dev/null) needs root")
    device = tmp_path / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    args = cli.build_parser().parse_args(["users", "add", "carol", "--file", str(device), "--password-stdin"])
    import io
    assert cli.run_users(args, stdin=io.StringIO("a-good-password\n")) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert stat.S_ISCHR(device.lstat().st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name != "null"]  # no temporary file left


def test_users_add_under_a_file_says_why_in_words(tmp_path, capsys):
    blocker = tmp_path / "plain"
    blocker.write_text("x")
    args = cli.build_parser().parse_args(["users", "add", "carol", "--file", str(blocker / "users"),
                                          "--password-stdin"])
    import io
    assert cli.run_users(args, stdin=io.StringIO("a-good-password\n")) == 2
    assert "Not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("directory, name, option", [("", "store", "--dir"), ("{tmp}/file", "store", "--dir"),
                                                     ("{tmp}/keys", "x" * 300, "--name")])
def test_keys_generate_names_the_option_a_write_failed_on(tmp_path, directory, name, option, capsys):
    (tmp_path / "file").write_text("x")
    args = cli.build_parser().parse_args(["keys", "generate", "--dir", directory.format(tmp=tmp_path), "--name", name])
    assert cli.run_keys(args) == 2
    assert capsys.readouterr().err.startswith(f"flowlens keys: {option}: cannot write ")


@pytest.mark.parametrize("op, option", [("status", ["--by", "src"]), ("ping", ["--since", "1h"]),
                                        ("exporters", ["--limit", "5"]), ("names", ["--scaled"])])
def test_ops_without_arguments_refuse_options_they_would_ignore(op, option, capsys):
    args = cli.build_parser().parse_args(["query", op, *option, "--endpoint", "tcp://127.0.0.1:9"])
    assert cli.run_query(args) == 2  # before any request: port 9 has no store
    assert capsys.readouterr().err.strip() == f"flowlens query: {op} takes no options, got {option[0]}"


@pytest.mark.parametrize("option", ["--stop-timeout", "--max-backoff", "--stable-after"])
@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "1e309", "86401"])
def test_up_waits_refuse_what_is_no_number_of_seconds(option, value, capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["up", option, value])
    assert e.value.code == 2 and f"argument {option}: wants seconds" in capsys.readouterr().err


def test_up_waits_keep_their_defaults_and_fractions():
    args = cli.build_parser().parse_args(["up", "--stop-timeout", "20", "--max-backoff", "0.5", "--stable-after", "2"])
    assert (args.stop_timeout, args.max_backoff, args.stable_after) == (20.0, 0.5, 2.0)
    assert cli.build_parser().parse_args(["up"]).stop_timeout == 30.0
