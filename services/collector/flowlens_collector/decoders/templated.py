"""NetFlow v9 / IPFIX template state (placeholder until the template decoder lands)."""
from __future__ import annotations


class TemplatedDecoder:
    def __init__(self, owner, **limits):
        self._owner = owner

    def begin(self, now_ms):
        pass

    def v9(self, buf, source, now_ms, _parts):
        self._owner.stats(source[0], 0, now_ms).error("unsupported_version")

    ipfix = v9

    def finish(self):
        return []

    def expire(self, now_ms):
        pass

    def pending_by_stats_key(self):
        return {}

    def templates_by_stats_key(self):
        return {}

    def state(self):
        return {"version": 1, "templates": []}

    def load_state(self, state):
        return 0
