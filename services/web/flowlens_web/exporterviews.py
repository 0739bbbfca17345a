"""The exporter and interface pages' contexts (pure: store replies in, plain dicts out).

Health comes from the store's ``exporters`` reply (one row per collector, exporter and
observation domain: the collector's counters); names, sites and interface speeds from its
``names`` reply (namebook.NameBook; empty when the store has no names yet).
"""
from __future__ import annotations

import ipaddress
from typing import Any, Mapping

from flowmodel.protocol import is_digits

from . import chart
from . import formatters as fmt
from .explore import flows_params, url
from .namebook import NameBook
from .timerange import TimeRange


class PathError(ValueError):
    """A bad exporter address or ifIndex in a page's path (a 400 with this reason)."""


def exporter_address(text: str) -> str:
    """The exporter address of a path as the store writes it (IPv4 dotted, IPv6 compressed)."""
    try:
        a = ipaddress.ip_address(text.strip())
    except ValueError:
        raise PathError(f"exporter {text[:60]!r} is not an IP address") from None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return str(a)


def ifindex_of(text: str) -> int:
    t = text.strip()
    if not is_digits(t) or len(t) > 10 or int(t) > 2**32 - 1:
        raise PathError(f"ifIndex {text[:20]!r} is not a whole number from 0 to {2**32 - 1}")
    return int(t)


def _errors(row: Mapping) -> int:
    de = row.get("decode_errors") or {}
    if isinstance(de, Mapping):
        return sum(int(v or 0) for v in de.values())
    try:
        return int(de)
    except (TypeError, ValueError):
        return 0


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def health_rows(exporters_reply: Mapping, now_ms: int, only: str | None = None) -> list[dict]:
    """One row per (collector, exporter, observation domain), or only ``only``'s."""
    out = []
    for e in exporters_reply.get("exporters") or []:
        if not isinstance(e, Mapping) or (only is not None and str(e.get("exporter")) != only):
            continue
        last = e.get("last_seen") or e.get("store_last_seen")
        de = e.get("decode_errors") if isinstance(e.get("decode_errors"), Mapping) else {}
        out.append({
            "exporter": str(e.get("exporter") or "?"), "domain": "-" if e.get("observation_domain") is None else e["observation_domain"],
            "collector": e.get("collector") or "-", "version": {105: "sFlow 5"}.get(e.get("version"), e.get("version") or "-"),
            "packets": _int(e.get("packets")), "flows": _int(e.get("flows") if e.get("flows") is not None else e.get("store_flows")),
            "decode_errors": _errors(e), "decode_detail": ", ".join(f"{k} {v}" for k, v in sorted(de.items()) if v),
            "sequence_lost": _int(e.get("sequence_lost")), "templates": e.get("templates", "-"),
            "last_seen": fmt.human_time(last, now_ms), "last_exact": fmt.iso_time(last), "last_ago": fmt.ago(last, now_ms),
            "overflow": bool(e.get("overflow")),
        })
    return out


