"""Exporter and interface names from the store's ``names`` op (pure: the reply in, lookups out).

A store without the op (older, or before the names work landed) answers "unknown op": the pages
then show addresses and ifIndexes, as before. The book is as big as the store's reply, which the
store bounds (names.max_rows).
"""
from __future__ import annotations

from typing import Any, Mapping


class NameBook:
    def __init__(self, exporters: dict[str, dict] | None = None,
                 interfaces: dict[tuple[str, int], dict] | None = None):
        self._exporters = exporters or {}
        self._interfaces = interfaces or {}

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any] | None) -> "NameBook":
        """Read tolerantly: rows missing their key fields are skipped, never guessed."""
        exporters: dict[str, dict] = {}
        interfaces: dict[tuple[str, int], dict] = {}
        for e in (reply or {}).get("exporters") or []:
            if isinstance(e, Mapping) and e.get("exporter"):
                exporters[str(e["exporter"])] = dict(e)
        for i in (reply or {}).get("interfaces") or []:
            if not isinstance(i, Mapping) or not i.get("exporter") or not i.get("name"):
                continue
            try:
                key = (str(i["exporter"]), int(i["ifindex"]))
            except (KeyError, TypeError, ValueError):
                continue
            interfaces[key] = dict(i)
        return cls(exporters, interfaces)

    def exporter(self, address: str) -> str | None:
        """The exporter's configured name, else its reverse DNS name, else None."""
        e = self._exporters.get(address)
        if not e:
            return None
        return e.get("name") or e.get("dns") or None

    def interface(self, exporter: str, ifindex: int) -> dict | None:
        """{'name', 'description', 'speed_bps', 'source'} of the interface, or None."""
        return self._interfaces.get((exporter, int(ifindex)))

    def __len__(self) -> int:
        return len(self._exporters) + len(self._interfaces)
