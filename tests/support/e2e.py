"""Scaffolding of the end-to-end tests (tests/integration/test_*_e2e.py): services as processes on
written configs, stopped in reverse with the log of any that failed, and every flow of a window read
back page by page through StoreClient until what was sent has arrived.

    with running(("store", path), ("collector", path)), store_client(cfg) as client:
        send_udp(cfg["collector"]["ipfix_port"], payloads)
        rows = wait_for_flows(client, len(payloads), since="1h")
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from flowmodel.client import StoreClient
from support.services import ServiceProcess, wait_until

MAX_PAGES = 100  # all_flows follows the cursor this far at most: a runaway test stops


def store_client(cfg: dict) -> StoreClient:
    """A client of the stack's store (short timeout, one retry: a test should fail, not hang)."""
    return StoreClient(cfg["query"]["endpoint"], timeout_s=5, retries=1)


def all_flows(client: StoreClient, page_size: int = 1000, **filters) -> list[dict]:
    """Every flow ``filters`` select, following the flows op's keyset cursor page by page."""
    rows, cursor = [], None
    for _ in range(MAX_PAGES):
        page = client.flows(limit=page_size, cursor=cursor, **filters)
        rows.extend(page.rows())
        cursor = page.next_cursor
        if not cursor or not len(page):
            break
    return rows


def wait_for_flows(client: StoreClient, count: int, timeout_s: float = 30.0, **filters) -> list[dict]:
    """The flows ``filters`` select once there are at least ``count`` (AssertionError at the deadline)."""
    def enough():
        rows = all_flows(client, **filters)
        return rows if len(rows) >= count else None
    return wait_until(enough, timeout_s=timeout_s, interval_s=0.2)


@contextmanager
def running(*services: tuple[str, Path]) -> Iterator[list[ServiceProcess]]:
    """Start each (service name, config path) in order and yield the processes; on the way out stop
    them in reverse and print the log of any that exited non-zero (pytest shows it with a failure)."""
    procs: list[ServiceProcess] = []
    try:
        for name, path in services:
            procs.append(ServiceProcess(name, path).start())
        yield procs
    finally:
        for p in reversed(procs):
            p.stop()
        for p in procs:
            if p.proc and p.proc.returncode not in (0, None):
                print(f"--- {p.name} log (rc={p.proc.returncode})\n{p.log()}")
