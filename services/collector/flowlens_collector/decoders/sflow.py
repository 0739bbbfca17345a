"""sFlow v5 datagrams -> flow-schema columns, interface counters and sequence numbers.

Pure: ``decode`` takes many datagrams at once and walks their XDR structure as arrays. Every sFlow
field sits on a 4-byte boundary of its datagram, so with each datagram copied to a 4-aligned place
in one buffer any field is one index into a big-endian uint32 view. Samples are walked in waves
(the k-th sample of every datagram at once), then their records the same way, then each record
type's fields are read for all its records with one fancy index per field; raw packet headers are
parsed by ``sflow_packet``, extended router/gateway and counter records by ``sflow_records``.

One flow per flow sample (or expanded flow sample): packets = 1, bytes = the sampled frame's length
(the raw header's frame_length, else the sampled Ethernet length, else the sampled IP length), as
goflow2 and pmacct count, with the sample's own rate in ``sampling_rate``. Exporter = agent address,
observation domain = sub-agent id, time_start = time_end = receive time. A datagram whose
structure does not hold together (a length past its end, a record shorter than its type) is dropped
whole and its reason returned; what is only unusual (an unknown record or sample type, a header
without IP, a discarded packet) is decoded and noted.
"""
from __future__ import annotations

import numpy as np

from flowmodel.schema import ADDR, HINT_CONST, FlowBatch

from . import sflow_packet, sflow_records

FLOW_VERSION = 105  # flow_version of sFlow v5 flows: 100 + the sFlow version, apart from NetFlow's 5/9/10
VERSION = 5

# datagram status -> reason (0 = decoded)
REASONS = ("ok", "truncated_header", "bad_version", "bad_agent_address", "bad_sample_count",
           "truncated_sample", "short_sample", "bad_record_count", "truncated_record", "short_record")
(OK, TRUNCATED_HEADER, BAD_VERSION, BAD_AGENT_ADDRESS, BAD_SAMPLE_COUNT, TRUNCATED_SAMPLE, SHORT_SAMPLE,
 BAD_RECORD_COUNT, TRUNCATED_RECORD, SHORT_RECORD) = range(len(REASONS))

# sample formats (enterprise 0): flow, counters, expanded flow, expanded counters
FLOW_SAMPLE, COUNTER_SAMPLE, EXPANDED_FLOW_SAMPLE, EXPANDED_COUNTER_SAMPLE = 1, 2, 3, 4
# flow record formats
RAW_HEADER, SAMPLED_ETHERNET, SAMPLED_IPV4, SAMPLED_IPV6 = 1, 2, 3, 4
EXTENDED_SWITCH, EXTENDED_ROUTER, EXTENDED_GATEWAY = 1001, 1002, 1003
IF_COUNTERS = 1  # counter record: generic interface counters
# least record lengths (bytes of data) of the types read; shorter is SHORT_RECORD
_MIN_LEN = {RAW_HEADER: 16, SAMPLED_ETHERNET: 24, SAMPLED_IPV4: 32, SAMPLED_IPV6: 56, EXTENDED_SWITCH: 16,
            EXTENDED_ROUTER: 16, EXTENDED_GATEWAY: 32}
IF_COUNTERS_LEN = 88
# the same as lookup tables: flow record format (1..7, 1001..1007 at 8..14) -> least length; sample
# format -> bytes before its records (0 = a sample format not decoded)
_RECORD_MIN = np.zeros(15, np.int64)
for _fmt, _least in _MIN_LEN.items():
    _RECORD_MIN[_fmt if _fmt < 8 else _fmt - 993] = _least
_RECORD_SLOT = np.zeros(1009, np.int64)  # flow record format (clipped at 1008) -> its slot in _RECORD_MIN
_RECORD_SLOT[:8] = np.arange(8)
_RECORD_SLOT[1001:1008] = np.arange(8, 15)
_SAMPLE_FIXED = np.array([0, 32, 12, 44, 16], np.int64)  # flow, counters, expanded flow, expanded counters
_ADDRESS_WORDS = np.array([0, 1, 4, 0], np.int64)  # agent address type (0 none, 1 IPv4, 2 IPv6) -> words
LOCAL_INTERFACE = 0x3FFFFFFF  # ifIndex value of a packet from or to the agent itself (compact encoding)
LOCAL_EXPANDED = 0xFFFFFFFF   # the same in the expanded encoding (sFlow v5 erratum; 0x3FFFFFFF also taken)

