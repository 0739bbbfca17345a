"""The web benchmark in small (bench/web.py, bench/webclients.py): 20,000 flows fed to a real store,
the dashboard timed under four history clients (processes of their own) and a crowd of browsers
against the real web process. Answers only, never timings: every history client and browser got
pages, none but 200 (or a deliberate 429), and the dashboard's Server-Timing breakdown came back."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import web  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    got: dict[str, tuple] = {}
    mp = pytest.MonkeyPatch()
    for name, value in (("TOTAL_FLOWS", 20_000), ("REQUESTS", 5), ("PARTS", {"history", "crowd"}),
                        ("CROWD_BROWSERS", 12), ("CROWD_SECONDS", 3)):
        mp.setattr(web, name, value)
    try:
        web.run(lambda section, name, value, unit="", note="": got.__setitem__(name, (value, note)))
    finally:
        mp.undo()
    return got


def test_history_clients_ran_through_the_dashboard_s_timing(rows):
    pages, note = rows["history pages answered while the dashboard was timed"]
    assert pages > 0 and note.split(" by status ")[1].startswith("{200: ")
    assert "flow rows shown" in note and not note.split("}, ")[1].startswith("0 flow rows")
    assert "statuses {200: 5}" in rows["dashboard / p95, 4 clients running 24 h history"][1]


def test_the_dashboard_s_time_is_broken_down(rows):
    parts = rows["dashboard under history: Server-Timing p50 / p95"][0]
    for part in ("lane", "store", "resume", "render", "app", "outside"):
        assert f"{part} " in parts
    cpu = rows["CPU while the dashboard was timed"][0]
    assert "store " in cpu and "history clients " in cpu and "machine " in cpu


def test_a_crowd_of_browsers_gets_only_pages_or_deliberate_429s(rows):
    codes, note = rows["12 browsers for 3 s: answers by status"]
    assert note == "errors other than 429: 0"
    assert codes.startswith("{200: ")
