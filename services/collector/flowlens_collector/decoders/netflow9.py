"""NetFlow v9 (RFC 3954): header and template / options-template FlowSets. Pure parsing.

A template is returned as a spec (version, template id, fields, options, scope count); the caller
compiles it only when it differs from the one it holds (refreshes are frequent).
"""
from __future__ import annotations

import struct


HEADER = struct.Struct(">HHIIII")  # version, count (a hint only), sysUptime, unix_secs, sequence, source id
HEADER_LEN = HEADER.size  # 20
TEMPLATE_SET, OPTIONS_SET = 0, 1
_HH = struct.Struct(">HH")
_HHH = struct.Struct(">HHH")
SCOPE_IE_BASE = 0x10000  # scope field types are not IEs: kept out of the IE space so they map to nothing


def parse_templates(body) -> list[tuple]:
    """Template FlowSet body -> [("define", spec) | ("error", reason)]."""
    out = []
    pos, end = 0, len(body)
    while pos + 4 <= end:
        tid, count = _HH.unpack_from(body, pos)
        pos += 4
        if count == 0 and tid == 0:
            break  # set padding
        if count == 0:
            out.append(("error", "zero_field_template"))
            break  # rest of the set is padding or garbage we cannot frame
        if pos + 4 * count > end:
            out.append(("error", "template_past_end"))
            break
        fields = [(*_HH.unpack_from(body, pos + 4 * i), 0) for i in range(count)]
        pos += 4 * count
        if tid < 256:
            out.append(("error", "bad_template_id"))
            continue
        out.append(("define", (9, tid, tuple(fields), False, 0)))
    return out


def parse_options_templates(body) -> list[tuple]:
    """Options Template FlowSet body (scope and option lengths in bytes) -> events."""
    out = []
    pos, end = 0, len(body)
    while pos + 6 <= end:
        tid, scope_len, opt_len = _HHH.unpack_from(body, pos)
        if tid == 0 and scope_len == 0 and opt_len == 0:
            break  # padding
        pos += 6
        if scope_len % 4 or opt_len % 4:
            out.append(("error", "bad_options_lengths"))
            break
        if scope_len + opt_len == 0:
            out.append(("error", "zero_field_template"))
            break
        if pos + scope_len + opt_len > end:
            out.append(("error", "template_past_end"))
            break
        scope = [_HH.unpack_from(body, pos + i) for i in range(0, scope_len, 4)]
        pos += scope_len
        opts = [_HH.unpack_from(body, pos + i) for i in range(0, opt_len, 4)]
        pos += opt_len
        if tid < 256:
            out.append(("error", "bad_template_id"))
            continue
        fields = [(SCOPE_IE_BASE + t, length, 0) for t, length in scope] + [(t, length, 0) for t, length in opts]
        out.append(("define", (9, tid, tuple(fields), True, len(scope))))
    return out