DATAGRAM_DTYPE = np.dtype([("agent", ADDR), ("sub_agent", "<u4"), ("sequence", "<u4"), ("uptime_ms", "<u4"),
                           ("samples", "<u4"), ("flows", "<u4"), ("status", "u1")])
IF_COUNTER_FIELDS = sflow_records.IF_COUNTER_FIELDS  # the counters' columns (name, word, words)
PAD = 512  # readable bytes needed after the last datagram: reads of rejected positions stay in the buffer


class SflowResult:
    """What ``decode`` found in a group of datagrams.

    - ``datagrams``: DATAGRAM_DTYPE per datagram (status, see REASONS; header fields where decoded;
      ``flows`` = flow samples decoded). Sequence numbers count datagrams per (agent, sub_agent).
    - ``columns``: flow-schema columns, one row per flow sample; ``flow_datagram`` its datagram.
    - ``samples``: per flow sample: ``datagram``, ``source_id`` (type << 24 | index), ``sequence``,
      ``sample_pool``, ``drops`` -- sample sequence numbers count samples per source.
    - ``counters``: IF_COUNTER_FIELDS columns plus ``datagram``, ``source_id``, ``sequence``.
    - ``notes``: reason -> datagram index of each occurrence, for what was decoded but is unusual.
    """

    __slots__ = ("datagrams", "columns", "flow_datagram", "samples", "counters", "notes")

    def __init__(self, datagrams, columns, flow_datagram, samples, counters, notes):
        self.datagrams = datagrams
        self.columns = columns
        self.flow_datagram = flow_datagram
        self.samples = samples
        self.counters = counters
        self.notes = notes

    def batch(self) -> FlowBatch:
        hints = {"flow_version": HINT_CONST}
        agents = np.ascontiguousarray(self.datagrams["agent"]).view("<u8").reshape(-1, 2)
        agents = agents[self.datagrams["status"] == OK]
        if len(agents) and (agents == agents[0]).all():  # compared as two 64-bit words: V16 compares are slow
            hints["exporter"] = HINT_CONST
        return FlowBatch(self.columns, len(self.flow_datagram), hints=hints)


def join(datagrams) -> tuple[bytes, np.ndarray, np.ndarray]:
    """(buffer, offsets, lengths) of datagrams copied back to back, each at a 4-aligned offset."""
    lengths = np.fromiter(map(len, datagrams), dtype=np.int64, count=len(datagrams))
    if (lengths & 3).any():
        datagrams = [d if len(d) & 3 == 0 else bytes(d) + bytes(4 - (len(d) & 3)) for d in datagrams]
    sizes = (lengths + 3) & ~3
    offsets = np.cumsum(sizes) - sizes
    return b"".join([*datagrams, bytes(PAD)]), offsets, lengths


def decode_datagrams(datagrams, now_ms: int) -> SflowResult:
    """``decode`` of a list of bytes-like datagrams."""
    return decode(*join(datagrams), now_ms)


