"""The web's accounts file and `flowlens users`: scrypt hashes that verify only the right password,
a file the web can read back, refusals in words for bad names, roles and files."""
import io
import stat
import subprocess
import sys

import pytest

from flowmodel import accounts
from flowmodel.cli import build_parser, run_users


def test_hash_verifies_only_its_password():
    h = accounts.hash_password("correct horse")
    assert h.startswith("scrypt$16384$8$1$")
    assert accounts.verify_password("correct horse", h)
    assert not accounts.verify_password("correct horsf", h)
    assert not accounts.verify_password("", h)
    assert accounts.hash_password("correct horse") != h  # a fresh salt each time


def test_hostile_hash_costs_are_refused():
    with pytest.raises(accounts.AccountsError, match="out of range"):
        accounts.parse("eve:viewer:scrypt$1073741824$8$1$AAAA$AAAA")
    with pytest.raises(accounts.AccountsError, match="line 2: role 'root'"):
        accounts.parse("# c\nbob:root:" + accounts.hash_password("x"))
    with pytest.raises(accounts.AccountsError, match="appears twice"):
        line = "bob:viewer:" + accounts.hash_password("x")
        accounts.parse(line + "\n" + line)


def test_roles_rank():
    h = accounts.hash_password("x")
    op, viewer = accounts.Account("o", "operator", h), accounts.Account("v", "viewer", h)
    assert op.may("viewer") and op.may("operator")
    assert viewer.may("viewer") and not viewer.may("operator")


def users(argv, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    rc = run_users(build_parser().parse_args(["users", *argv]), out, err, io.StringIO(stdin))
    return rc, out.getvalue(), err.getvalue()


def test_cli_writes_a_file_the_web_reads(tmp_path):
    path = tmp_path / "etc" / "users"
    rc, _, err = users(["add", "alice", "--role", "operator", "--file", str(path), "--password-stdin"], "s3cret\n")
    assert rc == 0 and "added alice (operator)" in err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rc, _, _ = users(["add", "bob", "--file", str(path), "--password-stdin"], "hunter2\n")
    first = accounts.load(path)
    assert {a.name: a.role for a in first.values()} == {"alice": "operator", "bob": "viewer"}
    assert accounts.verify_password("s3cret", first["alice"].password_hash)
    # a new password replaces the old one and changes the fingerprint sessions carry
    rc, _, err = users(["add", "alice", "--role", "operator", "--file", str(path), "--password-stdin"], "other\n")
    assert rc == 0 and "updated alice" in err
    second = accounts.load(path)
    assert second["alice"].fingerprint != first["alice"].fingerprint
    assert not accounts.verify_password("s3cret", second["alice"].password_hash)
    rc, out, _ = users(["list", "--file", str(path)])
    assert rc == 0 and out == "alice\toperator\nbob\tviewer\n"
    rc, _, _ = users(["remove", "bob", "--file", str(path)])
    assert rc == 0 and list(accounts.load(path)) == ["alice"]


def test_cli_refusals_in_words(tmp_path):
    path = tmp_path / "users"
    assert users(["add", "bad name", "--file", str(path), "--password-stdin"], "x\n")[2] \
        == "flowlens users: account name 'bad name' is not 1-64 letters, digits or . _ @ -\n"
    rc, _, err = users(["add", "carol", "--file", str(path), "--password-stdin"], "\n")
    assert rc == 2 and "the password is empty" in err and not path.exists()
    rc, _, err = users(["remove", "nobody", "--file", str(path)])
    assert rc == 2 and "No such file" in err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("web: {listen: '127.0.0.1:1'}\n")
    rc, _, err = users(["list", "--config", str(cfg)])
    assert rc == 2 and "set web.users_file" in err


def test_cli_entry_point_reads_the_config(tmp_path):
    path = tmp_path / "users"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"web: {{users_file: '{path}'}}\n")
    r = subprocess.run([sys.executable, "-m", "flowmodel.cli", "users", "add", "dave", "--config", str(cfg),
                        "--password-stdin"], input="pw\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert list(accounts.load(path)) == ["dave"]
