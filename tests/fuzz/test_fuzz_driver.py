"""The fuzz driver (bench/fuzz.py) at a small share: ``make test`` runs FLOWLENS_FUZZ_CASES (5,000)
mutated corpus datagrams through each decoder; ``make fuzz`` runs the driver itself at 1,000,000.

Also checked here: that the driver sees what it is for. A decoder with a planted bug (an exception
escaping ``decode``, or one caught inside it on its internal_error path) is found, counted by type,
reproduced by rerunning its chunk, and its reproducer file names the failing group.
"""
from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from bench import fuzz
from flowlens_collector import v5_run
from flowlens_collector.decode import Decoder

CASES = int(os.environ.get("FLOWLENS_FUZZ_CASES", "5000"))
CORPUS = fuzz.load_corpus()


def test_the_corpus_has_every_protocol():
    sizes = {p: len(caps) for p, caps in CORPUS.items()}
    assert all(n >= 10 for n in sizes.values()), sizes


@pytest.mark.parametrize("protocol", fuzz.PROTOCOLS)
def test_mutated_datagrams_find_nothing(protocol):
    r = fuzz.run_chunk(protocol, seed=11, chunk=0, cases=CASES, corpus=CORPUS)
    assert r["findings"] == {}, (r["findings"], {k: v["rerun"] for k, v in r["reproducers"].items()})
    assert r["cases"] == CASES and r["clean"] > 0
    # the mutations reach the error paths, and enough survive that flows come out
    assert sum(r["decode_errors"].values()) > CASES // 10, r["decode_errors"]
    assert r["flows"] > 0


class EscapingBug(Decoder):
    """Raises out of decode for any group holding a datagram of a length that is 3 mod 7."""

    def decode(self, datagrams, sources, now_ms, layout=None):
        if any(len(d) % 7 == 3 for d in datagrams):
            raise IndexError("planted")
        return super().decode(datagrams, sources, now_ms, layout)


def test_an_escaping_exception_is_found_reproduced_and_saved(tmp_path):
    first = fuzz.run_chunk("v5", seed=3, chunk=2, cases=300, corpus=CORPUS, make_decoder=EscapingBug)
    assert first["findings"].get("escaped:IndexError", 0) > 0, first["findings"]
    again = fuzz.run_chunk("v5", seed=3, chunk=2, cases=300, corpus=CORPUS, make_decoder=EscapingBug)
    assert again["findings"] == first["findings"]  # a chunk is reproducible from its seed
    rep = first["reproducers"]["escaped:IndexError"]
    assert any(len(bytes.fromhex(h)) % 7 == 3 for h in rep["datagrams"])
    assert "--seed 3 --chunk 2 --cases 300" in rep["rerun"]
    assert "IndexError: planted" in rep["traceback"]
    result = dict(first, protocol="v5")
    (path,) = fuzz.save_reproducers(result, tmp_path)
    assert json.loads(open(path).read())["group"] == rep["group"]


def test_an_exception_caught_inside_the_decoder_is_found(monkeypatch):
    real = v5_run.decode_run

    def planted(acct, blob, offsets, lengths, sources, now_ms):
        if (np.asarray(lengths) % 5 == 1).any():
            raise ZeroDivisionError("planted")
        return real(acct, blob, offsets, lengths, sources, now_ms)

    monkeypatch.setattr(v5_run, "decode_run", planted)
    r = fuzz.run_chunk("v5", seed=3, chunk=0, cases=300, corpus=CORPUS)
    assert r["findings"].get("caught:ZeroDivisionError", 0) > 0, r["findings"]
    assert r["decode_errors"].get("internal_error", 0) > 0


def test_broken_columns_are_named():
    good = np.zeros(3, dtype=np.uint64)
    assert fuzz.check_batch(SimpleNamespace(count=3, columns={"bytes": good})) is None
    assert fuzz.check_batch(SimpleNamespace(count=4, columns={"bytes": good})) == "invariant:column_length:bytes"
    wrong = np.zeros(3, dtype=np.int32)
    assert fuzz.check_batch(SimpleNamespace(count=3, columns={"bytes": wrong})) == "invariant:column_dtype:bytes"