def _walk(w: np.ndarray, owner: np.ndarray, pos: np.ndarray, end: np.ndarray, count: np.ndarray,
          bad: np.ndarray, truncated: int):
    """The (format, length) items of many XDR lists at once: list i starts at byte ``pos[i]``, has
    ``count[i]`` items and must end by ``end[i]``; ``owner[i]`` is its datagram. Returns (list
    index, format, data byte offset, data length) per item, in wave order (the k-th items of all
    lists before the (k+1)-th). A list running past its end sets ``bad[owner]`` = ``truncated``."""
    live = np.flatnonzero(count > 0)
    if len(live) == len(count):  # every list has items: the usual first wave, no gathers
        p, stop, left = pos, end, count
    else:
        p, stop, left = pos[live], end[live], count[live]
    lists, fmts, starts, lens = [], [], [], []
    while len(live):
        q = p >> 2
        fmt = w[q]  # p <= stop: both words are inside the padded buffer
        length = w[q + 1].astype(np.int64)
        after = p + 8 + length
        ok = ((length & 3) == 0) & (after <= stop)  # (so the item's own header fits too)
        left = left - 1  # items after this one
        more = left > 0
        if ok.all():  # the usual wave: no copies
            lists.append(live)
            fmts.append(fmt)
            starts.append(p + 8)
            lens.append(length)
        else:
            wrong = owner[live[~ok]]
            bad[wrong] = np.where(bad[wrong] == OK, truncated, bad[wrong])
            lists.append(live[ok])
            fmts.append(fmt[ok])
            starts.append(p[ok] + 8)
            lens.append(length[ok])
            more &= ok
        if more.all():  # every list goes on (lists of equal length): carried as they are
            p = after
        else:
            live, p, stop, left = live[more], after[more], stop[more], left[more]
    if not lists:
        e = np.zeros(0, np.int64)
        return e, e, e, e
    return (np.concatenate(lists), np.concatenate(fmts).astype(np.int64), np.concatenate(starts),
            np.concatenate(lens))