def exporter_rows(exporters_reply: Mapping, names: NameBook, now_ms: int,
                  sampling: Mapping[str, str] | None = None) -> list[dict]:
    """One row per exporter address: its name and site, its domains' counters summed and its
    ``sampling`` (address -> text); exporters the names know but no collector reported are listed
    too (without health)."""
    by_addr: dict[str, dict] = {}
    for h in health_rows(exporters_reply, now_ms):
        if h["overflow"]:
            continue
        r = by_addr.setdefault(h["exporter"], {"exporter": h["exporter"], "domains": 0, "versions": set(),
                                               "packets": 0, "flows": 0, "decode_errors": 0, "sequence_lost": 0,
                                               "templates": 0, "last_ms": 0, "health": True})
        r["domains"] += 1
        r["versions"].add(str(h["version"]))
        for k in ("packets", "flows", "decode_errors", "sequence_lost"):
            r[k] += h[k]
        r["templates"] += _int(h["templates"]) if h["templates"] != "-" else 0
    for e in exporters_reply.get("exporters") or []:
        if isinstance(e, Mapping) and str(e.get("exporter")) in by_addr:
            r = by_addr[str(e.get("exporter"))]
            r["last_ms"] = max(r["last_ms"], _int(e.get("last_seen") or e.get("store_last_seen")))
    for address in names.exporters:
        by_addr.setdefault(address, {"exporter": address, "domains": 0, "versions": set(), "packets": 0, "flows": 0,
                                     "decode_errors": 0, "sequence_lost": 0, "templates": 0, "last_ms": 0,
                                     "health": False})
    out = []
    for address in sorted(by_addr, key=_address_order):
        r = by_addr[address]
        out.append({**r, "versions": ", ".join(sorted(r["versions"] - {"-"})) or "-", **names.exporter_info(address),
                    "last_seen": fmt.human_time(r["last_ms"] or None, now_ms), "last_exact": fmt.iso_time(r["last_ms"] or None),
                    "interfaces": len(names.exporter_interfaces(address)),
                    "sampling": (sampling or {}).get(address, "")})
    return out


def _address_order(text: str) -> tuple:
    try:
        a = ipaddress.ip_address(text)
        return (a.version, int(a))
    except ValueError:
        return (9, 0, text)


def interface_rows(address: str, names: NameBook, in_view: Mapping | None, out_view: Mapping | None,
                   range_query: Mapping[str, str]) -> list[dict]:
    """Every interface the names know for ``address`` or the charts saw, by ifIndex: names, speed,
    its in/out statistics when it is among the charts' series, and links to its page and to
    Explore (by source arriving on it, by destination leaving by it) over ``range_query``."""
    stats: dict[int, dict] = {}
    for side, view, key in (("in", in_view, "input_if"), ("out", out_view, "output_if")):
        for r in (view or {}).get("rows") or []:
            flt = r.get("filter") or {}
            if flt.get(key) is not None:
                stats.setdefault(int(flt[key]), {})[side] = r
    indexes = {int(i["ifindex"]) for i in names.exporter_interfaces(address)} | set(stats)
    out = []
    for n in sorted(indexes):
        known = names.interface(address, n)
        speed = names.speed_bps(address, n)
        out.append({"ifindex": n, "name": known.get("name") or "", "description": known.get("description") or "",
                    "speed": fmt.human_rate(speed, "bps") if speed else "", "source": known.get("source") or "",
                    "in": stats.get(n, {}).get("in"), "out": stats.get(n, {}).get("out"),
                    "href": url(f"/exporters/{address}/if/{n}", range_query),
                    "explore_in": url("/explore", {"by": "src", "exporter": address, "input_if": str(n), **range_query}),
                    "explore_out": url("/explore", {"by": "dst", "exporter": address, "output_if": str(n), **range_query})})
    return out


def sampling_text(rate: float) -> str:
    """'unsampled', '1 in 100' or, for a mix of rates, '1 in ~37' (packets scaled over packets sent)."""
    if rate <= 0:
        return ""
    if abs(rate - 1) < 1e-9:
        return "unsampled"
    return f"1 in {round(rate):,}" if abs(rate - round(rate)) < 0.01 else f"1 in ~{rate:,.0f}"


def sampling_by_exporter(scaled: Mapping, unscaled: Mapping) -> dict[str, str]:
    """Each exporter's sampling from two ``top`` replies by exporter (packets, scaled and not): the
    ratio is the rate its flows carried, weighted by their packets."""
    def packets(reply: Mapping) -> dict[str, float]:
        out = {}
        for r in reply.get("rows") or []:
            if isinstance(r, Mapping):
                flt = r.get("filter") if isinstance(r.get("filter"), Mapping) else {}
                address = str(flt.get("exporter") or r.get("key") or "")
                out[address] = float(r.get("packets") or 0)
        return out
    raw = packets(unscaled)
    return {a: sampling_text(p / raw[a]) for a, p in packets(scaled).items() if raw.get(a)}


