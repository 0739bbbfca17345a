"""Bad values of keys only used at start stop each service at once with exit 2 and a message naming
the key, before any bind: real processes on a config file in tmp_path."""
from __future__ import annotations

import subprocess

import pytest

from tests.support.services import PYTHON, REPO, stack_config, write_config


def start(tmp_path, service: str, section: str, key: str, value) -> subprocess.CompletedProcess:
    cfg = stack_config(tmp_path)
    cfg.setdefault(section, {})[key] = value
    path = write_config(tmp_path / "bad.yaml", cfg)
    return subprocess.run([PYTHON, "-m", f"flowlens_{service}", "--config", str(path)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)


@pytest.mark.parametrize("service, section, key, value, words", [
    # each was a different failure before: "unable to open database file" with no key; "cannot bind
    # UDP listeners: File exists"; an OverflowError traceback; a ZMQError traceback
    ("store", "storage", "sqlite_path", "TMP", "is a directory"),
    ("collector", "collector", "spool_path", "FILE", "is a file, not a directory"),
    ("web", "web", "listen", "127.0.0.1:65536", "port 65536 is outside 1-65535"),
    ("analyzer", "query", "endpoint", "tcp://127.0.0.1", "is not tcp://HOST:PORT"),
    ("store", "storage", "events_bind", "tcp://", "is not tcp://HOST:PORT"),
])
def test_a_bad_start_time_value_stops_the_service_naming_the_key(tmp_path, service, section, key, value, words):
    if value == "TMP":
        value = str(tmp_path)
    elif value == "FILE":
        (tmp_path / "spool").write_text("not a directory")
        value = str(tmp_path / "spool")
    p = start(tmp_path, service, section, key, value)
    assert p.returncode == 2, p.stderr
    assert f"key '{section}.{key}'" in p.stderr and words in p.stderr, p.stderr
    assert "Traceback" not in p.stderr, p.stderr


@pytest.mark.parametrize("section, key, value", [("storage", "query_workers", 10**30), ("web", "listen", "127.0.0.1:0"),
                                                 ("analysis", "dns_response_bytes", 10**400),
                                                 ("storage", "sqlite_retention", "9" * 400 + "d")])
def test_flowlens_config_check_refuses_what_a_service_would_refuse(tmp_path, section, key, value):
    cfg = stack_config(tmp_path)
    cfg.setdefault(section, {})[key] = value
    path = write_config(tmp_path / "bad.yaml", cfg)
    p = subprocess.run([PYTHON, "-m", "flowmodel.cli", "config", "check", str(path)], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    assert p.returncode == 2 and f"key '{section}.{key}'" in p.stderr and "Traceback" not in p.stderr, p.stderr
