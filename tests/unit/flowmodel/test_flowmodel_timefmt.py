"""timefmt: flow times as text for every int64, checked against numpy's proleptic Gregorian calendar."""
import random

import numpy as np
import pytest

from flowmodel import timefmt
from flowmodel.output import render

FAR_FUTURE_MS = 9_151_314_449_241_600_000  # flowEndMilliseconds of a spoofed IPFIX record
INT64 = (-(1 << 63), (1 << 63) - 1)


def _numpy_text(ms: int) -> str:
    return str(np.datetime64(ms, "ms"))


def test_civil_matches_numpy_over_the_whole_int64_range():
    rnd = random.Random(11)
    values = [0, -1, 1, 951_782_400_000, -62_135_596_800_000, 253_402_300_799_999, FAR_FUTURE_MS, INT64[1]]
    values += [rnd.randint(INT64[0] + 1, INT64[1]) for _ in range(20_000)]  # numpy's NaT is INT64[0]
    values += [rnd.randint(-62_135_596_800_000, 253_402_300_799_999) for _ in range(20_000)]
    for ms in values:
        y, mo, d, h, mi, s, milli = timefmt.civil(ms)
        mine = f"{timefmt.year_text(y).lstrip('+')}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{milli:03d}"
        assert mine == _numpy_text(ms), ms


@pytest.mark.parametrize("ms,text", [
    (1_764_000_000_123, "2025-11-24T16:00:00.123Z"),
    (0, "1970-01-01T00:00:00.000Z"),
    (-1, "1969-12-31T23:59:59.999Z"),
    (FAR_FUTURE_MS, "+289995580-07-29T16:00:00.000Z"),
    (-9_000_000_000_000_000_000, "-285196677-06-10T08:00:00.000Z"),
    ((1 << 63) - 1, "+292278994-08-17T07:12:55.807Z"),
    (-(1 << 63), "-292275055-05-16T16:47:04.192Z"),
])
def test_iso_of_any_int64(ms, text):
    assert timefmt.iso(ms) == text


def test_plausible_and_far_label():
    assert timefmt.plausible(0) and timefmt.plausible(1_764_000_000_000)
    assert not timefmt.plausible(FAR_FUTURE_MS) and not timefmt.plausible(-(1 << 63))
    assert timefmt.far_label(FAR_FUTURE_MS) == "far future (year 289,995,580)"
    assert timefmt.far_label(-9_000_000_000_000_000_000) == "far past (year -285,196,677)"


@pytest.mark.parametrize("ms,text", [
    (FAR_FUTURE_MS - 1_764_000_000_000, "290 million years"), (20 * 365 * 86_400_000, "20 years"),
    (3 * 86_400_000, "3 days"), (86_400_000 + 1, "24 h"), (5 * 3_600_000, "5 h"), (7 * 60_000, "7 min"),
    (30_000, "30 s")])
def test_span_words(ms, text):
    assert timefmt.span_words(ms) == text


def test_cli_table_shows_any_int64_time():
    rows = [{"time_start": FAR_FUTURE_MS, "time_end": (1 << 63) - 1, "last_seen": 1_764_000_000_123},
            {"time_start": -9_000_000_000_000_000_000, "time_end": 0, "last_seen": None}]
    text = render(rows, "table")
    assert "+289995580-07-29 16:00:00.000" in text
    assert "+292278994-08-17 07:12:55.807" in text
    assert "2025-11-24 16:00:00.123" in text
    for fmt in ("json", "csv"):
        assert str(FAR_FUTURE_MS) in render(rows, fmt)