def exporter_context(address: str, names: NameBook, health: list[dict], trange: TimeRange,
                     in_view: Mapping | None = None, out_view: Mapping | None = None, sampling: str = "",
                     error: str | None = None) -> dict:
    """exporter.xhtml's context: without views (a store with no explore op) health and names only."""
    q = trange.query()
    return {"title": f"Exporter {names.exporter_label(address)}", "nav": "exporters", "address": address,
            "label": names.exporter_label(address), "info": names.exporter_info(address), "health": health,
            "range_bar": trange.bar(f"/exporters/{address}"), "in_view": in_view, "out_view": out_view,
            "error": error, "interfaces": interface_rows(address, names, in_view, out_view, q), "sampling": sampling,
            "explore_href": url("/explore", {"by": "in_if", "exporter": address, **q}),
            "flows_href": url("/flows", {"exporter": address, **q})}


def interface_context(address: str, ifindex: int, names: NameBook, trange: TimeRange, explore_in: str,
                      explore_out: str, in_view: Mapping | None = None, out_view: Mapping | None = None,
                      error: str | None = None, counters: Mapping | None = None) -> dict:
    """interface.xhtml's context; ``explore_in``/``explore_out``: its Explore views each way;
    ``counters``: the switch's own counters (``switch_counters``)."""
    speed = names.speed_bps(address, ifindex)
    in_flt = {"exporter": address, "input_if": ifindex}
    out_flt = {"exporter": address, "output_if": ifindex}
    return {"title": f"{names.interface_label(address, ifindex)} on {names.exporter_label(address)}", "nav": "exporters",
            "address": address, "exporter_label": names.exporter_label(address), "ifindex": ifindex,
            "info": names.interface(address, ifindex), "speed": fmt.human_rate(speed, "bps") if speed else "",
            "error": error, "range_bar": trange.bar(f"/exporters/{address}/if/{ifindex}"), "in_view": in_view,
            "out_view": out_view, "exporter_href": url(f"/exporters/{address}", trange.query()),
            "explore_in": explore_in, "explore_out": explore_out, "counters": counters,
            "flows_in": url("/flows", flows_params(in_flt, trange) or {}),
            "flows_out": url("/flows", flows_params(out_flt, trange) or {})}



def switch_counters(reply: Mapping | None, trange: TimeRange) -> dict | None:
    """The interface page's "switch's own counters" from an ``ifcounters`` reply: in/out bits/s
    charts, peak utilisation of ifSpeed, and the window's errors, discards and counter resets.
    None when the store has no counter rows for the interface in the window (not an sFlow agent's)."""
    if not reply or not any(reply.get(k) and sum(reply[k]) for k in ("in_octets", "out_octets", "resets")):
        return None
    speed = int(reply.get("speed_bps") or 0)
    out = {"speed": fmt.human_rate(speed, "bps") if speed else "", "step_s": int(reply["step_ms"]) // 1000}
    for side in ("in", "out"):
        bps = [float(v) for v in reply[f"{side}_bps"]]
        out[f"{side}_chart"] = chart.line_chart(list(reply["times"]), bps, "bps", trange.since_ms, trange.until_ms)
        out[f"{side}_util"] = utilisation_text(max(bps) / speed) if speed and bps else "unknown"
        out[f"{side}_octets"] = fmt.exact(sum(reply[f"{side}_octets"]))
        out[f"{side}_errors"] = fmt.exact(sum(reply[f"{side}_errors"]))
        out[f"{side}_discards"] = fmt.exact(sum(reply[f"{side}_discards"]))
    out["resets"] = sum(reply["resets"])
    return out


def utilisation_text(fraction: float) -> str:
    """'37.5 %'; two significant digits under 1 % (a quiet 10 Gb/s port is not '0.0 %')."""
    pct = 100 * fraction
    return f"{pct:.1f} %" if pct >= 1 or pct == 0 else f"{pct:.2g} %"
