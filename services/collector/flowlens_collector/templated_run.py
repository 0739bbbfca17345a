"""Runs of NetFlow v9 or IPFIX datagrams: the array path for the usual case, the walk for the rest.

Under load most datagrams carry one data set of a known fixed-length template, alone or after a
repeat of their template set: runs of those (same source, version, domain and set id) go to the
templated decoder as arrays (``TemplatedDecoder.single_set_run``); every other datagram is walked
on its own, in order.
"""
from __future__ import annotations

import logging

import numpy as np

from flowmodel.logs import fields

from .decoders import v5

log = logging.getLogger(__name__)

RUN_ATTEMPTS = 3  # tries of the array path per run (see decode_run)


def decode_run(templated, acct, blob, offsets: np.ndarray, lengths: np.ndarray, version: int, datagrams,
               sources: list, now_ms: int) -> None:
    """Consecutive datagrams of one ``version`` (9 or 10) into ``templated`` (their flows come out
    of its ``finish``); ``acct`` resolves sources and counts what fails."""
    walk = templated.v9 if version == 9 else templated.ipfix
    m = len(offsets)
    if m < 4:  # not worth the array set-up
        for k in range(m):
            _walk_one(walk, acct, datagrams[k], sources[k], now_ms)
        return
    try:
        if sources.count(sources[0]) == m:
            sid = np.zeros(m, dtype=np.int64)
            srcs = [sources[0]]
        else:
            ids: dict = {}
            sid = np.fromiter((ids.setdefault(s, len(ids)) for s in sources), dtype=np.int64, count=m)
            srcs = list(ids)
        segments = single_set_segments(blob, offsets, lengths, np.full(m, version, dtype=np.int32), sid)
    except Exception:  # a decoder bug must not stop the loop: every datagram takes the walk instead
        log.exception("run classification failed", extra=fields(exporter=str(sources[0]), datagrams=m))
        segments = [(0, m, None)]
    for a, b, info in segments:
        if info is not None:
            source = acct.source(srcs[int(sid[a])])
            head, data_off, set_ids = info
            # A run the templated decoder cannot take yet (its template, the template set it
            # repeats or its IPFIX numbering not seen) usually can once its first datagram has
            # been walked: a few retries, each after walking one more datagram.
            for attempt in range(RUN_ATTEMPTS):
                if b - a < 2:
                    break
                try:
                    if templated.single_set_run(blob, offsets[a:b], lengths[a:b], head[a:b], data_off[a:b],
                                                int(set_ids[a]), source, now_ms):
                        a = b
                        break
                except Exception:
                    log.exception("run decode failed", extra=fields(exporter=source[0], datagrams=b - a))
                    acct.stats(source[0], 0, now_ms).error("internal_error", b - a)
                    a = b
                    break
                if attempt < RUN_ATTEMPTS - 1:
                    _walk_one(walk, acct, datagrams[a], sources[a], now_ms)
                    a += 1
        for k in range(a, b):
            _walk_one(walk, acct, datagrams[k], sources[k], now_ms)


def _walk_one(walk, acct, buf, src, now_ms: int) -> None:
    try:
        walk(buf, acct.source(src), now_ms)
    except Exception:  # a decoder bug must not stop the loop: counted and logged
        log.exception("decode failed", extra=fields(exporter=str(src)))
        try:
            acct.stats(str(src[0]), 0, now_ms).error("internal_error")
        except Exception:
            log.exception("could not count a decode failure")


RUN_HEAD = np.dtype([("version", ">u2"), ("count", ">u2"), ("w1", ">u4"), ("w2", ">u4"), ("w3", ">u4"),
                     ("w4", ">u4"), ("set_id", ">u2"), ("set_len", ">u2")])
RUN_HEAD_LEN = RUN_HEAD.itemsize  # 24: a v9 header and its first set header; an IPFIX one and 4 more bytes


