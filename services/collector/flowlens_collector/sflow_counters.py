"""sFlow interface counters (if-counters records) -> per-interval deltas, published as events.

Pure: ``CounterDeltas`` keeps the last cumulative sample per (agent, sub-agent, ifIndex), at most
``max_tracked`` of them (the least recently heard forgotten first, counted), and turns each new
sample into a row of flowmodel.events.IF_COUNTER_ROW_FIELDS: what the interface carried since the
previous sample. Counters are cumulative, so a counter that goes down is either a 32-bit wrap or a
reset (agent reboot, counters cleared): the agent's uptime going back, or a 64-bit octet counter
going down, is a reset -- the row says so and carries no traffic, never negative traffic. A 32-bit
counter going down without a reset wrapped once. The first sample of an interface only sets its
baseline. Rows wait in a bounded list until the service takes them (``take``).
"""
from __future__ import annotations

import collections

WRAP32 = 1 << 32
# counter record fields summed into each delta field (packets: unicast + multicast + broadcast)
_IN_PACKETS = ("in_ucast_pkts", "in_multicast_pkts", "in_broadcast_pkts")
_OUT_PACKETS = ("out_ucast_pkts", "out_multicast_pkts", "out_broadcast_pkts")
_OCTETS = ("in_octets", "out_octets")  # 64-bit counters
_COUNTERS32 = (*_IN_PACKETS, *_OUT_PACKETS, "in_errors", "out_errors", "in_discards", "out_discards")
HALF_RANGE = 1 << 31  # a 32-bit uptime or sequence more than this below the last one wrapped (not rebooted, not late)


def counter_delta(old: int, new: int, bits: int) -> int | None:
    """Increase of a cumulative counter of ``bits`` bits from ``old`` to ``new``: a 32-bit counter
    that went down wrapped once; a 64-bit one that went down was reset (None)."""
    if new >= old:
        return new - old
    return new + (1 << bits) - old if bits == 32 else None


def rebooted(old_uptime_ms: int, new_uptime_ms: int) -> bool:
    """The agent restarted between two samples: its uptime went back, and not by a 32-bit wrap."""
    return new_uptime_ms < old_uptime_ms and old_uptime_ms - new_uptime_ms < HALF_RANGE


class CounterDeltas:
    """Last sample per (agent text, sub-agent, ifIndex) -> delta rows (see the module docstring)."""

    def __init__(self, max_tracked: int):
        self.max_tracked = max_tracked
        self._last: collections.OrderedDict[tuple, tuple] = collections.OrderedDict()
        self._rows: list[dict] = []
        self.counters = {"if_counter_samples": 0, "if_counter_rows": 0, "if_counter_resets": 0,
                         "if_counter_out_of_order": 0, "if_counter_forgotten": 0, "if_counter_rows_dropped": 0}

    def __len__(self) -> int:
        return len(self._last)

    def add(self, agent: str, sub_agent: int, uptime_ms: int, sequence: int, sample: dict, now_ms: int) -> dict | None:
        """One if-counters record (``sample``: sflow_records.IF_COUNTER_FIELDS name -> int) heard at
        ``now_ms``; returns the delta row it made (also queued for ``take``), or None."""
        c = self.counters
        c["if_counter_samples"] += 1
        ifindex = int(sample["if_index"])
        key = (agent, int(sub_agent), ifindex)
        values = {name: int(sample[name]) for name in (*_OCTETS, *_COUNTERS32)}
        last = self._last.get(key)
        if last is not None:
            last_time, last_uptime, last_seq, last_values = last
            reset = rebooted(last_uptime, uptime_ms)
            if not reset and sequence <= last_seq and last_seq - sequence < HALF_RANGE:
                c["if_counter_out_of_order"] += 1  # a late or repeated sample: the baseline stays
                return None
        self._last[key] = (now_ms, uptime_ms, sequence, values)
        self._last.move_to_end(key)
        if len(self._last) > self.max_tracked:
            self._last.popitem(last=False)
            c["if_counter_forgotten"] += 1
        if last is None:
            return None
        deltas = {} if reset else {n: counter_delta(last_values[n], values[n], 64) for n in _OCTETS}
        reset = reset or None in deltas.values()
        if reset:
            c["if_counter_resets"] += 1
            deltas = dict.fromkeys(("in_octets", "out_octets", "in_packets", "out_packets", "in_errors",
                                    "out_errors", "in_discards", "out_discards"), 0)
        else:
            d32 = {n: counter_delta(last_values[n], values[n], 32) for n in _COUNTERS32}
            deltas.update(in_packets=sum(d32[n] for n in _IN_PACKETS), out_packets=sum(d32[n] for n in _OUT_PACKETS),
                          in_errors=d32["in_errors"], out_errors=d32["out_errors"],
                          in_discards=d32["in_discards"], out_discards=d32["out_discards"])
        row = {"exporter": agent, "ifindex": ifindex, "time_ms": now_ms, "interval_ms": max(0, now_ms - last_time),
               "speed_bps": int(sample["if_speed"]), "resets": int(reset), **deltas}
        if len(self._rows) >= self.max_tracked:
            c["if_counter_rows_dropped"] += 1
            return row
        self._rows.append(row)
        c["if_counter_rows"] += 1
        return row

    def take(self) -> list[dict]:
        """The rows made since the last call, oldest first."""
        rows, self._rows = self._rows, []
        return rows
