"""Decoder inputs the fuzz driver (bench/fuzz.py) found to fail, kept as plain regression tests."""
from __future__ import annotations

import struct

import pytest

from flowlens_collector.decode import Decoder

SOURCE = ("192.0.2.8", 2055)
NOW = 1_700_000_000_000


def _v9(template_fields, records: bytes) -> bytes:
    tmpl = struct.pack(">HH", 257, len(template_fields)) + b"".join(struct.pack(">HH", ie, n) for ie, n in template_fields)
    sets = struct.pack(">HH", 0, 4 + len(tmpl)) + tmpl + struct.pack(">HH", 257, 4 + len(records)) + records
    return struct.pack(">HHIIII", 9, 2, 1000, NOW // 1000, 1, 1) + sets


def _ipfix(template_fields, records: bytes) -> bytes:
    tmpl = struct.pack(">HH", 257, len(template_fields)) + b"".join(struct.pack(">HH", ie, n) for ie, n in template_fields)
    sets = struct.pack(">HH", 2, 4 + len(tmpl)) + tmpl + struct.pack(">HH", 257, 4 + len(records)) + records
    return struct.pack(">HHIII", 10, 16 + len(sets), NOW // 1000, 1, 1) + sets


@pytest.mark.parametrize("build", [_v9, _ipfix])
def test_a_variable_length_template_reading_no_field_decodes_its_records(build):
    # fuzz v9 seed 1 chunk 28: engine type and id (read by no column) and one variable-length field.
    # Its projection had 0 bytes a record against a 1-byte record dtype: "buffer is smaller than
    # requested size" in materialise, counted as internal_error and the group's flows lost.
    fields = [(38, 1), (39, 1), (152, 0xFFFF)]
    records = b"\x01\x02\x00" + b"\x01\x02\x03abc"  # the variable field empty, then 3 bytes long
    dec = Decoder()
    batch = dec.decode([build(fields, records)], [SOURCE], NOW)
    errors = {k: v for s in dec.exporter_stats() for k, v in s["decode_errors"].items()}
    assert errors == {}
    assert batch.count == 2
    assert all(len(col) == 2 for col in batch.columns.values())