def decode(buf, offsets: np.ndarray, lengths: np.ndarray, now_ms: int) -> SflowResult:
    """Decode the datagrams ``buf[offsets[i]:offsets[i] + lengths[i]]``.

    Every offset must be a multiple of 4 and ``buf`` must have PAD readable bytes after the last
    datagram (``join`` makes such a buffer).
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if (offsets & 3).any():
        raise ValueError("sFlow datagrams must start at 4-aligned offsets (see join)")
    w = np.frombuffer(buf, dtype=">u4", count=len(buf) // 4)
    n = len(offsets)
    dg = np.zeros(n, DATAGRAM_DTYPE)
    status = np.zeros(n, np.uint8)
    end = offsets + lengths
    base = offsets >> 2

    # -- datagram header: version, agent address (type 1: 4 bytes, 2: 16, 0: none), sub-agent, ...
    status[lengths < 24] = TRUNCATED_HEADER
    head = np.where(status == OK, base, 0)
    status[(status == OK) & (w[head] != VERSION)] = BAD_VERSION
    atype = w[head + 1].astype(np.int64)
    status[(status == OK) & (atype > 2)] = BAD_AGENT_ADDRESS
    addr_words = _ADDRESS_WORDS[np.minimum(atype, 3)]
    hlen = 24 + addr_words * 4
    status[(status == OK) & (hlen > lengths)] = TRUNCATED_HEADER
    good = status == OK
    h = np.where(good, base + 2 + addr_words, 0)
    sub_agent = np.where(good, w[h], 0).astype("<u4")
    dg["sub_agent"] = sub_agent
    dg["sequence"] = np.where(good, w[h + 1], 0)
    dg["uptime_ms"] = np.where(good, w[h + 2], 0)
    nsamples = np.where(good, w[h + 3], 0).astype(np.int64)
    status[good & (nsamples > (lengths - hlen) // 8)] = BAD_SAMPLE_COUNT
    agent = np.zeros((n, 16), np.uint8)
    u8 = np.frombuffer(buf, dtype=np.uint8)
    r4 = np.flatnonzero(good & (atype == 1))
    if len(r4):
        agent[r4, 10:12] = 0xFF
        agent[r4, 12:] = u8[(offsets[r4] + 8)[:, None] + np.arange(4)]
    r6 = np.flatnonzero(good & (atype == 2))
    if len(r6):
        agent[r6] = u8[(offsets[r6] + 8)[:, None] + np.arange(16)]
    agent = agent.view(ADDR).reshape(n)  # flows' exporter column is gathered from this contiguous copy
    dg["agent"] = agent
    dg["samples"] = nsamples

    # -- samples, then the records of flow and counter samples
    s_list, s_fmt, s_at, s_len = _walk(w, np.arange(n), offsets + hlen, end,
                                       np.where(status == OK, nsamples, 0), status, TRUNCATED_SAMPLE)
    order = np.argsort(s_at, kind="stable")  # datagram order, then sample order (waves interleave them)
    s_dg, s_fmt, s_at, s_len = s_list[order], s_fmt[order], s_at[order], s_len[order]
    fixed = _SAMPLE_FIXED[np.where(s_fmt < len(_SAMPLE_FIXED), s_fmt, 0)]
    known = fixed > 0
    short = known & (s_len < fixed)
    status[s_dg[short]] = np.where(status[s_dg[short]] == OK, SHORT_SAMPLE, status[s_dg[short]])
    known &= ~short
    sw = np.where(known, s_at >> 2, 0)
    nrec = np.where(known, w[sw + (fixed >> 2) - 1], 0).astype(np.int64)
    too_many = known & (nrec > (s_len - fixed) // 8)
    status[s_dg[too_many]] = np.where(status[s_dg[too_many]] == OK, BAD_RECORD_COUNT, status[s_dg[too_many]])
    nrec[too_many] = 0
    r_smp, r_fmt, r_at, r_len = _walk(w, s_dg, s_at + fixed, s_at + s_len, nrec, status, TRUNCATED_RECORD)
    r_sfmt = s_fmt[r_smp]
    is_flow_rec = (r_sfmt == FLOW_SAMPLE) | (r_sfmt == EXPANDED_FLOW_SAMPLE)
    slot = _RECORD_SLOT[np.minimum(r_fmt, len(_RECORD_SLOT) - 1)]
    r_fmt_min = np.where(is_flow_rec, _RECORD_MIN[slot], np.where(r_fmt == IF_COUNTERS, IF_COUNTERS_LEN, 0))
    short = r_len < r_fmt_min
    raw = is_flow_rec & (r_fmt == RAW_HEADER) & ~short
    raw_idx = np.flatnonzero(raw)
    over = w[(r_at[raw_idx] >> 2) + 3] > r_len[raw_idx] - 16  # header length past its record
    if over.any():
        short[raw_idx[over]] = True
    status[s_dg[r_smp[short]]] = np.where(status[s_dg[r_smp[short]]] == OK, SHORT_RECORD,
                                          status[s_dg[r_smp[short]]])

    notes: dict[str, list] = {}
    dg_ok = status == OK
    s_ok = dg_ok[s_dg]
    other = s_ok & (fixed == 0)
    _note(notes, "sample_format_unknown", s_dg[other])
    flows = s_ok & ((s_fmt == FLOW_SAMPLE) | (s_fmt == EXPANDED_FLOW_SAMPLE))
    f_idx = np.flatnonzero(flows)   # sample index of each flow
    recs = (r_smp, r_fmt, r_at, r_len, is_flow_rec, r_fmt_min > 0)
    if not dg_ok.all():  # the records of decoded datagrams only
        keep = dg_ok[s_dg[r_smp]]
        recs = tuple(a[keep] for a in recs)
    cols, samples = _flows(w, u8, s_fmt, s_at, s_dg, f_idx, *recs, agent, sub_agent, now_ms, notes)
    counters = sflow_records.counters(w, s_fmt, s_at, s_dg, *recs[:3])
    flow_dg = s_dg[f_idx]
    dg["flows"] = np.bincount(flow_dg, minlength=n)
    dg["status"] = status
    return SflowResult(dg, cols, flow_dg, samples, counters,
                       {k: np.concatenate(v) for k, v in notes.items()})


def _note(notes: dict, reason: str, datagrams: np.ndarray) -> None:
    if len(datagrams):
        notes.setdefault(reason, []).append(np.asarray(datagrams, np.int64))


_NONE = np.zeros(0, np.int64)


def _first(flow_records: tuple, fmt: int) -> tuple[np.ndarray, np.ndarray]:
    """(flow rows, record indices) of the first record of format ``fmt`` of each flow;
    ``flow_records`` = (record index, format, flow row) of the flow records."""
    rec, rec_fmt, rec_row = flow_records
    want = rec_fmt == fmt
    if not want.any():
        return _NONE, _NONE
    idx, rows = rec[want], rec_row[want]
    if len(rows) > 1 and not (rows[1:] > rows[:-1]).all():  # a record type twice in a sample, or out of order
        rows, first = np.unique(rows, return_index=True)
        idx = idx[first]
    return rows, idx


def _flows(w, u8, s_fmt, s_at, s_dg, f_idx, r_smp, r_fmt, r_at, r_len, is_flow_rec, r_known, agent, sub_agent,
           now_ms, notes):
    nf = len(f_idx)
    slot = np.full(len(s_fmt), -1, np.int64)
    slot[f_idx] = np.arange(nf)
    sw = s_at[f_idx] >> 2
    expanded = s_fmt[f_idx] == EXPANDED_FLOW_SAMPLE
    # flow sample: seq, source_id, rate, pool, drops, input, output, nrec
    # expanded:    seq, src type, src index, rate, pool, drops, in fmt, in value, out fmt, out value, nrec
    if expanded.any():
        source_id = np.where(expanded, (w[sw + 1] << 24) | (w[sw + 2] & 0xFFFFFF), w[sw + 1]).astype(np.uint32)
        x = expanded.astype(np.int64)
        in_fmt = np.where(expanded, w[sw + 6], w[sw + 5] >> 30)
        in_val = np.where(expanded, w[sw + 7], w[sw + 5] & 0x3FFFFFFF)
        out_fmt = np.where(expanded, w[sw + 8], w[sw + 6] >> 30)
        out_val = np.where(expanded, w[sw + 9], w[sw + 6] & 0x3FFFFFFF)
    else:  # compact samples only, the usual case
        source_id, x = w[sw + 1], 0
        inp, out = w[sw + 5], w[sw + 6]
        in_fmt, in_val, out_fmt, out_val = inp >> 30, inp & 0x3FFFFFFF, out >> 30, out & 0x3FFFFFFF
    rate = w[sw + 2 + x]
    flow_dg = s_dg[f_idx]
    _note(notes, "discarded", flow_dg[out_fmt == 1])
    _note(notes, "multiple_outputs", flow_dg[out_fmt == 2])
    samples = {"datagram": flow_dg, "source_id": source_id, "sequence": w[sw].astype(np.uint32),
               "sample_pool": w[sw + 3 + x].astype(np.uint32), "drops": w[sw + 4 + x].astype(np.uint32)}
    cols = {
        "time_start": np.full(nf, now_ms, np.int64),
        "time_end": np.full(nf, now_ms, np.int64),
        "exporter": agent[flow_dg],
        "observation_domain": sub_agent[flow_dg],
        "flow_version": np.full(nf, FLOW_VERSION, np.uint8),
        "sampling_rate": rate.astype(np.uint32),
        "packets": np.ones(nf, np.uint64),
        "bytes": np.zeros(nf, np.uint64),
        "input_if": np.where((in_fmt == 0) & (in_val != LOCAL_INTERFACE) & (in_val != LOCAL_EXPANDED),
                             in_val, 0).astype(np.uint32),
        "output_if": np.where((out_fmt == 0) & (out_val != LOCAL_INTERFACE) & (out_val != LOCAL_EXPANDED),
                              out_val, 0).astype(np.uint32),
    }
    for name, dt in (("src_addr", ADDR), ("dst_addr", ADDR), ("next_hop", ADDR), ("src_port", np.uint16),
                     ("dst_port", np.uint16), ("protocol", np.uint8), ("tcp_flags", np.uint8), ("tos", np.uint8),
                     ("icmp_type", np.uint8), ("icmp_code", np.uint8), ("vlan", np.uint16),
                     ("src_as", np.uint32), ("dst_as", np.uint32), ("src_mask", np.uint8), ("dst_mask", np.uint8)):
        cols[name] = np.zeros(nf, dt)
    if not nf:
        return cols, samples
    have_ip = np.zeros(nf, bool)
    have_bytes = np.zeros(nf, bool)
    flow_rec = is_flow_rec & (slot[r_smp] >= 0)
    _note(notes, "record_format_unknown", s_dg[r_smp[flow_rec & ~r_known]])
    flow_rec_idx = np.flatnonzero(flow_rec)  # each record type's rows are picked among these
    flow_records = (flow_rec_idx, r_fmt[flow_rec_idx], slot[r_smp[flow_rec_idx]])

    # raw packet header: protocol, frame_length, stripped, header length, header bytes
    rows, rec = _first(flow_records, RAW_HEADER)
    if len(rows):
        rw = r_at[rec] >> 2
        frame = w[rw + 1].astype(np.uint64)
        cols["bytes"][rows] = frame
        have_bytes[rows] = True
        parsed = sflow_packet.parse_headers(
            sflow_packet.Headers(u8, r_at[rec] + 16, w[rw + 3].astype(np.int64)), w[rw])
        ok = parsed.pop("has_ip")
        _note(notes, "header_without_ip", flow_dg[rows[~ok]])
        every = len(rows) == nf  # rows are sorted and unique: all flows, in order
        for name, values in parsed.items():
            if every:
                cols[name] = values
            else:
                cols[name][rows] = values
        have_ip[rows] = ok
    # sampled Ethernet: length, src mac, dst mac, type -- only the frame length is kept
    rows, rec = _first(flow_records, SAMPLED_ETHERNET)
    need = ~have_bytes[rows]
    cols["bytes"][rows[need]] = w[(r_at[rec] >> 2)[need]]
    have_bytes[rows[need]] = True
    # sampled IPv4 / IPv6: the agent's own decode, preferred to a header's
    for fmt, alen in ((SAMPLED_IPV4, 4), (SAMPLED_IPV6, 16)):
        rows, rec = _first(flow_records, fmt)
        if not len(rows):
            continue
        at = r_at[rec]
        rw = at >> 2
        need = ~have_bytes[rows]
        cols["bytes"][rows[need]] = w[rw[need]]
        have_bytes[rows[need]] = True
        a = np.zeros((len(rows), 2, 16), np.uint8)
        raw = u8[(at + 8)[:, None] + np.arange(2 * alen)].reshape(-1, 2, alen)
        if alen == 4:
            a[:, :, 10:12] = 0xFF
        a[:, :, 16 - alen:] = raw
        cols["src_addr"][rows] = a[:, 0].copy().view(ADDR).reshape(-1)
        cols["dst_addr"][rows] = a[:, 1].copy().view(ADDR).reshape(-1)
        pw = rw + 2 + alen // 2     # src_port, dst_port, tcp_flags, tos/priority
        cols["protocol"][rows] = w[rw + 1] & 0xFF
        cols["src_port"][rows] = w[pw] & 0xFFFF
        cols["dst_port"][rows] = w[pw + 1] & 0xFFFF
        cols["tcp_flags"][rows] = w[pw + 2] & 0xFF
        cols["tos"][rows] = w[pw + 3] & 0xFF
        have_ip[rows] = True
    _note(notes, "sample_without_ip", flow_dg[~have_ip])
    # extended switch: src vlan, src priority, dst vlan, dst priority
    rows, rec = _first(flow_records, EXTENDED_SWITCH)
    vlan = w[r_at[rec] >> 2]
    valid = vlan < 4096
    if valid.all():
        cols["vlan"][rows] = vlan
    else:
        cols["vlan"][rows[valid]] = vlan[valid]
    # extended router: next hop, src mask, dst mask
    rows, rec = _first(flow_records, EXTENDED_ROUTER)
    if len(rows):
        hop, used = sflow_records.address(w, u8, r_at[rec])
        fit = used + 8 <= r_len[rec]
        rows, rec, hop, used = rows[fit], rec[fit], hop[fit], used[fit]
        cols["next_hop"][rows] = hop
        cols["src_mask"][rows] = np.minimum(w[(r_at[rec] + used) >> 2], 128)
        cols["dst_mask"][rows] = np.minimum(w[(r_at[rec] + used + 4) >> 2], 128)
        have_hop = np.zeros(nf, bool)
        have_hop[rows] = True
    else:
        have_hop = np.zeros(nf, bool)
    rows, rec = _first(flow_records, EXTENDED_GATEWAY)
    if len(rows):
        sflow_records.gateways(w, u8, rows, r_at[rec], r_len[rec], cols, have_hop, flow_dg, notes)
    return cols, samples
