"""Helpers for the web access tests: a self-signed certificate for 127.0.0.1 made with the openssl
CLI, and accounts added through the real `flowlens users add`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def make_certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for IP 127.0.0.1, valid two days, and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


def add_user(users_file: Path, name: str, role: str, password: str) -> None:
    r = subprocess.run([sys.executable, "-m", "flowmodel.cli", "users", "add", name, "--role", role,
                        "--file", str(users_file), "--password-stdin"], input=password + "\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
