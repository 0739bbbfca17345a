"""The daily report by email: once report.send_at has passed (at report.utc_offset), the report of
the day before (flowmodel.report, from the store's query ops) goes to report.email_to through one
email target of notify.targets, as plain text with the link to its page (web.public_url).

The last day delivered lives in the notifier's state file, saved right after the delivery, so a
restart sends no report twice (a crash between the SMTP session and the save would send it again:
at least once, never lost). A failed try is retried after 1, 2, 4 ... minutes up to an hour, and
given up once the next day's report is due. Building and sending run on a thread of their own with
their own store connection, so advisories keep flowing meanwhile.
"""
from __future__ import annotations

import datetime as _dt
import logging
import queue
import smtplib
import ssl
import threading
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Callable

from flowmodel import report
from flowmodel.client import StoreClient, StoreError, StoreUnavailable
from flowmodel.logs import fields

from . import transports

log = logging.getLogger(__name__)

FIRST_RETRY_MS = 60_000
MAX_RETRY_MS = 3_600_000


def report_target(cfg) -> dict | None:
    """The email target that sends the report (report.target, else the first email target); None
    when no report is asked for. load_config has refused a target that is missing or not an email
    one (flowmodel.notifyconf.check_references)."""
    if not cfg["report.email_to"]:
        return None
    name = cfg["report.target"]
    return next(t for t in cfg["notify.targets"] if (t["name"] == name if name else t["type"] == "email"))


def email(r: dict, target: dict, to: list[str], public_url: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = report.subject(r)
    msg["From"] = target["from"]
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(idstring=f"report-{r['day']}")
    msg["X-FlowLens-Report"] = r["day"]
    link = f"{public_url.rstrip('/')}/report?day={r['day']}" if public_url else None
    msg.set_content(report.text(r, link))
    return msg


class DailyReport:
    """When the report is due, its delivery on a thread, its counters and its place in the state file."""

    def __init__(self, cfg, target: dict, clock: Callable[[], int]):
        self.cfg = cfg
        self.target = target
        self.clock = clock
        self.to = list(cfg["report.email_to"])
        self.offset = report.parse_utc_offset(cfg["report.utc_offset"])
        self.send_at_min = report.parse_send_at(cfg["report.send_at"])
        self.last_day: str | None = None      # the last day whose report was delivered (ISO date)
        self.next_try_ms = 0                  # after a failure, not before this
        self.trying_day: str | None = None    # the day the failures were for
        self.failures_in_a_row = 0
        self.last_error = ""
        self.counters = {"sent": 0, "failed": 0, "retried": 0, "checks": 0}  # per process
        self.results: queue.Queue = queue.Queue()
        self.busy = False

    @property
    def name(self) -> str:
        """The label of its counters beside the targets' (status and /metrics)."""
        return f"{self.target['name']}:report"

    def due_day(self, now_ms: int) -> _dt.date | None:
        """The day whose report should go now, if any."""
        self.counters["checks"] += 1
        today = report.local_day(now_ms, self.offset)
        if now_ms < report.day_start_ms(today, self.offset) + self.send_at_min * 60_000:
            return None
        day = today - _dt.timedelta(days=1)
        if self.last_day is not None and self.last_day >= day.isoformat():
            return None
        if self.trying_day == day.isoformat() and now_ms < self.next_try_ms:
            return None
        return day

    def start(self, day: _dt.date, now_ms: int) -> None:
        """Build and send the report of ``day`` on a thread; ``collect`` takes its result."""
        self.busy = True
        threading.Thread(target=self._send, args=(day, now_ms), name="daily-report", daemon=True).start()

    def _send(self, day: _dt.date, now_ms: int) -> None:
        cfg = self.cfg
        try:
            with StoreClient.from_config(cfg) as client:
                r = report.build(lambda op, **a: client.request(op, **a), day, self.offset, cfg["report.top_n"],
                                 cfg["report.advisories_max"], now_ms)
            transports.send_email(self.target, email(r, self.target, self.to, cfg["web.public_url"]),
                                  cfg["notify.send_timeout"])
            self.results.put((day, True, ""))
        except (StoreError, StoreUnavailable) as e:
            self.results.put((day, False, f"store: {e}"))
        except (OSError, smtplib.SMTPException, ssl.SSLError, transports.DeliveryError) as e:
            self.results.put((day, False, f"email {self.target['host']}:{self.target['port']}: "
                                          f"{e.__class__.__name__}: {e}"))
        except Exception as e:  # a bug in building or rendering: counted as a failure, with its traceback
            log.exception("daily report raised")
            self.results.put((day, False, f"internal error: {e!r}"))

    def collect(self) -> bool:
        """Take the thread's result, if there is one; True when the state changed (save it)."""
        try:
            day, ok, error = self.results.get_nowait()
        except queue.Empty:
            return False
        self.busy = False
        now = self.clock()
        if self.trying_day == day.isoformat() and self.failures_in_a_row:
            self.counters["retried"] += 1
        if ok:
            self.counters["sent"] += 1
            self.last_day, self.trying_day, self.failures_in_a_row, self.next_try_ms = day.isoformat(), None, 0, 0
            log.info("daily report sent", extra=fields(day=day.isoformat(), to=",".join(self.to),
                                                       target=self.target["name"]))
            return True
        self.counters["failed"] += 1
        if self.trying_day != day.isoformat():
            self.trying_day, self.failures_in_a_row = day.isoformat(), 0
        self.failures_in_a_row += 1
        self.last_error = error[:300]
        self.next_try_ms = now + min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (self.failures_in_a_row - 1))
        log.warning("daily report failed", extra=fields(day=day.isoformat(), error=self.last_error,
                                                        retry_in_s=(self.next_try_ms - now) // 1000))
        return True

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "pending": 1 if self.trying_day or self.busy else 0,
                "failures_in_a_row": self.failures_in_a_row, "last_error": self.last_error, "last_day": self.last_day}

    # ------------------------------------------------------------ state file form

    def to_state(self) -> dict:
        return {"last_day": self.last_day, "trying_day": self.trying_day, "next_try_ms": self.next_try_ms,
                "failures_in_a_row": self.failures_in_a_row}

    def load_state(self, state: dict) -> None:
        self.last_day = state.get("last_day")
        self.trying_day = state.get("trying_day")
        self.next_try_ms = int(state.get("next_try_ms") or 0)
        self.failures_in_a_row = int(state.get("failures_in_a_row") or 0)
