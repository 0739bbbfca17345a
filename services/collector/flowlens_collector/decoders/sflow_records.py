"""sFlow v5 records beyond the sampled packet: extended router/gateway data and interface counters.

Pure helpers of ``sflow.decode``, reading the datagrams' big-endian uint32 view ``w`` (and its
bytes ``u8``) at record offsets found by its walk, every record of a type at once.
"""
from __future__ import annotations

import numpy as np

from flowmodel.schema import ADDR

MAX_AS_PATH = 1000  # ASNs in one AS path segment at most; a longer one leaves the gateway record unread (noted)
IF_COUNTERS = 1     # counter record format: generic interface counters
COUNTER_SAMPLE, EXPANDED_COUNTER_SAMPLE = 2, 4
# interface counters (counter record 0:1), one row per record; 64-bit counters as uint64
IF_COUNTER_FIELDS = (("if_index", 0, 1), ("if_type", 1, 1), ("if_speed", 2, 2), ("if_direction", 4, 1),
                     ("if_status", 5, 1), ("in_octets", 6, 2), ("in_ucast_pkts", 8, 1),
                     ("in_multicast_pkts", 9, 1), ("in_broadcast_pkts", 10, 1), ("in_discards", 11, 1),
                     ("in_errors", 12, 1), ("in_unknown_protos", 13, 1), ("out_octets", 14, 2),
                     ("out_ucast_pkts", 16, 1), ("out_multicast_pkts", 17, 1), ("out_broadcast_pkts", 18, 1),
                     ("out_discards", 19, 1), ("out_errors", 20, 1), ("promiscuous_mode", 21, 1))


def address(w: np.ndarray, u8: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V16 addresses, bytes used) of sFlow ``address`` values (type word, then 4 or 16 bytes) at ``at``."""
    n = len(at)
    atype = w[at >> 2].astype(np.int64)
    out = np.zeros((n, 16), np.uint8)
    r4 = np.flatnonzero(atype == 1)
    out[r4, 10:12] = 0xFF
    out[r4, 12:] = u8[(at[r4] + 4)[:, None] + np.arange(4)]
    r6 = np.flatnonzero(atype == 2)
    out[r6] = u8[(at[r6] + 4)[:, None] + np.arange(16)]
    return out.view(ADDR).reshape(n), np.choose(np.minimum(atype, 3), (4, 8, 20, 4))


def gateways(w, u8, rows, at, length, cols, have_hop, flow_dg, notes) -> None:
    """Extended gateway: next hop, as (the router's), src_as, src_peer_as, AS path segments
    (type, count, ASNs), communities, local pref. src_as falls back to the router's AS and dst_as is
    the path's last AS, else the router's (as Akvorado does). Segments are walked in waves too."""
    end = at + length
    hop, used = address(w, u8, at)
    p = at + used
    ok = p + 16 <= end
    pw = np.where(ok, p >> 2, 0)
    router_as, src_as, segments = w[pw], w[pw + 1], np.where(ok, w[pw + 3], 0).astype(np.int64)
    dst_as = router_as.copy()
    cur = p + 16
    live = ok & (segments > 0)
    k = 0
    while live.any():
        idx = np.flatnonzero(live)
        c = cur[idx]
        fits = c + 8 <= end[idx]
        count = np.where(fits, w[np.where(fits, (c >> 2) + 1, 0)], 0).astype(np.int64)
        fits &= (count <= MAX_AS_PATH) & (c + 8 + 4 * count <= end[idx])
        ok[idx[~fits]] = False
        last = fits & (count > 0)
        dst_as[idx[last]] = w[(c[last] >> 2) + 1 + count[last]]
        cur[idx] = c + 8 + 4 * count
        k += 1
        live[idx] = fits & (segments[idx] > k)
    bad = flow_dg[rows[~ok]]
    if len(bad):
        notes.setdefault("gateway_truncated", []).append(bad.astype(np.int64))
    rows, hop = rows[ok], hop[ok]
    keep = ~have_hop[rows]
    cols["next_hop"][rows[keep]] = hop[keep]
    cols["src_as"][rows] = np.where(src_as[ok] != 0, src_as[ok], router_as[ok])
    cols["dst_as"][rows] = dst_as[ok]


def _no_counters() -> dict[str, np.ndarray]:
    out = {"datagram": np.zeros(0, np.int64), "sequence": np.zeros(0, np.uint32), "source_id": np.zeros(0, np.uint32)}
    out.update((name, np.zeros(0, np.uint32 if size == 1 else np.uint64)) for name, _word, size in IF_COUNTER_FIELDS)
    for column in out.values():
        column.flags.writeable = False
    return out


_NO_COUNTERS = _no_counters()  # shared by every group without counter samples: empty and read-only


def counters(w, s_fmt, s_at, s_dg, r_smp, r_fmt, r_at) -> dict[str, np.ndarray]:
    """Generic interface counter records of counter samples, one row each."""
    if not ((s_fmt == COUNTER_SAMPLE) | (s_fmt == EXPANDED_COUNTER_SAMPLE)).any():
        return dict(_NO_COUNTERS)  # agents send counters every 20-30 s per interface: most groups have none
    sfmt = s_fmt[r_smp]
    rec = np.flatnonzero((r_fmt == IF_COUNTERS) & ((sfmt == COUNTER_SAMPLE) | (sfmt == EXPANDED_COUNTER_SAMPLE)))
    smp = r_smp[rec]
    sw = s_at[smp] >> 2
    expanded = s_fmt[smp] == EXPANDED_COUNTER_SAMPLE
    out = {"datagram": s_dg[smp], "sequence": w[sw].astype(np.uint32),
           "source_id": np.where(expanded, (w[sw + 1] << 24) | (w[sw + 2] & 0xFFFFFF), w[sw + 1]).astype(np.uint32)}
    rw = r_at[rec] >> 2
    for name, word, size in IF_COUNTER_FIELDS:
        if size == 1:
            out[name] = w[rw + word].astype(np.uint32)
        else:
            out[name] = (w[rw + word].astype(np.uint64) << np.uint64(32)) | w[rw + word + 1].astype(np.uint64)
    return out
