"""A page's time range (pure): read from the URL, shown as text, and the links around it.

The range lives in the URL so a view can be bookmarked: ``range=24h`` (the last 24 hours, moving
with the clock) or ``from=...&to=...`` (ISO 8601 times, UTC when no zone is given; fixed). Earlier,
later and zoom-out links give fixed ranges, except that a later range reaching the present becomes
"the last ..." again. ``step_s`` picks a chart step the store can answer from its rollups.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from flowmodel import timefmt
from flowmodel.protocol import QueryError, parse_when

# The range bar's links, shortest first (zoom out walks up this list).
PRESETS = {"10m": "10 min", "1h": "1 h", "6h": "6 h", "24h": "24 h", "72h": "72 h", "7d": "7 d", "30d": "30 d"}
UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}
MIN_SPAN_MS = 60_000
MAX_SPAN_MS = 400 * 86_400_000  # past this a page would read more than the store keeps anyway
# Chart steps in seconds: every one from a minute up is a multiple of a rollup step (1 min, 5 min,
# 1 h), so the store answers a long window from its rollups rather than from raw flows.
STEPS_S = (10, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_RANGE_RE = re.compile(r"^(\d{1,6})([mhd])$")


class RangeError(ValueError):
    """A time range the URL cannot mean; the message names the parameter (shown with a 400)."""


def _span_text(span_ms: int) -> str:
    """'10 min', '24 h', '7 d'; a span that is no whole number of units in the largest that fits
    twice, to a tenth ('1364.8 d', '90 min')."""
    for ms, word in ((86_400_000, "d"), (3_600_000, "h"), (60_000, "min")):
        if span_ms % ms == 0 and span_ms >= ms:
            return f"{span_ms // ms} {word}"
        if span_ms >= 2 * ms:
            return f"{span_ms / ms:.1f} {word}"
    return f"{span_ms / 1000:g} s"


def _preset_ms(token: str) -> int:
    m = _RANGE_RE.match(token)
    if not m:
        raise RangeError(f"range {token[:40]!r} is not a span like {', '.join(PRESETS)}; "
                         "for other times give from and to (ISO 8601 times like 2026-11-24T14:30)")
    span = int(m.group(1)) * UNIT_MS[m.group(2)]
    if not MIN_SPAN_MS <= span <= MAX_SPAN_MS:
        raise RangeError(f"range {token!r} must be between 1 minute and {MAX_SPAN_MS // 86_400_000} days")
    return span


def url_time(ms: int) -> str:
    """'2026-11-24T14:30Z' on the minute, else with seconds: short enough to read in a URL."""
    text = timefmt.iso(ms, millis=False)
    return text[:-4] + "Z" if text.endswith(":00Z") else text


@dataclass(frozen=True)
class TimeRange:
    since_ms: int
    until_ms: int
    now_ms: int
    preset: str | None = None  # "24h" when the range is the last 24 h as of now_ms

    # -------------------------------------------------------------- reading
    @classmethod
    def from_query(cls, params: Mapping[str, str], now_ms: int, default: str = "1h") -> "TimeRange":
        """The range a page's query parameters name: ``range`` or ``from``/``to`` (``to`` defaults to
        now); the flow explorer's older ``range=custom&since=&until=`` links are read as from/to.
        Raises RangeError saying which parameter is wrong."""
        token = (params.get("range") or "").strip()
        start = (params.get("from") or "").strip()
        end = (params.get("to") or "").strip()
        if token == "custom":  # links made before ranges had from/to
            token, start, end = "", start or (params.get("since") or "").strip(), end or (params.get("until") or "").strip()
            if not start:
                raise RangeError("range=custom needs a since (or from) time")
        if token and (start or end):
            raise RangeError("give either range or from/to, not both")
        if not (start or end):
            return cls.last(token or default, now_ms)
        if not start:
            raise RangeError("to was given without from: a range needs its start")
        since = _when(start, now_ms, "from")
        until = _when(end, now_ms, "to") if end else now_ms
        if since >= until:
            raise RangeError(f"from ({url_time(since)}) must be before to ({url_time(until)})")
        if until - since > MAX_SPAN_MS:
            raise RangeError(f"from/to span {_span_text(until - since)}; at most {MAX_SPAN_MS // 86_400_000} days")
        return cls(since, until, now_ms)

    @classmethod
    def last(cls, token: str, now_ms: int) -> "TimeRange":
        """The last ``token`` ('24h') as of ``now_ms``."""
        span = _preset_ms(token)
        return cls(now_ms - span, now_ms, now_ms, token)

    @classmethod
    def fixed(cls, since_ms: int, until_ms: int, now_ms: int) -> "TimeRange":
        """[since, until), as the last N when it ends now (within 1 % of its span: links are cut to
        the second, and the clock moves while one reads a page) and N is a preset, so it stays live."""
        span = until_ms - since_ms
        if until_ms >= now_ms - max(1000, span // 100):
            for token in PRESETS:
                if _preset_ms(token) == span:
                    return cls.last(token, now_ms)
            return cls(now_ms - span, now_ms, now_ms)
        return cls(since_ms, until_ms, now_ms)

    # -------------------------------------------------------------- showing
    @property
    def span_ms(self) -> int:
        return self.until_ms - self.since_ms

    @property
    def label(self) -> str:
        """'last 24 h' or '2026-11-24 14:30 to 16:30 UTC'."""
        if self.preset:
            return f"last {_span_text(self.span_ms)}"
        a, b = url_time(self.since_ms)[:-1].replace("T", " "), url_time(self.until_ms)[:-1].replace("T", " ")
        if a[:10] == b[:10]:
            b = b[11:]
        return f"{a} to {b} UTC"

    def query(self) -> dict[str, str]:
        """URL parameters that name this range again."""
        if self.preset:
            return {"range": self.preset}
        return {"from": url_time(self.since_ms), "to": url_time(self.until_ms)}

    def form_values(self) -> dict[str, str]:
        """The custom form's from/to, prefilled with this range's times (minute precision)."""
        return {"from": url_time(self.since_ms // 60_000 * 60_000)[:-1],
                "to": url_time(-(-self.until_ms // 60_000) * 60_000)[:-1]}

    # -------------------------------------------------------------- moving
    def earlier(self) -> "TimeRange":
        """The span just before this one, fixed (seconds, so the URL stays short)."""
        end = self.since_ms // 1000 * 1000
        return TimeRange(end - self.span_ms, end, self.now_ms)

    def later(self) -> "TimeRange | None":
        """The span just after this one; None when this one already ends now."""
        if self.preset or self.until_ms >= self.now_ms:
            return None
        start = self.until_ms
        return TimeRange.fixed(start, start + self.span_ms, self.now_ms)

    def zoom_out(self) -> "TimeRange | None":
        """A last-N range: the next longer preset; a fixed one: three times as long around its middle
        (not past now). None past the longest."""
        if self.preset:
            tokens = list(PRESETS)
            span = self.span_ms
            longer = [t for t in tokens if _preset_ms(t) > span]
            return TimeRange.last(longer[0], self.now_ms) if longer else None
        span = min(self.span_ms * 3, MAX_SPAN_MS)
        if span <= self.span_ms:
            return None
        mid = (self.since_ms + self.until_ms) // 2
        end = min(mid + span // 2, self.now_ms) // 1000 * 1000
        return TimeRange.fixed(end - span, end, self.now_ms)

    def step_s(self, points: int = 300) -> int:
        """A chart step for about ``points`` points: the span / points rounded up to one of STEPS_S."""
        want = self.span_ms / 1000 / max(1, points)
        for step in STEPS_S:
            if step >= want:
                return step
        return STEPS_S[-1]

    def bar(self, path: str, keep: Mapping[str, str] | None = None) -> dict:
        """What _range.xhtml shows: preset links, earlier/later/zoom-out links and the custom form,
        each keeping ``keep`` (the page's other parameters: filters, dimension...)."""
        keep = {k: v for k, v in (keep or {}).items()
                if v not in (None, "") and k not in ("range", "from", "to", "since", "until", "cursor", "dir")}

        def link(r: "TimeRange | None") -> dict | None:
            return None if r is None else {**keep, **r.query()}
        return {
            "path": path, "label": self.label,
            "presets": [{"text": text, "query": {**keep, "range": token}, "here": token == self.preset}
                        for token, text in PRESETS.items()],
            "earlier": link(self.earlier()), "later": link(self.later()), "zoom_out": link(self.zoom_out()),
            "form": self.form_values(), "hidden": keep,
        }


def _when(text: str, now_ms: int, name: str) -> int:
    try:
        return parse_when(text, now_ms, name)
    except QueryError as e:
        raise RangeError(str(e)) from None
