"""Mutations of real export datagrams for the fuzz driver (bench/fuzz.py): pure, seeded, no decoder.

A ``Mutator`` holds one protocol's corpus (the datagrams of each capture in tests/data) and a
``random.Random``; ``mutate`` returns a damaged copy of a datagram. The mutations know just enough
of the formats to aim at the fields decoders trust: the v5/v9 count and the IPFIX message length in
the header, each v9/IPFIX set's length, a template record's id and field count, sFlow's 32-bit
length and count words; and they splice whole sets (templates included) from another capture's
datagram, so data sets meet templates they were not made for. The rest is blind: bit flips, byte
inserts and deletes, zero runs, truncation, tails spliced from another datagram.
"""
from __future__ import annotations

import random
import struct

# values that sit on the edges of 16- and 32-bit length and count checks
EDGE16 = (0, 1, 2, 3, 4, 5, 8, 16, 20, 255, 256, 257, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
EDGE32 = (0, 1, 2, 3, 4, 5, 8, 12, 16, 0xFF, 0x100, 0xFFFF, 0x10000, 0x3FFFFFFF, 0x40000000, 0x7FFFFFFF,
          0x80000000, 0xFFFFFFFC, 0xFFFFFFFF)
# header length before the first set (v9, IPFIX); v5 and sFlow have no sets
SET_START = {"v9": 20, "ipfix": 16}
TEMPLATE_SETS = {"v9": (0, 1), "ipfix": (2, 3)}

KINDS = ("flip", "insert", "delete", "length", "count", "splice_set", "template_field", "truncate", "zero_run",
         "splice_tail")


def set_spans(dg: bytes, protocol: str) -> list[tuple[int, int]]:
    """(offset, length) of each well-formed set of a v9/IPFIX datagram, walked by the set lengths."""
    pos = SET_START.get(protocol)
    if pos is None:
        return []
    out = []
    while pos + 4 <= len(dg):
        length = struct.unpack_from(">H", dg, pos + 2)[0]
        if length < 4 or pos + length > len(dg):
            break
        out.append((pos, length))
        pos += length
    return out


class Mutator:
    """Seeded mutations of one protocol's corpus (``protocol``: v5, v9, ipfix or sflow)."""

    def __init__(self, protocol: str, captures: list[list[bytes]], rng: random.Random):
        self.protocol = protocol
        self.captures = captures
        self.rng = rng
        self._spans: dict[int, list[tuple[int, int]]] = {}

    def spans(self, dg: bytes) -> list[tuple[int, int]]:
        s = self._spans.get(id(dg))
        if s is None:
            s = self._spans[id(dg)] = set_spans(dg, self.protocol)
        return s

    def other(self) -> bytes:
        cap = self.rng.choice(self.captures)
        return cap[self.rng.randrange(len(cap))]

    def mutate(self, dg: bytes) -> tuple[str, bytes]:
        """(kind, mutated copy of ``dg``); one to three mutations stacked, the first one's kind named."""
        rng = self.rng
        out = bytearray(dg)
        first = None
        for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):
            kind = rng.choice(KINDS)
            out = getattr(self, "_" + kind)(out, dg)
            first = first or kind
        return first, bytes(out)

    # -- blind ---------------------------------------------------------------------------------

    def _flip(self, out: bytearray, _dg) -> bytearray:
        if out:
            for _ in range(self.rng.randint(1, 8)):
                pos = self.rng.randrange(len(out) * 8)
                out[pos >> 3] ^= 1 << (pos & 7)
        return out

    def _insert(self, out: bytearray, _dg) -> bytearray:
        pos = self.rng.randint(0, len(out))
        n = self.rng.choice((1, 2, 4, self.rng.randint(1, 64)))
        out[pos:pos] = bytes(self.rng.getrandbits(8) for _ in range(n))
        return out

    def _delete(self, out: bytearray, _dg) -> bytearray:
        if out:
            pos = self.rng.randrange(len(out))
            del out[pos:pos + self.rng.choice((1, 2, 4, self.rng.randint(1, 64)))]
        return out

    def _truncate(self, out: bytearray, _dg) -> bytearray:
        return out[:self.rng.randint(0, len(out))]

    def _zero_run(self, out: bytearray, _dg) -> bytearray:
        pos = self.rng.randint(0, len(out))
        out[pos:pos + self.rng.randint(1, 64)] = bytes(self.rng.randint(1, 64))
        return out

    def _splice_tail(self, out: bytearray, _dg) -> bytearray:
        o = self.other()
        return out[:self.rng.randint(0, len(out))] + o[self.rng.randint(0, len(o)):]

    # -- aimed at fields -----------------------------------------------------------------------

    def _word16(self, out: bytearray, pos: int) -> None:
        if pos + 2 <= len(out):
            old = struct.unpack_from(">H", out, pos)[0]
            value = self.rng.choice(EDGE16 + ((old + self.rng.randint(-8, 8)) & 0xFFFF, len(out) & 0xFFFF))
            struct.pack_into(">H", out, pos, value)

    def _length(self, out: bytearray, dg) -> bytearray:
        """A length field: the IPFIX message length, a v9/IPFIX set length, an sFlow 32-bit word."""
        if self.protocol == "sflow":
            return self._sflow_word(out)
        spans = self.spans(dg)
        if self.protocol == "ipfix" and (not spans or self.rng.random() < 0.25):
            self._word16(out, 2)
        elif spans:
            self._word16(out, self.rng.choice(spans)[0] + 2)
        else:
            self._word16(out, 2)
        return out

    def _count(self, out: bytearray, dg) -> bytearray:
        """A count: the v5/v9 header count, a template's field count, an sFlow sample/record count."""
        if self.protocol == "sflow":
            return self._sflow_word(out)
        spans = [s for s in self.spans(dg) if s[1] >= 8 and self._is_template_set(dg, s[0])]
        if spans and self.rng.random() < 0.6:
            self._word16(out, self.rng.choice(spans)[0] + 6)  # first record's field count
        else:
            self._word16(out, 2)  # header count (v5, v9) or message length (IPFIX)
        return out

    def _template_field(self, out: bytearray, dg) -> bytearray:
        """One field spec of a template record: its type or its length (lengths steer every offset)."""
        spans = [s for s in self.spans(dg) if s[1] >= 12 and self._is_template_set(dg, s[0])]
        if not spans:
            return self._flip(out, dg)
        off, length = self.rng.choice(spans)
        field = off + 8 + 4 * self.rng.randrange((length - 8) // 4)
        self._word16(out, field + (2 if self.rng.random() < 0.6 else 0))
        return out

    def _splice_set(self, out: bytearray, dg) -> bytearray:
        """A set (often a template set) of another capture's datagram put in, replacing or before
        one of ours; the IPFIX message length follows half of the time."""
        o = self.other()
        theirs = self.spans(o)
        if not theirs:
            return self._splice_tail(out, dg)
        templates = [s for s in theirs if self._is_template_set(o, s[0])]
        off, length = self.rng.choice(templates if templates and self.rng.random() < 0.6 else theirs)
        piece = o[off:off + length]
        ours = set_spans(bytes(out), self.protocol)
        if ours and self.rng.random() < 0.5:
            at, n = self.rng.choice(ours)
            out[at:at + n] = piece
        else:
            at = self.rng.choice([a for a, _n in ours] + [len(out)]) if ours else min(len(out), SET_START[self.protocol])
            out[at:at] = piece
        if self.protocol == "ipfix" and len(out) >= 4 and self.rng.random() < 0.5:
            struct.pack_into(">H", out, 2, len(out) & 0xFFFF)
        return out

    def _is_template_set(self, dg, off: int) -> bool:
        return struct.unpack_from(">H", dg, off)[0] in TEMPLATE_SETS.get(self.protocol, ())

    def _sflow_word(self, out: bytearray) -> bytearray:
        if len(out) >= 4:
            pos = 4 * self.rng.randrange(len(out) // 4)
            old = struct.unpack_from(">I", out, pos)[0]
            value = self.rng.choice(EDGE32 + ((old + self.rng.randint(-8, 8)) & 0xFFFFFFFF, len(out)))
            struct.pack_into(">I", out, pos, value)
        return out
