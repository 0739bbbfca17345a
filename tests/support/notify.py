"""Helpers of the notifier tests: targets on the loopback receivers (support.receivers), advisories
sent to the store's events socket the way the analyzer sends them (flowmodel.eventbox), the
notifier's counters from its health event, and the flowlens command as a user runs it."""
from __future__ import annotations

import subprocess
import sys

from flowmodel import bus
from flowmodel.eventbox import EventSender

FAST_NOTIFY = {"poll_interval": "0.2s", "group_wait": "0.5s", "group_interval": "2s", "send_timeout": "5s"}


def targets(hook=None, smtp=None, udp=None, tcp=None, **hook_options) -> list[dict]:
    out = []
    if hook:
        out.append({"name": "hook", "type": "webhook", "url": hook.url, **hook_options})
    if smtp:
        out.append({"name": "mail", "type": "email", "host": "127.0.0.1", "port": smtp.port,
                    "from": "flowlens@example.net", "to": ["noc@example.net"]})
    if udp:
        out.append({"name": "siem-udp", "type": "syslog", "host": "127.0.0.1", "port": udp.port, "protocol": "udp"})
    if tcp:
        out.append({"name": "siem-tcp", "type": "syslog", "host": "127.0.0.1", "port": tcp.port, "protocol": "tcp"})
    return out


def notifier_counters(client) -> dict:
    rows = [c for c in client.exporters()["collectors"] if c.get("kind") == "notifier"]
    return rows[0]["counters"] if rows else {}


def advisory(i: int, state: str = "raised", severity: str = "CRITICAL") -> dict:
    subject = f"10.9.{i // 256}.{i % 256}"
    now = bus.now_ms()
    return {"key": f"scan:{subject}", "analyzer": "scan", "subject": subject, "severity": severity, "state": state,
            "first_seen": 1_700_000_000_000, "last_seen": now, "title": f"Port scan from {subject}",
            "description": f"{subject} contacted 300 ports in 60 s: likely a port scan.",
            "action": "Find who runs it.", "evidence": {"ports": 300}, "filter": {"src": subject}}


class Injector:
    """Advisories into the store's events socket, held until it confirms them (as the analyzer does)."""

    def __init__(self, cfg: dict, keys=None):
        self.sequencer = bus.Sequencer("test-analyzer")
        self.sender = EventSender(cfg["bus"]["events_endpoint"], "test-analyzer", 100_000, 1.0, 1000,
                                  keys=keys).start()

    def send(self, events: list[dict]) -> None:
        for e in events:
            self.sender.send(bus.TOPIC_ADVISORY, e, lambda b: bus.encode_event(b, self.sequencer))
        assert self.sender.flush(30), "the store did not confirm the advisories"

    def close(self):
        self.sender.close()


def flowlens(config, *args) -> tuple[int, str, str]:
    """The flowlens command as a user runs it."""
    p = subprocess.run([sys.executable, "-c", "import sys; from flowmodel.cli import main; sys.exit(main())",
                        *args, "--config", str(config)], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr
