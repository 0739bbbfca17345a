"""Hostile values for every `flowlens` subcommand, each run as a real process against a real store
holding the flows of a replayed IPFIX capture: every refusal exits 2 (3 when the store does not
answer) with a reason on stderr that names the option, never a traceback, never exit 1 from an
uncaught exception, never a hang. A bounded sample of the full sweep (see the report of the
commit); each value here once crashed or was refused without naming its option, or stands for a
class of them."""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from support.services import ServiceStack, free_port, wait_until

CAPTURE = Path("/work/shared/corpus/public/pmacct-ta_ipfix_cisco-srv6-500.pcap")
LONG = "x" * 5000


def flowlens(argv: list[str], stdin: str = "", timeout_s: float = 30.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLOWLENS_CONFIG": ""}
    return subprocess.run([sys.executable, "-m", "flowmodel.cli", *argv], capture_output=True, text=True,
                          errors="replace", input=stdin, timeout=timeout_s, env=env)


def cases(cfg: str, unreachable: str, tmp: Path, ipfix_port: int) -> list[tuple[list[str], int, str, str]]:
    """(argv, exit code, text stderr must hold, stdin)."""
    not_pcap = tmp / "notes.txt"
    not_pcap.write_text("not a capture\n")
    binary = tmp / "binary.bin"
    binary.write_bytes(CAPTURE.read_bytes()[:512])
    users = str(tmp / "users")
    C = ["--config", cfg]
    to = ["--to", f"127.0.0.1:{ipfix_port}", "--no-progress"]
    return [
        # query: filters, times, rows, steps, dimensions, formats, endpoints
        (["query", "flows", "--src", "10.0.0.1/8", "--since", "1h", *C], 2, "host bits", ""),
        (["query", "flows", "--src", "10.0.0.0/33", "--since", "1h", *C], 2, "src", ""),
        (["query", "flows", "--dst", "2001:db8::/129", "--since", "1h", *C], 2, "dst", ""),
        (["query", "flows", "--exporter", "::ffff:999.1.1.1", "--since", "1h", *C], 2, "exporter", ""),
        (["query", "flows", "--addr", LONG, "--since", "1h", *C], 2, "addr", ""),
        (["query", "flows", "--dst-port", "²", "--since", "1h", *C], 2, "dst_port", ""),
        (["query", "flows", "--src-as", "1e309", "--since", "1h", *C], 2, "src_as", ""),
        (["query", "flows", "--dscp", "-1", "--since", "1h", *C], 2, "dscp", ""),
        (["query", "flows", "--protocol", "nan", "--since", "1h", *C], 2, "protocol", ""),
        (["query", "flows", "--since", "2999-01-01T00:00:00", *C], 0, "", ""),  # an empty window, answered
        (["query", "flows", "--since", "1969-01-01T00:00:00", *C], 2, "since", ""),
        (["query", "flows", "--until", "99999-01-01T00:00:00", "--since", "1h", *C], 2, "until", ""),
        (["query", "flows", "--since", "15x", *C], 2, "since", ""),
        (["query", "flows", "--since", "1e309h", *C], 2, "since", ""),
        (["query", "flows", "--limit", "0", "--since", "1h", *C], 2, "--limit", ""),
        (["query", "flows", "--limit", "-1", *C], 2, "--limit", ""),
        (["query", "flows", "--limit", str(10 ** 30), "--since", "1h", *C], 2, "--limit", ""),
        (["query", "flows", "--limit", str(10 ** 12), "--since", "1h", *C], 0, "", ""),
        (["query", "series", "--step", str(10 ** 30), "--since", "1h", *C], 2, "--step", ""),
        (["query", "series", "--step", "nan", "--since", "1h", *C], 2, "--step", ""),
        (["query", "series", "--step", "0.001", "--since", "1h", *C], 0, "", ""),
        (["query", "top", "--by", "nonsense", "--since", "1h", *C], 2, "by", ""),
        (["query", "top", "--metric", "nonsense", "--since", "1h", *C], 2, "metric", ""),
        (["query", "explore", "--by", "pair,src", "--since", "1h", *C], 2, "by", ""),
        (["query", "advisories", "--severity", LONG, "--since", "1h", *C], 2, "severity", ""),
        (["query", "flows", "--format", "xml", *C], 2, "--format", ""),
        (["query", "flows", "--order", "random", "--since", "1h", *C], 2, "order", ""),
        (["query", "flows", "--since", "1h", "--endpoint", "garbage", *C], 2, "--endpoint", ""),
        (["query", "status", "--endpoint", "tcp://127.0.0.1:99999", *C], 2, "--endpoint", ""),
        (["query", "status", "--endpoint", "udp://127.0.0.1:5", *C], 2, "--endpoint", ""),
        (["query", "status", "--config", unreachable], 3, "did not answer", ""),
        (["query", "status", "--config", "/nonexistent.yaml"], 2, "/nonexistent.yaml", ""),
        (["query", "status", "--config", str(tmp)], 2, str(tmp), ""),
        (["query", "nonsense", *C], 2, "op", ""),
        (["query", "status", "--by", "nonsense", *C], 2, "--by", ""),
        (["query", "exporters", "--limit", "5", *C], 2, "--limit", ""),
        # analyze
        (["analyze", "--since", "1h", "--until", "2h", *C], 2, "since", ""),
        (["analyze", "--since", "garbage", *C], 2, "since", ""),
        (["analyze", "--until", "10000-01-01", *C], 2, "until", ""),
        (["analyze", "--format", "xml", *C], 2, "--format", ""),
        (["analyze", "--since", "1h", "--config", unreachable], 3, "did not answer", ""),
        # replay
        (["replay", str(not_pcap), *to], 2, "not a pcap", ""),
        (["replay", str(tmp / "missing.pcap"), *to], 2, "missing.pcap", ""),
        (["replay", str(tmp), *to], 2, "Is a directory", ""),
        (["replay", str(CAPTURE), "--to", "256.1.1.1:2055"], 2, "--to", ""),
        (["replay", str(CAPTURE), "--to", "127.0.0.1:99999"], 2, "--to", ""),
        (["replay", str(CAPTURE), "--to", LONG + ":2055"], 2, "--to", ""),
        (["replay", str(CAPTURE), "--to", "[::1"], 2, "--to", ""),
        (["replay", str(CAPTURE), *to, "--speed", "1e-300"], 2, "--speed", ""),
        (["replay", str(CAPTURE), *to, "--speed", "nan"], 2, "--speed", ""),
        # advisory, silence
        (["advisory", "ack", LONG, *C], 2, "", ""),
        (["silence", "add", "--analyzer", "scan", "--for", "-5m", *C], 2, "--for", ""),
        (["silence", "add", "--analyzer", "scan", "--for", "1e309h", *C], 2, "--for", ""),
        (["silence", "add", "--analyzer", "scan", "--for", "0m", *C], 2, "--for", ""),
        (["silence", "add", "--analyzer", "scan", "--network", "10.0.0.0/33", *C], 2, "network", ""),
        (["silence", "add", "--analyzer", "scan", "--address", "256.1.1.1", *C], 2, "address", ""),
        (["silence", "remove", "²", *C], 2, "", ""),
        (["silence", "list", "--config", unreachable], 3, "did not answer", ""),
        # users, keys, config, up
        (["users", "list", "--file", str(binary)], 2, "not an accounts file", ""),
        (["users", "add", LONG, "--file", users, "--password-stdin"], 2, "", "secret-password\n"),
        (["users", "add", "dave", "--role", "admin", "--file", users, "--password-stdin"], 2, "--role", "x\n"),
        (["users", "remove", "nobody", "--file", users], 2, "", ""),
        (["keys", "generate", "--dir", "", "--name", "store"], 2, "--dir", ""),
        (["keys", "generate", "--dir", str(binary), "--name", "store"], 2, "--dir", ""),
        (["users", "add", "carol", "--file", str(binary / "users"), "--password-stdin"], 2, "not a directory",
         "a-good-password\n"),
        (["keys", "generate", "--dir", str(tmp / "keys"), "--name", "../evil"], 2, "", ""),
        (["config", "check", str(tmp)], 2, str(tmp), ""),
        (["up", "--services", "", *C], 2, "--services", ""),
        (["up", "--services", "bogus", *C], 2, "bogus", ""),
        (["up", "--max-backoff", "nan", "--services", "bogus", *C], 2, "--max-backoff", ""),
        (["up", "--stop-timeout", "-1", "--services", "bogus", *C], 2, "--stop-timeout", ""),
    ]


@pytest.fixture
def stack(tmp_path):
    if not CAPTURE.exists():
        pytest.skip(f"the public capture {CAPTURE} is not on this machine")
    (tmp_path / "stack").mkdir()
    with ServiceStack(tmp_path / "stack", ["store", "collector"]) as stack:
        yield stack


def test_hostile_values_get_a_documented_exit_and_a_reason_never_a_traceback(stack, tmp_path):
    cfg = str(stack.config_path)
    replayed = flowlens(["replay", str(CAPTURE), "--to", f"127.0.0.1:{stack.ipfix_port}", "--speed", "max", "--no-progress"])
    assert replayed.returncode == 0, replayed.stderr
    client = stack.client()
    wait_until(lambda: client.flows(limit=1, since=0).rows(), timeout_s=15)
    assert flowlens(["query", "flows", "--since", "3650d", "--limit", "5", *["--config", cfg]]).returncode == 0

    raw = yaml.safe_load(Path(cfg).read_text())
    raw["query"].update({"endpoint": f"tcp://127.0.0.1:{free_port()}", "timeout": "0.3s", "retries": 0})
    raw["bus"]["events_endpoint"] = raw["query"]["endpoint"]
    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(yaml.safe_dump(raw))

    table = cases(cfg, str(unreachable), tmp_path, stack.ipfix_port)
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(lambda case: flowlens(case[0], stdin=case[3]), table))
    failures = []
    for (argv, code, words, _), run in zip(table, runs):
        shown = " ".join(a if len(a) < 60 else a[:20] + "..." for a in argv)
        err = run.stderr.strip()
        if "Traceback" in run.stderr:
            failures.append(f"{shown}: traceback\n{err[-600:]}")
        elif run.returncode != code:
            failures.append(f"{shown}: exit {run.returncode}, wanted {code}: {err[-300:]}")
        elif code and (not err or words.lower() not in err.lower()):
            failures.append(f"{shown}: stderr {err[-300:]!r} does not say {words!r}")
    assert not failures, f"{len(failures)} of {len(table)}:\n" + "\n".join(failures)
    print(f"{len(table)} hostile command lines, each answered with its documented exit code and a reason")
