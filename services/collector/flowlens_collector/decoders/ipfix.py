"""IPFIX (RFC 7011): message header and (options) template sets, with withdrawals. Pure parsing."""
from __future__ import annotations

import struct


HEADER = struct.Struct(">HHIII")  # version, length, export time (s), sequence (data records), domain
HEADER_LEN = HEADER.size  # 16
TEMPLATE_SET, OPTIONS_SET = 2, 3
_HH = struct.Struct(">HH")
_HHH = struct.Struct(">HHH")
_I = struct.Struct(">I")


def _fields(body, pos: int, end: int, count: int):
    """count field specifiers from pos -> (fields, new pos) or (None, pos) when they run past the end."""
    fields = []
    for _ in range(count):
        if pos + 4 > end:
            return None, pos
        ie, length = _HH.unpack_from(body, pos)
        pos += 4
        pen = 0
        if ie & 0x8000:
            if pos + 4 > end:
                return None, pos
            pen = _I.unpack_from(body, pos)[0]
            pos += 4
            ie &= 0x7FFF
        fields.append((ie, length, pen))
    return fields, pos


def parse_templates(body, options: bool) -> list[tuple]:
    """(Options) Template Set body -> [("define", spec) | ("withdraw", tid) | ("withdraw_all",) | ("error", r)]."""
    out = []
    pos, end = 0, len(body)
    head = 6 if options else 4
    while pos + 4 <= end:
        tid, count = _HH.unpack_from(body, pos)
        if count == 0 and tid == 0:
            break  # set padding
        if count == 0:
            # Template Withdrawal: id 2 (or 3) withdraws every template of its kind in the domain
            out.append(("withdraw_all",) if tid in (TEMPLATE_SET, OPTIONS_SET) else ("withdraw", tid))
            pos += 4
            continue
        if pos + head > end:
            out.append(("error", "template_past_end"))
            break
        scope_count = _HHH.unpack_from(body, pos)[2] if options else 0
        pos += head
        fields, pos = _fields(body, pos, end, count)
        if fields is None:
            out.append(("error", "template_past_end"))
            break
        if tid < 256:
            out.append(("error", "bad_template_id"))
            continue
        if options and (scope_count == 0 or scope_count > count):
            out.append(("error", "bad_scope_count"))
            continue
        out.append(("define", (10, tid, tuple(fields), options, scope_count)))
    return out
