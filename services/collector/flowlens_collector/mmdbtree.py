"""The networks of a MaxMind DB file, read from its search tree with numpy, a level at a time.

A MaxMind DB (MaxMind-DB-spec.md) starts with a binary search tree of ``node_count`` nodes, each
two records of ``record_size`` bits (24, 28 or 32): a record below node_count points to a node,
equal to it means "no data", above it points into the data section. Walking the tree breadth first
with arrays gives every network and its data pointer in a fraction of a second, where iterating
the maxminddb reader decodes every network's record in Python (about 40,000 networks a second:
half a minute for a full GeoLite2 database). Each distinct record is then decoded once, by asking
the reader for an address of a network that points to it.

IPv4 sits at ::/96 of an IPv6 tree, and MaxMind aliases ::ffff:0:0/96 and 2002::/16 (6to4) to it;
the IPv6 walk does not enter those aliases (they would copy every IPv4 network into the IPv6
table; the collector looks IPv4-mapped addresses up as IPv4, and 6to4 ones not at all), stops at
/64 (the table keys IPv6 by its top 64 bits) and reports the nodes still open there as /64s
holding longer networks.
"""
from __future__ import annotations

import numpy as np

_NODE_BYTES = {24: 6, 28: 7, 32: 8}


class TreeError(ValueError):
    """The file's search tree is not what its metadata says."""


def read_records(path: str, node_count: int, record_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The left and right record of every node, as uint32 arrays."""
    width = _NODE_BYTES.get(record_size)
    if width is None:
        raise TreeError(f"record size {record_size} is not 24, 28 or 32")
    raw = np.fromfile(path, dtype=np.uint8, count=node_count * width)
    if len(raw) != node_count * width:
        raise TreeError(f"the file is shorter than its {node_count:,}-node search tree")
    nodes = raw.reshape(node_count, width)

    def byte(i: int) -> np.ndarray:  # one byte of every node, widened alone: 4 bytes a node at a time
        return nodes[:, i].astype(np.uint32)

    if record_size == 24:
        left = byte(0) << 16 | byte(1) << 8 | byte(2)
        right = byte(3) << 16 | byte(4) << 8 | byte(5)
    elif record_size == 28:
        left = (byte(3) & 0xF0) << 20 | byte(0) << 16 | byte(1) << 8 | byte(2)
        right = (byte(3) & 0x0F) << 24 | byte(4) << 16 | byte(5) << 8 | byte(6)
    else:
        left = byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3)
        right = byte(4) << 24 | byte(5) << 16 | byte(6) << 8 | byte(7)
    return left, right


def walk(left: np.ndarray, right: np.ndarray, node_count: int, start: int, bits: int, skip: int = -1):
    """Breadth first from record ``start`` (a node, or a record standing for the whole space) down
    ``bits`` levels, not into node ``skip`` (IPv4's root, where the IPv6 walk meets MaxMind's
    aliases of IPv4). Returns (prefix starts as uint64 left-aligned in ``bits`` bits, prefix
    lengths, data records) of every network with data, and the prefixes of the nodes still open at
    the end."""
    found_prefix, found_len, found_rec = [], [], []
    if start >= node_count:
        if start > node_count:
            return np.zeros(1, np.uint64), np.zeros(1, np.uint8), np.array([start], np.uint32), np.zeros(0, np.uint64)
        return np.zeros(0, np.uint64), np.zeros(0, np.uint8), np.zeros(0, np.uint32), np.zeros(0, np.uint64)
    nodes = np.array([start], np.uint32)
    prefixes = np.zeros(1, np.uint64)
    for depth in range(bits):
        if not len(nodes):
            break
        recs = np.concatenate([left[nodes], right[nodes]])
        pref = np.concatenate([prefixes, prefixes | np.uint64(1 << (bits - 1 - depth))])
        data = recs > node_count
        if data.any():
            found_prefix.append(pref[data])
            found_rec.append(recs[data])
            found_len.append(np.full(int(data.sum()), depth + 1, np.uint8))
        inner = recs < node_count
        if skip >= 0:
            inner &= recs != skip
        nodes, prefixes = recs[inner], pref[inner]
        if len(nodes) > 2 * node_count:  # a cycle: a well-formed tree visits each node once per alias
            raise TreeError("the search tree loops")
    if not found_prefix:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint8), np.zeros(0, np.uint32), prefixes
    return np.concatenate(found_prefix), np.concatenate(found_len), np.concatenate(found_rec), prefixes


def ipv4_start(left: np.ndarray, right: np.ndarray, node_count: int, ip_version: int) -> int:
    """The record at ::/96 (IPv4's root in an IPv6 tree), or the root of an IPv4 tree."""
    node = 0
    if ip_version == 4:
        return node
    for _ in range(96):
        if node >= node_count:
            break
        node = int(left[node])
    return node
