"""Exporter and interface names from the store's ``names`` op (pure: the reply in, lookups out), the
one reader of that reply for every page (the flow table, Explore, the exporter pages).

A store without the op (older, or before the names work landed) answers "unknown op": the pages
then show addresses and ifIndexes, as before. An interface the reply knows only by its speed (no
name) is kept: its utilisation can still be shown. The book is as big as the store's reply, which
the store bounds (names.max_rows).
"""
from __future__ import annotations

from typing import Any, Mapping


class NameBook:
    def __init__(self, exporters: dict[str, dict] | None = None,
                 interfaces: dict[tuple[str, int], dict] | None = None):
        self.exporters = exporters or {}    # address -> {exporter, name, site, dns}
        self.interfaces = interfaces or {}  # (address, ifindex) -> {exporter, ifindex, name, description, speed_bps, source}

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any] | None) -> "NameBook":
        """Read tolerantly: rows missing their key fields (exporter, ifindex) are skipped, never guessed."""
        exporters: dict[str, dict] = {}
        interfaces: dict[tuple[str, int], dict] = {}
        for e in (reply or {}).get("exporters") or []:
            if isinstance(e, Mapping) and e.get("exporter"):
                exporters[str(e["exporter"])] = dict(e)
        for i in (reply or {}).get("interfaces") or []:
            if not isinstance(i, Mapping) or not i.get("exporter"):
                continue
            try:
                key = (str(i["exporter"]), int(i["ifindex"]))
            except (KeyError, TypeError, ValueError):
                continue
            interfaces[key] = dict(i)
        return cls(exporters, interfaces)

    # ------------------------------------------------------------------ exporters

    def exporter_name(self, address: str) -> str:
        """The exporter's configured name, else its reverse DNS name, else ''."""
        e = self.exporters.get(address) or {}
        return str(e.get("name") or e.get("dns") or "")

    def exporter_label(self, address: str) -> str:
        """'edge-1 (192.0.2.1)', the reverse name likewise, or the bare address."""
        name = self.exporter_name(address)
        return f"{name} ({address})" if name else address

    def exporter_info(self, address: str) -> dict:
        """name, site, dns ('' when unknown)."""
        e = self.exporters.get(address) or {}
        return {k: str(e.get(k) or "") for k in ("name", "site", "dns")}

    # ------------------------------------------------------------------ interfaces

    def interface(self, address: str, ifindex: int) -> dict:
        """ifindex, name, description, speed_bps, source ('' and 0 when unknown)."""
        i = self.interfaces.get((address, int(ifindex))) or {}
        return {"ifindex": int(ifindex), "name": str(i.get("name") or ""), "description": str(i.get("description") or ""),
                "speed_bps": i.get("speed_bps") or 0, "source": str(i.get("source") or "")}

    def interface_label(self, address: str, ifindex: int) -> str:
        """'Gi0/1 (ifIndex 3)' or 'ifIndex 3'."""
        name = self.interface(address, ifindex)["name"]
        return f"{name} (ifIndex {ifindex})" if name else f"ifIndex {ifindex}"

    def speed_bps(self, address: str, ifindex: int) -> int:
        try:
            return int(self.interface(address, ifindex)["speed_bps"] or 0)
        except (TypeError, ValueError):
            return 0

    def exporter_interfaces(self, address: str) -> list[dict]:
        """The reply's rows of the exporter's interfaces, by ifIndex."""
        return sorted((i for (a, _n), i in self.interfaces.items() if a == address), key=lambda i: int(i["ifindex"]))

    def __len__(self) -> int:
        return len(self.exporters) + len(self.interfaces)
