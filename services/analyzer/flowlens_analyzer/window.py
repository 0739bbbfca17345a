"""Sliding windows in flow time: the analyzer's flows in compact numpy columns (winbuf.FlowBuffer).

Flows are placed by their own time_end, not by arrival, so a replayed capture folds like live
traffic. Each exporter has its own clock, the newest time_end it has sent; the flow clock is the
slowest active exporter's clock minus analysis.watermark, so one exporter whose clock runs ahead
cannot make the others' flows late. An exporter counts as active while it has sent within
max(analysis.idle_after, analysis.watermark) of wall time, and holds the flow clock back by at most
analysis.clock_tolerance behind the newest exporter (older flows from it are late, counted for it),
and never runs ahead of the wall clock.
Flows ending more than analysis.clock_tolerance after the wall clock are refused and counted per
exporter (``future_by_exporter``, ``ahead_ms_by_exporter``). When no flows have arrived for
analysis.idle_after (wall clock), flow time moves on with the wall clock so that windows still close
and advisories still resolve.

Runs end on multiples of analysis.interval (epoch-aligned); a flow that arrives for a window that
already ran is late and counted, never re-analysed. Lateness is decided per flow in arrival order:
when the flows of one batch move the clock past a window's end, ``add`` hands the flows before that
point to the window, lets the caller run the due windows (``run_due``), then goes on with the rest,
so batches of 1, 10 or 400 flows give the same runs and the same late counts. The number of flows
kept is bounded by analysis.max_window_flows; the oldest-arrived are dropped first (counted). After
a run, the flows no later run looks at are released at once, so the bound only drops flows a run
still needs.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from flowmodel.schema import FlowBatch

from .common import WINDOW_COLUMNS, WindowView, window_columns
from .winbuf import FlowBuffer

MAX_LATE_EXPORTERS = 1024  # keys of the per-exporter counters
MAX_EXPORTERS = 4096  # exporter clocks kept; the longest-silent one is replaced
NEVER = np.iinfo(np.int64).min
ALWAYS = np.iinfo(np.int64).max


class FlowWindow:
    def __init__(self, window_ms: int, interval_ms: int, watermark_ms: int, max_flows: int, idle_after_ms: int,
                 tolerance_ms: int = 60_000):
        self.window_ms = int(window_ms)
        self.interval_ms = int(interval_ms)
        self.watermark_ms = int(watermark_ms)
        self.max_flows = int(max_flows)
        self.idle_after_ms = int(idle_after_ms)
        self.tolerance_ms = int(tolerance_ms)
        self.hold_ms = max(self.idle_after_ms, self.watermark_ms)  # an exporter this quiet stops holding the clock
        self.buf = FlowBuffer(self.max_flows)  # the kept flows, oldest-arrived first
        # Exporter clocks: slot per exporter (16 raw bytes) -> newest time_end, wall time of its last flows.
        self.ex_slot: dict[bytes, int] = {}
        self.ex_max = np.zeros(0, np.int64)
        self.ex_wall = np.zeros(0, np.int64)
        self.basis: int | None = None  # the exporter clock the flow clock follows (before the watermark)
        self.first_min: int | None = None  # oldest time_end before the first run
        self.clock: int | None = None  # flow time up to which windows may close
        self.next_end: int | None = None  # end of the next run
        self.closed_until: int | None = None  # end of the last run: older flows are late
        self.last_arrival_wall: int | None = None
        self.counters = {"flows": 0, "late": 0, "future": 0, "overflow": 0, "runs": 0}
        self.late_by_exporter: dict[bytes, int] = {}  # cumulative; bounded to MAX_LATE_EXPORTERS keys
        self.future_by_exporter: dict[bytes, int] = {}  # cumulative flows refused as ahead of our clock
        self.ahead_ms_by_exporter: dict[bytes, int] = {}  # how far ahead its latest refused flows were (ms)

    @classmethod
    def from_config(cls, cfg) -> "FlowWindow":
        return cls(int(cfg["analysis.window"] * 1000), int(cfg["analysis.interval"] * 1000),
                   int(cfg["analysis.watermark"] * 1000), cfg["analysis.max_window_flows"],
                   int(cfg["analysis.idle_after"] * 1000), int(cfg["analysis.clock_tolerance"] * 1000))

    # ---------------------------------------------------------------- input

    def add(self, batch: FlowBatch, wall_ms: int | None = None, run_due: Callable[[], None] | None = None) -> int:
        """Keep a batch's flows (copied) in arrival order; returns how many were accepted. With
        ``run_due``, it is called whenever the flows so far have made a window due, before the rest
        are judged (the engine runs its windows there); without it the whole batch is judged at once."""
        if not batch.count:
            return 0
        cols = window_columns(batch)
        if wall_ms is not None:
            self.last_arrival_wall = wall_ms
            end = cols["time_end"]
            future = end > wall_ms + self.tolerance_ms
            if future.any():
                self.counters["future"] += int(future.sum())
                self._count(self.future_by_exporter, cols["exporter"][future])
                ahead = _group_max(cols["exporter"][future], end[future] - wall_ms)
                for e, ms in ahead.items():
                    if e in self.ahead_ms_by_exporter or len(self.ahead_ms_by_exporter) < MAX_LATE_EXPORTERS:
                        self.ahead_ms_by_exporter[e] = ms
                cols = {k: v[~future] for k, v in cols.items()}
        accepted = 0
        while len(cols["time_end"]):
            # the usual batch (known, active exporters; no window due in it): the clock after its last
            # flow from per-exporter maxima, no per-flow path
            fast = self._end_clock(cols, wall_ms)
            if fast is not None and (run_due is None or not self._due_after(cols["time_end"], fast)):
                accepted += self._take(cols, wall_ms, fast)
                break
            clock = self._clock_path(cols, wall_ms)
            cut = self._first_due(cols["time_end"], clock) if run_due is not None else None
            if cut is None:
                accepted += self._take(cols, wall_ms, int(clock[-1]))
                break
            accepted += self._take({k: v[:cut + 1] for k, v in cols.items()}, wall_ms, int(clock[cut]))
            run_due()
            cols = {k: v[cut + 1:] for k, v in cols.items()}
        return accepted

    def _take(self, cols: dict[str, np.ndarray], wall_ms: int | None, clock: int) -> int:
        """Judge lateness against the last run, move the exporter clocks, keep the rest."""
        end = cols["time_end"]
        self._observe(cols["exporter"], end, wall_ms)
        if self.closed_until is not None:
            late = end < self.closed_until
            n_late = int(late.sum())
            if n_late:
                self.counters["late"] += n_late
                self._count(self.late_by_exporter, cols["exporter"][late])
                cols = {k: v[~late] for k, v in cols.items()}
                end = cols["time_end"]
        elif len(end):
            lo = int(end.min())
            self.first_min = lo if self.first_min is None else min(self.first_min, lo)
            self.next_end = (self.first_min // self.interval_ms + 1) * self.interval_ms
        self.basis = self._basis(wall_ms)
        self._advance(clock)
        n = len(end)
        if not n:
            return 0
        self.counters["flows"] += n
        excess = self.size + n - self.max_flows
        if excess > 0:  # the oldest-arrived go first: held ones, then (a batch beyond the bound) its own first rows
            self.counters["overflow"] += excess
            self.buf.drop_oldest(excess)
            if n > self.max_flows:
                cols = {k: v[n - self.max_flows:] for k, v in cols.items()}
        self.buf.append(cols)
        return n

    @property
    def size(self) -> int:
        """Flows kept."""
        return len(self.buf)

    def _observe(self, exporters: np.ndarray, end: np.ndarray, wall_ms: int | None) -> None:
        """Fold a batch into the exporter clocks."""
        for e, newest in _group_max(exporters, end).items():
            slot = self.ex_slot.get(e)
            if slot is None:
                slot = self._new_slot(e)
                self.ex_max[slot] = newest
            else:
                self.ex_max[slot] = max(int(self.ex_max[slot]), newest)
            if wall_ms is not None:
                self.ex_wall[slot] = wall_ms

    def _new_slot(self, e: bytes) -> int:
        if len(self.ex_slot) < MAX_EXPORTERS:
            slot = len(self.ex_slot)
            self.ex_max = np.append(self.ex_max, NEVER)
            self.ex_wall = np.append(self.ex_wall, NEVER)
        else:  # replace the exporter silent longest
            slot = int(np.argmin(self.ex_wall))
            del self.ex_slot[next(k for k, v in self.ex_slot.items() if v == slot)]
        self.ex_slot[e] = slot
        return slot

    def _active(self, wall_ms: int | None) -> np.ndarray:
        if wall_ms is None:
            return np.ones(len(self.ex_max), bool)
        return (self.ex_wall == NEVER) | (wall_ms - self.ex_wall <= self.hold_ms)

    def _basis(self, wall_ms: int | None) -> int | None:
        """The slowest active exporter's clock, at most clock_tolerance behind the newest one."""
        clocks = self.ex_max[self._active(wall_ms)]
        if not len(clocks):
            return None
        basis = max(int(clocks.min()), int(clocks.max()) - self.tolerance_ms)
        return basis if wall_ms is None else min(basis, wall_ms)  # never ahead of our own clock

    def _clock_path(self, cols: dict[str, np.ndarray], wall_ms: int | None) -> np.ndarray:
        """The flow clock after each flow of the batch, as if they came one by one: each exporter's
        running clock, the slowest active one (at most clock_tolerance behind the newest, never past
        the wall clock), minus the watermark, never going back."""
        end, exporters = cols["time_end"], cols["exporter"]
        n = len(end)
        active = self._active(wall_ms)
        keys, inv = _factor(exporters)
        lo = np.full(n, ALWAYS, np.int64)
        hi = np.full(n, NEVER, np.int64)
        for j, e in enumerate(keys):
            run = end if len(keys) == 1 else np.where(inv == j, end, NEVER)
            run = np.maximum.accumulate(run)
            slot = self.ex_slot.get(e)
            if slot is not None:
                prior = int(self.ex_max[slot])
                if active[slot]:
                    run = np.maximum(run, prior)
                else:  # silent until now: holds the clock only from its first flow on
                    run = np.where(run == NEVER, NEVER, np.maximum(run, prior))
            lo = np.minimum(lo, np.where(run == NEVER, ALWAYS, run))
            hi = np.maximum(hi, run)
        in_batch = set(keys)
        others = [int(self.ex_max[i]) for e, i in self.ex_slot.items() if active[i] and e not in in_batch]
        if others:
            lo = np.minimum(lo, min(others))
            hi = np.maximum(hi, max(others))
        clock = np.maximum(lo, hi - self.tolerance_ms)
        if wall_ms is not None:
            clock = np.minimum(clock, wall_ms)
        clock = np.maximum.accumulate(clock - self.watermark_ms)  # the flow clock never goes back
        if self.clock is not None:
            clock = np.maximum(clock, self.clock)
        return clock

    def _end_clock(self, cols: dict[str, np.ndarray], wall_ms: int | None) -> int | None:
        """The flow clock after the batch's last flow, when every exporter in it is known and active:
        then each running value only grows, so the path never dips and its end is its maximum (what
        _clock_path would give at the end). None otherwise (a new or returning exporter can pull the
        clock's low end down partway through: the per-flow path is needed)."""
        active = self._active(wall_ms)
        clocks = self.ex_max.copy()
        for e, newest in _group_max(cols["exporter"], cols["time_end"]).items():
            slot = self.ex_slot.get(e)
            if slot is None or not active[slot]:
                return None
            clocks[slot] = max(int(clocks[slot]), newest)
        held = clocks[active]
        clock = max(int(held.min()), int(held.max()) - self.tolerance_ms)
        if wall_ms is not None:
            clock = min(clock, wall_ms)
        clock -= self.watermark_ms
        return clock if self.clock is None else max(clock, self.clock)

    def _due_after(self, end: np.ndarray, clock: int) -> bool:
        """Whether a window is due once the batch is in (the clock only grows and the due threshold
        only falls along a batch, so due anywhere means due at its end)."""
        if self.closed_until is not None:
            return clock >= self.next_end
        run_min = int(end.min()) if self.first_min is None else min(int(end.min()), self.first_min)
        return clock >= (run_min // self.interval_ms + 1) * self.interval_ms

    def _first_due(self, end: np.ndarray, clock: np.ndarray) -> int | None:
        """Index of the first flow after which a window is due (the flow clock reaches the next run's
        end), or None when the whole batch leaves every window open."""
        if self.closed_until is not None:
            if clock[-1] < self.next_end:
                return None
            due = clock >= self.next_end
        else:
            run_min = np.minimum.accumulate(end)
            if self.first_min is not None:
                run_min = np.minimum(run_min, self.first_min)
            due = clock >= (run_min // self.interval_ms + 1) * self.interval_ms
        hits = np.flatnonzero(due)
        return int(hits[0]) if len(hits) else None

    def _count(self, counter: dict[bytes, int], exporters: np.ndarray) -> None:
        uniq, counts = np.unique(exporters.view("S16"), return_counts=True)
        for e, c in zip(uniq.tolist(), counts.tolist()):
            e = e.ljust(16, b"\x00")  # S16 drops trailing zero bytes
            if e in counter or len(counter) < MAX_LATE_EXPORTERS:
                counter[e] = counter.get(e, 0) + int(c)

    def _advance(self, t: int) -> None:
        self.clock = t if self.clock is None else max(self.clock, t)

    def tick(self, wall_ms: int) -> None:
        """Advance flow time with the wall clock when no flows have arrived for idle_after."""
        if self.basis is None or self.last_arrival_wall is None:
            return
        idle = wall_ms - self.last_arrival_wall
        if idle >= self.idle_after_ms:
            self._advance(self.basis - self.watermark_ms + idle)

    def advance_to(self, t: int) -> None:
        """Move the flow clock to t (offline analysis of a stored range: everything has arrived)."""
        self._advance(int(t))

    # ---------------------------------------------------------------- runs

    def due(self) -> Iterator[int]:
        """Ends of the runs that may happen now, oldest first (the caller runs each, then the next)."""
        while self.next_end is not None and self.clock is not None and self.next_end <= self.clock:
            earliest = self._earliest_end()
            if earliest is None or earliest >= self.next_end:
                # Nothing in this window: jump over the empty stretch, keeping one empty run at the
                # last boundary before the data (or the clock), where absent conditions resolve.
                target = self.clock if earliest is None else min(self.clock, earliest)
                skip_to = (target // self.interval_ms) * self.interval_ms
                if skip_to > self.next_end:
                    self.next_end = skip_to
            end = self.next_end
            self.next_end = end + self.interval_ms
            self.closed_until = end
            self.counters["runs"] += 1
            yield end

    def pending_before(self, t: int) -> bool:
        """Whether flows ending before t are kept that no run has looked at yet."""
        lo = self.closed_until if self.closed_until is not None else NEVER
        end = self.buf.column("time_end")
        return bool(((end >= lo) & (end < t)).any())

    def _earliest_end(self) -> int | None:
        """The oldest time_end that the next run (or a later one) will still look at."""
        end = self.buf.column("time_end")
        end = end[end >= self.next_end - self.window_ms]
        return int(end.min()) if len(end) else None

    def view(self, end_ms: int) -> WindowView:
        """The flows with time_end in [end - window, end), after dropping what no later run needs.
        When later flows are kept too, it is a copy of the window's flows, or, when those are the larger
        part and windows do not overlap (interval >= window: no later run looks at them again, so their
        order against the later flows no longer matters), views of them after they were moved in front
        of the later ones (a transient copy of the later ones); so the extra memory is at most half the
        kept flows. Views are valid until flows are added or released (the engine analyses a view before
        it takes more)."""
        start = end_ms - self.window_ms
        self._compact(keep_from=end_ms + self.interval_ms - self.window_ms, also_from=start)
        if not self.size:
            return WindowView({name: np.zeros(0, dtype=_dtype(name)) for name in WINDOW_COLUMNS}, start, end_ms)
        inside = self.buf.column("time_end") < end_ms  # (none is older than start after _compact)
        n_inside = int(np.count_nonzero(inside))
        if n_inside == self.size:
            rows = self.buf.rows()
        elif self.interval_ms >= self.window_ms and 2 * n_inside >= self.size:  # copy the smaller part
            rows = self.buf.rows(slice(0, self.buf.partition(inside)))
        else:
            rows = self.buf.rows(inside)
        return WindowView(rows, start, end_ms, exporters=self.buf.exporters, compact=True)

    def release(self, end_ms: int) -> None:
        """After the run ending at end_ms: drop the flows no later run looks at, so they are neither
        held nor counted as overflow when the bound is reached before the next run."""
        self._compact(keep_from=end_ms + self.interval_ms - self.window_ms, also_from=end_ms + self.interval_ms)

    def _compact(self, keep_from: int, also_from: int) -> None:
        """Drop flows older than any run still to come needs."""
        keep = self.buf.column("time_end") >= min(keep_from, also_from)
        if not keep.all():
            self.buf.keep(keep)


def _factor(exporters: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """Distinct exporters (16 raw bytes each) and each flow's index into them."""
    uniq, inv = np.unique(exporters.view("S16"), return_inverse=True)
    return [e.ljust(16, b"\x00") for e in uniq.tolist()], inv.reshape(-1)


def _group_max(exporters: np.ndarray, values: np.ndarray) -> dict[bytes, int]:
    """Largest value per exporter."""
    if len(values) and (exporters.view("S16") == exporters[:1].view("S16")).all():
        return {bytes(exporters[0]): int(values.max())}
    keys, inv = _factor(exporters)
    out = np.full(len(keys), NEVER, np.int64)
    np.maximum.at(out, inv, values.astype(np.int64))
    return dict(zip(keys, out.tolist()))


def _dtype(name: str) -> np.dtype:
    from flowmodel.schema import FLOW_COLUMNS

    return FLOW_COLUMNS[name][0]