def single_set_segments(blob, offsets: np.ndarray, lengths: np.ndarray, versions: np.ndarray, sid: np.ndarray):
    """Split consecutive v9/IPFIX datagrams into segments [a, b) for the array path.

    A datagram qualifies when it is one header and one data set (set id >= 256) running to its
    end (for IPFIX also to the message length), optionally after one template set: exporters
    such as nfreplay repeat their templates in every datagram, and the templated decoder lets
    such a datagram into the run only when that template set is byte for byte the one it last
    processed for the session. A segment is a run of qualifying datagrams with the same source,
    version, domain and data set id; its entry is (a, b, (headers, data_offsets, set_ids)) with
    ``headers`` a RUN_HEAD array of all datagrams (v9: w1 uptime, w2 secs, w3 sequence, w4 source
    id; IPFIX: ``count`` is the message length, w1 export time, w2 sequence, w3 domain) and
    ``data_offsets`` where each datagram's data set header starts; or (a, b, None) for datagrams
    that must be walked one by one.
    """
    m = len(offsets)
    head = v5.gather(blob, offsets, RUN_HEAD_LEN).view(RUN_HEAD).reshape(m)
    w4 = head["w4"]
    v0 = int(versions[0])
    uniform = (versions == v0).all()
    if uniform and v0 == 9:
        hlen, set1, len1, domain, tset = 20, head["set_id"].astype(np.int64), head["set_len"].astype(np.int64), w4, 0
        framed = lengths >= RUN_HEAD_LEN
    elif uniform and v0 == 10:
        # IPFIX: the first set header is bytes 16..19, which RUN_HEAD reads as w4
        hlen, set1, len1, domain, tset = 16, (w4 >> 16).astype(np.int64), (w4 & 0xFFFF).astype(np.int64), head["w3"], 2
        framed = (lengths >= 20) & (head["count"] == lengths)
    else:
        is9 = versions == 9
        hlen = np.where(is9, 20, 16)
        set1 = np.where(is9, head["set_id"], w4 >> 16).astype(np.int64)
        len1 = np.where(is9, head["set_len"], w4 & 0xFFFF).astype(np.int64)
        domain = np.where(is9, w4, head["w3"])
        tset = np.where(is9, 0, 2)
        framed = np.where(is9, lengths >= RUN_HEAD_LEN, (versions == 10) & (lengths >= 20) & (head["count"] == lengths))
    data_off = np.broadcast_to(np.asarray(hlen, dtype=np.int64), (m,))
    set_id, set_len = set1, len1
    refresh = (set1 == tset) & (len1 >= 8) & (hlen + len1 + 4 <= lengths)
    if refresh.any():
        second = v5.gather(blob, offsets + np.where(refresh, hlen + len1, 0), 4).view(">u2").reshape(m, 2)
        data_off = np.where(refresh, hlen + len1, hlen)
        set_id = np.where(refresh, second[:, 0], set1)
        set_len = np.where(refresh, second[:, 1], len1)
    ok = framed & (data_off + set_len == lengths) & (set_id >= 256)
    # a template set of another length than the previous one in front of the data: a new template,
    # so a new run (the templated decoder takes a run only if all its template sets are the same)
    with_set = np.flatnonzero(data_off != hlen)
    new_set = with_set[1:][data_off[with_set[1:]] != data_off[with_set[:-1]]] if len(with_set) > 1 else with_set[:0]
    if m > 1 and uniform and ok.all() and (sid == sid[0]).all() and (domain == domain[0]).all() \
            and (set_id == set_id[0]).all() and not len(new_set):
        return [(0, m, (head, data_off, set_id))]  # the usual case under load: one exporter, one template
    key = (sid << 48) ^ (versions.astype(np.int64) << 40) ^ (domain.astype(np.int64) << 8)
    same = (key[1:] == key[:-1]) & (set_id[1:] == set_id[:-1])
    change = np.flatnonzero((ok[1:] != ok[:-1]) | (ok[1:] & ~same)) + 1
    if len(new_set):
        change = np.union1d(change, new_set)
    bounds = [0, *change.tolist(), m]
    okl = ok.tolist()
    info = (head, data_off, set_id)
    return [(a, b, info if okl[a] else None) for a, b in zip(bounds[:-1], bounds[1:])]
