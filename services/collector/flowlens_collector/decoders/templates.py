"""A v9/IPFIX template compiled once into a numpy dtype, and the vectorised record -> column mapping.

Fixed-length templates are read with one ``frombuffer`` over all records of a template in a decode
call; templates with variable-length fields are first projected record by record onto a fixed layout
of the fields we use (the only per-record path), then share the same vectorised mapping.
"""
from __future__ import annotations

import struct

import numpy as np

from flowmodel.addr import ipv4_column_from_raw
from flowmodel.schema import ADDR, HINT_IPV4

from .fields import (ADDRESS_ROLES, NSEL_CREATE, NSEL_DENIED, NSEL_EVENTS, NTP_EPOCH_OFFSET_S, NTP_ROLES,
                     REVERSE_PEN, REVERSE_ROLES, ROLES, VARIABLE_LENGTH, base_role, enterprise_field_name, field_ok)
from .v5 import uptime_to_abs_ms

_U16 = struct.Struct(">H")


class Template:
    """One data or options template. ``fields`` is a tuple of (ie, length, enterprise number)."""

    __slots__ = ("version", "template_id", "fields", "options", "scope_count", "record_len", "variable",
                 "dtype", "roles", "_used", "hints", "enterprise", "nsel_counters", "nsel_packets_bound", "biflow")

    def __init__(self, version: int, template_id: int, fields, options: bool = False, scope_count: int = 0):
        self.version = version
        self.template_id = template_id
        self.fields = tuple((int(ie), int(length), int(pen)) for ie, length, pen in fields)
        self.options = options
        self.scope_count = scope_count
        self.variable = any(length == VARIABLE_LENGTH for _ie, length, _pen in self.fields)
        self.record_len = None if self.variable else sum(length for _ie, length, _pen in self.fields)
        # Pick the fields we read: first occurrence of each role (a repeated field keeps its first value).
        roles: dict[str, tuple[int, int]] = {}
        used: list[tuple[int, int, int]] = []  # (field index, length, offset in the projection)
        proj_off = 0
        real_off = 0
        for i, (ie, length, pen) in enumerate(self.fields):
            role = ROLES.get(ie) if pen == 0 else REVERSE_ROLES.get(ie) if pen == REVERSE_PEN else None
            if role is not None and role not in roles and length != VARIABLE_LENGTH and field_ok(role, length):
                off = real_off if not self.variable else proj_off
                roles[role] = (off, length)
                used.append((i, length, proj_off))
                proj_off += length
            if not self.variable:
                real_off += length
        self.roles = roles
        self._used = used
        # enterprise-specific fields (skipped by length): name -> occurrences per record, for the stats
        enterprise: dict[str, int] = {}
        for ie, _length, pen in self.fields:
            if pen:
                name = enterprise_field_name(pen, ie)
                enterprise[name] = enterprise.get(name, 0) + 1
        self.enterprise = enterprise
        # Cisco ASA NSEL: counters in initiator/responder octets; packets only with 298/299
        self.nsel_counters = "initiator_octets" in roles or "responder_octets" in roles
        self.nsel_packets_bound = self.nsel_counters and not any(
            r in roles for r in ("packets", "packets_total", "initiator_packets", "responder_packets"))
        # RFC 5103: records carry a reverse direction (decoders/biflow.py makes it a flow of its own)
        self.biflow = any(r in roles for r in ("rev_octets", "rev_packets", "rev_octets_total", "rev_packets_total"))
        # address columns this template fills from IPv4 fields only (FlowBatch.hints)
        self.hints = {col: HINT_IPV4 for col, cands in ADDRESS_CANDIDATES
                      if any(c in roles for c in cands) and all(c.endswith("_v4") for c in cands if c in roles)}
        itemsize = self.record_len if not self.variable else max(proj_off, 1)
        names, formats, offsets = [], [], []
        for role, (off, length) in roles.items():
            names.append(role)
            formats.append(_format(role, length))
            offsets.append(off)
        self.dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize})

    def key_fields(self) -> list:
        return [list(f) for f in self.fields]

    def same_as(self, other: "Template") -> bool:
        return self.fields == other.fields and self.options == other.options and self.scope_count == other.scope_count

    # -- bytes -> records ---------------------------------------------------------------------

    def project(self, body) -> tuple[bytes, int, bool]:
        """Variable-length records -> (fixed projection bytes, record count, truncated)."""
        out = bytearray()
        pos, end = 0, len(body)
        n = 0
        used = {i: length for i, length, _off in self._used}
        # a template reading none of its fields still has 1-byte records (numpy's least itemsize)
        pad = bytes(self.dtype.itemsize - sum(used.values()))
        fields = self.fields
        mv = memoryview(body)
        while pos < end:
            start = pos
            chunk = bytearray()
            ok = True
            for i, (_ie, length, _pen) in enumerate(fields):
                if length == VARIABLE_LENGTH:
                    if pos >= end:
                        ok = False
                        break
                    length = mv[pos]
                    pos += 1
                    if length == 255:
                        if pos + 2 > end:
                            ok = False
                            break
                        length = _U16.unpack_from(mv, pos)[0]
                        pos += 2
                if pos + length > end:
                    ok = False
                    break
                if i in used:
                    chunk += mv[pos:pos + length]
                pos += length
            if not ok or pos == start:
                # What is left is padding (zeros, shorter than a record) or a truncated record.
                return bytes(out), n, any(mv[start:end])
            out += chunk + pad
            n += 1
        return bytes(out), n, False

    # -- per exporter accounting --------------------------------------------------------------

    def account(self, rec: np.ndarray, stats) -> np.ndarray | None:
        """Count what the records ``rec`` carry beyond the flow schema into ``stats`` (an ExporterStats):
        their enterprise-specific fields, and for Cisco ASA NSEL their firewall events. Returns a
        mask of the records that are flows, or None when all are.

        NSEL flow-create events (233 = 1) are dropped when the template carries 231/232: a create
        record has no counters and the same connection comes again with its totals in the teardown
        (or with its traffic in updates), so publishing both would double the flow count. They are
        counted as nsel_events["create_dropped"] and taken off ``stats.flows``. Denied events are kept
        as flows (0 bytes; scans and blocked sources are what they show).
        """
        n = len(rec)
        if not n:
            return None
        if self.enterprise:
            stats.count_into("enterprise_fields", self.enterprise, n)
        if "firewall_event" not in self.roles:
            return None
        ev = _uint(rec["firewall_event"])
        values, counts = np.unique(ev, return_counts=True)
        stats.count_into("nsel_events", {NSEL_EVENTS.get(int(v), f"event_{int(v)}"): int(c)
                                         for v, c in zip(values.tolist(), counts.tolist())}, 1)
        keep = None
        if self.nsel_counters and NSEL_CREATE in values:
            keep = ev != NSEL_CREATE
            dropped = n - int(np.count_nonzero(keep))
            stats.count_into("nsel_events", {"create_dropped": dropped}, 1)
            stats.flows -= dropped
            n -= dropped
        if self.nsel_packets_bound and n:
            stats.count_into("nsel_events", {"packets_lower_bound": n}, 1)
        return keep

    # -- records -> columns -------------------------------------------------------------------

    def to_columns(self, rec: np.ndarray, export_ms: np.ndarray, uptime_ms: np.ndarray | None,
                   init_ms: int | None) -> tuple[dict, np.ndarray | None, np.ndarray | None, int]:
        """Flow-schema columns of records ``rec`` (this template's dtype).

        Returns (columns, sampler ids or None, per-record sampling rates or None, count of records
        whose uptime-relative times had no time base).
        """
        n = len(rec)
        r = self.roles
        cols: dict[str, np.ndarray] = {}

        def u(role):
            return _uint(rec[role]) if role in r else None

        # addresses: the first non-zero of the candidates present (IPv4 before IPv6, as tshark lists
        # them; a template carrying both, e.g. for MPLS, fills only the family of the flow). The next
        # hop falls back to the BGP next hop when the IP next hop is absent or zero.
        for col, cands in ADDRESS_CANDIDATES:
            present = [c for c in cands if c in r]
            if not present:
                continue
            out = None
            for c in present:
                a = _addr(rec[c])
                if out is None:
                    out = a
                else:
                    zero = ~out.view(np.uint8).reshape(n, 16)[:, 12:].any(axis=1) & \
                        ~out.view(np.uint8).reshape(n, 16)[:, :10].any(axis=1)
                    if zero.any():
                        out = np.where(zero, a, out)
            cols[col] = out

        for col, roles, dt in (
            ("src_port", ("src_port",), np.uint16), ("dst_port", ("dst_port",), np.uint16),
            ("protocol", ("protocol",), np.uint8), ("tos", ("tos",), np.uint8),
            ("tcp_flags", ("tcp_flags",), np.uint8),
            ("input_if", ("input_if",), np.uint32), ("output_if", ("output_if",), np.uint32),
            ("src_as", ("src_as",), np.uint32), ("dst_as", ("dst_as",), np.uint32),
            ("src_mask", ("src_mask", "src_mask_v6"), np.uint8), ("dst_mask", ("dst_mask", "dst_mask_v6"), np.uint8),
            ("vlan", ("vlan", "dot1q_vlan"), np.uint16), ("direction", ("direction",), np.uint8),
        ):
            for role in roles:
                if role in r:
                    cols[col] = _uint(rec[role]).astype(dt)
                    break

        # counters: delta counts, else totals, else NSEL initiator + responder
        for col, plain, total, nsel in (("bytes", "octets", "octets_total", ("initiator_octets", "responder_octets")),
                                        ("packets", "packets", "packets_total",
                                         ("initiator_packets", "responder_packets"))):
            if plain in r:
                cols[col] = _uint(rec[plain])
            elif total in r:
                cols[col] = _uint(rec[total])
            elif nsel[0] in r or nsel[1] in r:
                acc = np.zeros(n, dtype=np.uint64)
                for role in nsel:
                    if role in r:
                        acc += _uint(rec[role])
                cols[col] = acc
        if self.nsel_packets_bound:
            cols["packets"] = self._nsel_packets_lower_bound(rec, n)

        # ICMP type/code: explicit IEs, else (for ICMP flows) the exporter's type*256+code destination port
        proto = cols.get("protocol")
        tc = u("icmp_type_code") if "icmp_type_code" in r else u("icmp_type_code_v6")
        if tc is not None:
            itype, icode = (tc >> 8) & 0xFF, tc & 0xFF
        elif "icmp_type" in r or "icmp_type_v6" in r:
            itype = u("icmp_type") if "icmp_type" in r else u("icmp_type_v6")
            icode = u("icmp_code") if "icmp_code" in r else u("icmp_code_v6")
            icode = icode if icode is not None else np.zeros(n, np.uint64)
        elif "dst_port" in cols:
            dp = cols["dst_port"].astype(np.uint64)
            itype, icode = dp >> 8, dp & 0xFF
        else:
            itype = icode = None
        if itype is not None and proto is not None:
            is_icmp = (proto == 1) | (proto == 58)
            cols["icmp_type"] = np.where(is_icmp, itype, 0).astype(np.uint8)
            cols["icmp_code"] = np.where(is_icmp, icode, 0).astype(np.uint8)

        start, end, unknown = self._times(rec, n, export_ms, uptime_ms, init_ms)
        cols["time_start"] = start
        cols["time_end"] = end

        sampler = None
        for role in ("sampler_id", "selector_id"):
            if role in r:
                sampler = _uint(rec[role])
                break
        rates = self.record_rates(rec, n)
        return cols, sampler, rates, unknown

    def _nsel_packets_lower_bound(self, rec: np.ndarray, n: int) -> np.ndarray:
        """Packets of NSEL records without 298/299 (many ASA releases send neither): the true count is
        unknown; what is known is one packet at least per direction that carried bytes, and one for a
        denied connection attempt. The column gets that lower bound (counted as
        nsel_events["packets_lower_bound"]), never a made-up average."""
        r = self.roles
        pk = np.zeros(n, dtype=np.uint64)
        for role in ("initiator_octets", "responder_octets"):
            if role in r:
                pk += (_uint(rec[role]) > 0).astype(np.uint64)
        if "firewall_event" in r:
            denied = _uint(rec["firewall_event"]) == NSEL_DENIED
            pk = np.where(denied, np.maximum(pk, 1), pk).astype(np.uint64)
        return pk

    def record_rates(self, rec: np.ndarray, n: int) -> np.ndarray | None:
        """Per-record 1-in-N rate from sampling fields inside the records, if the template has any."""
        r = self.roles
        rate = None
        if "sampling_size" in r and "sampling_population" in r:
            size, pop = _uint(rec["sampling_size"]), _uint(rec["sampling_population"])
            rate = np.where(size > 0, pop // np.maximum(size, 1), 0)
        if "sampling_packet_interval" in r:
            iv = _uint(rec["sampling_packet_interval"])
            sp = _uint(rec["sampling_packet_space"]) if "sampling_packet_space" in r else np.zeros(n, np.uint64)
            alt = np.where(iv > 0, (iv + sp) // np.maximum(iv, 1), 1)
            rate = alt if rate is None else np.where(rate > 0, rate, alt)
        for role in ("sampling_interval", "sampler_interval"):
            if role in r:
                alt = _uint(rec[role])
                rate = alt if rate is None else np.where(rate > 0, rate, alt)
                break
        if rate is None:
            return None
        return np.maximum(rate, 1).astype(np.uint32)

    def _times(self, rec, n, export_ms, uptime_ms, init_ms, prefix: str = ""):
        """Start and end ms of the records, and how many had no time base; ``prefix`` "rev_" reads
        the reverse elements of a biflow record instead."""
        r = self.roles
        unknown = 0

        def one(which):
            nonlocal unknown
            which = prefix + which
            if f"{which}_ms" in r:
                return _uint(rec[f"{which}_ms"]).astype(np.int64)
            if f"{which}_sec" in r:
                return _uint(rec[f"{which}_sec"]).astype(np.int64) * 1000
            for role in (f"{which}_us", f"{which}_ns"):
                if role in r:
                    return _ntp_ms(rec[role], r[role][1])
            if f"{which}_delta_us" in r:
                return export_ms - (_uint(rec[f"{which}_delta_us"]) // 1000).astype(np.int64)
            if f"{which}_uptime" in r:
                v = _uint(rec[f"{which}_uptime"]).astype(np.int64)
                if uptime_ms is not None:  # NetFlow v9: relative to the header's sysUptime
                    return uptime_to_abs_ms(v, uptime_ms, export_ms)
                # IPFIX: relative to systemInitTimeMilliseconds (in the record or from options data)
                if "system_init_ms" in r:
                    return _since_init(_uint(rec["system_init_ms"]).astype(np.int64), v, export_ms)
                if init_ms is not None:
                    return _since_init(init_ms, v, export_ms)
                unknown = n
                return None
            if "event_time_ms" in r and not prefix:
                return _uint(rec["event_time_ms"]).astype(np.int64)
            return None

        start, end = one("start"), one("end")
        s_up, e_up = prefix + "start_uptime", prefix + "end_uptime"
        if unknown and s_up in r and e_up in r and start is None and end is None:
            # IPFIX uptime times with no systemInitTimeMilliseconds known: anchor the end at export
            # time and keep the duration, rather than inventing a boot time.
            dur = (_uint(rec[e_up]).astype(np.int64) - _uint(rec[s_up]).astype(np.int64))
            end = export_ms.copy()
            start = export_ms - np.maximum(dur, 0)
        if start is None and end is None:
            start = export_ms.copy()
            end = export_ms.copy()
        elif start is None:
            start = end.copy()
        elif end is None:
            end = start.copy()
        return start, end, unknown


# schema address column -> the roles that may fill it, first non-zero wins (see to_columns)
ADDRESS_CANDIDATES = (("src_addr", ("src_v4", "src_v6")), ("dst_addr", ("dst_v4", "dst_v6")),
                      ("next_hop", ("next_hop_v4", "next_hop_v6", "bgp_next_hop_v4", "bgp_next_hop_v6")))


def _since_init(init_ms, value: np.ndarray, export_ms: np.ndarray) -> np.ndarray:
    """Absolute ms of IPFIX flowStart/EndSysUpTime values (32-bit ms since systemInitTime).

    The uptime fields wrap every 2^32 ms (~49.7 days): the time is init + value + k * 2^32 with the
    k >= 0 that puts it within 2^31 ms of the export time, as the v9 rule does for sysUptime (so an
    exporter up 60 days lands next to the export time, not 49.7 days before it). k is never
    negative: a flow does not start before its exporter booted, so when the export time is before
    init + value (a wrong exporter clock) the time stays init + value.
    """
    t = init_ms + value
    k = np.maximum((export_ms - t + (1 << 31)) >> 32, 0)
    return t + (k << 32)


def _addr(a: np.ndarray) -> np.ndarray:
    """IPv4 (little-endian u4 view of network-order bytes) or V16 IPv6 field -> ADDR column."""
    if a.dtype.kind == "V":
        return np.ascontiguousarray(a).view(ADDR).copy()
    return ipv4_column_from_raw(a)


def _format(role: str, length: int):
    role = base_role(role)
    if role in ADDRESS_ROLES:
        return "<u4" if length == 4 else "V16"  # IPv4 bytes kept in network order
    if role in NTP_ROLES:
        return ">u8" if length == 8 else (">u8", (2,))
    if length in (1, 2, 4, 8):
        return f">u{length}"
    return ("u1", (length,))


def _uint(a: np.ndarray) -> np.ndarray:
    """A big-endian integer field of any length 1-8 (reduced-size encoding) as uint64."""
    if a.ndim == 1:
        return a.astype(np.uint64)
    n, length = a.shape
    tmp = np.zeros((n, 8), dtype=np.uint8)
    tmp[:, 8 - length:] = a
    return tmp.view(">u8").reshape(n).astype(np.uint64)


def _ntp_ms(a: np.ndarray, length: int) -> np.ndarray:
    if length == 16:
        # pmacct's nfprobe_tstamp_usec: a struct timeval (int64 seconds, int64 microseconds), not NTP
        secs = a[:, 0].astype(np.int64)
        usecs = a[:, 1].astype(np.int64)
        return secs * 1000 + usecs // 1000
    v = a.astype(np.uint64)
    secs = (v >> np.uint64(32)).astype(np.int64) - NTP_EPOCH_OFFSET_S
    frac_ms = ((v & np.uint64(0xFFFFFFFF)) * np.uint64(1000)) >> np.uint64(32)
    return secs * 1000 + frac_ms.astype(np.int64)
