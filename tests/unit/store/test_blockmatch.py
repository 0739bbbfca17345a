"""One host's rows found on the encoded address columns: the same rows as decoding and comparing."""
from __future__ import annotations

import numpy as np
import pytest

from flowlens_store.blockmatch import host_rows
from flowlens_store.blocks import BLOCK_DTYPES, Options, decode_block, encode_columns
from flowmodel import addr
from flowmodel.schema import ADDR

OPTIONS = [Options(), Options(codec="lz4", dict_addresses=False), Options(codec="raw", shuffle=False),
           Options(narrow=False), Options(dict_addresses=True, codec="raw")]


def _block(seed: int, n: int, shape: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = {name: np.zeros(n, dt) for name, dt in BLOCK_DTYPES.items() if dt != ADDR}
    cols["time_end"] = np.sort(rng.integers(0, 1 << 40, n)).astype(np.int64)
    cols["time_start"] = cols["time_end"] - 5
    cols["seq"] = np.arange(n, dtype=np.int64)
    if shape == "const":
        src = np.repeat(addr.ipv4_column(np.array([0x0A000001], np.uint32)), n)
    elif shape == "few":  # a handful of hosts: the codec picks the address dictionary
        src = addr.ipv4_column(rng.choice(np.array([0x0A000001, 0x0A000002, 0xC0A80001], np.uint32), n))
    elif shape == "mixed":  # IPv6 beside IPv4: both halves vary
        v6 = rng.integers(0, 256, (n, 16), dtype=np.uint8)
        v6[:, :4] = [0x20, 0x01, 0x0D, 0xB8]
        v4 = addr.ipv4_column(rng.integers(0x0A000000, 0x0A000040, n).astype(np.uint32))
        src = np.where(rng.random(n) < 0.3, v6.view(ADDR).reshape(n), v4)
    else:  # "ipv4": many hosts over a wide range
        src = addr.ipv4_column(rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32))
    cols["src_addr"] = src
    cols["dst_addr"] = src[::-1].copy()
    cols["exporter"] = np.repeat(addr.ipv4_column(np.array([0x7F000001], np.uint32)), n)
    cols["next_hop"] = np.zeros(n, ADDR)
    return cols


@pytest.mark.parametrize("options", OPTIONS,
                         ids=lambda o: f"{o.codec}-shuffle{o.shuffle}-narrow{o.narrow}-dict{o.dict_addresses}")
@pytest.mark.parametrize("shape", ["const", "few", "mixed", "ipv4"])
def test_host_rows_are_the_decoded_rows_equal_to_the_host(options, shape):
    n = 3000
    cols = _block(7, n, shape)
    blobs = encode_columns(cols, options)
    decoded = decode_block(blobs, ("src_addr", "dst_addr", "exporter"), n)
    rng = np.random.default_rng(1)
    present = [bytes(cols["src_addr"][i]) for i in rng.integers(0, n, 5)]
    absent = [bytes(addr.ipv4_column(np.array([0x0B000001], np.uint32))[0]),   # outside the block's range
              bytes(addr.ipv4_column(np.array([0x0A000003], np.uint32))[0]),   # inside it, not a row's
              bytes(16), b"\xff" * 16]
    matched = 0
    for host in present + absent:
        for name in ("src_addr", "dst_addr", "exporter"):
            got = host_rows(blobs, name, n, host)
            assert got is not None, (name, shape)
            want = decoded[name] == np.frombuffer(host, ADDR)[0]
            assert got.dtype == bool and got.shape == (n,)
            assert np.array_equal(got, want), (name, host.hex(), shape)
            matched += int(want.sum())
    assert matched > 0  # the hosts taken from the rows were found


def test_a_column_the_module_does_not_read_says_none():
    blobs = encode_columns(_block(3, 100, "ipv4"), Options())
    blob = bytearray(blobs["src_addr"])
    blob[4] = 2  # the first part's mode: DELTA (legal, never chosen for addresses by the codec)
    assert host_rows({"src_addr": bytes(blob)}, "src_addr", 100, bytes(16)) is None
