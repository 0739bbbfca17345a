"""The store's query server (flowmodel.protocol, REQ/REP): a ROUTER front thread answers the cheap
ops itself and queues the rest, bounded, for worker threads, each with its own QueryEngine and so
its own SQLite read connection; a ping never waits behind a scan, and a full queue is an error reply
in words, not a wait. Replies over query.max_reply_bytes become error replies (counted).

A flows page that the ring alone answers cheaply (a host's newest flows: FlowPages.ring_flows) is
cheap too: the front thread answers it with an engine of its own that never opens SQLite. Handing
it to a worker and its reply back costs two thread wake-ups, 0.25 ms on a quiet machine and more
than the page itself on a loaded one.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

import msgpack
import zmq

from flowmodel import curve
from flowmodel.logs import fields
from flowmodel.protocol import OPS, REQUEST_MAX_BYTES, QueryError, error_reply

from .blockruns import BlockRuns
from .histread import SealedTotals
from .queries import QueryEngine

log = logging.getLogger(__name__)

INLINE_OPS = ("ping", "status", "exporters")  # answered by the front thread at once, never queued behind a scan


def pack_reply(reply: dict) -> bytes:
    try:
        return msgpack.packb(reply, use_bin_type=True)
    except Exception as e:
        log.exception("reply could not be encoded")
        return msgpack.packb(error_reply(f"internal error encoding the reply: {e}"), use_bin_type=True)


def too_big_reply(size: int, max_bytes: int) -> dict:
    return error_reply(f"the reply would be {size:,} bytes, over query.max_reply_bytes ({max_bytes:,}); ask for "
                       "a shorter window, a lower limit or a larger step")


def parse_request(raw: bytes) -> tuple[str, dict] | dict:
    """(op, args), or an error reply for a request that is not one."""
    try:
        req = msgpack.unpackb(raw, raw=False)
    except Exception:
        return error_reply("the request is not msgpack")
    if not isinstance(req, dict):
        return error_reply("the request must be a map with an op")
    op = req.get("op")
    if not isinstance(op, str) or op not in OPS:
        return error_reply(f"unknown op {op!r}; ops: {', '.join(OPS)}")
    return op, {k: v for k, v in req.items() if k != "op"}


class QueryServer:
    """Inert until ``start``. ``service_ops`` answers the ops that are the service's own (ping,
    status, exporters, names: op -> callable returning the reply); the rest go to a QueryEngine."""

    def __init__(self, cfg, service_ops: dict[str, Callable[[], dict]]):
        self.cfg = cfg
        self.service_ops = service_ops
        self.engines: list[QueryEngine] = []
        self.front_engine: QueryEngine | None = None  # the front thread's, for ring-only flows pages
        self.pages_inline = 0  # flows pages the front thread answered from the ring
        self.queries_refused = 0
        self.replies_too_big = 0
        self._jobs: queue.Queue | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._router: zmq.Socket | None = None

    @property
    def waiting(self) -> int:
        return self._jobs.qsize() if self._jobs else 0

    def start(self, make_socket: Callable[[int], zmq.Socket], gate: curve.Gate, ring, tag: str) -> None:
        """Bind the query socket (``make_socket`` makes sockets the service closes at its end), make
        the engines and start the threads. ``tag`` keeps inproc names apart per service instance."""
        cfg = self.cfg
        self._router = make_socket(zmq.ROUTER)
        self._router.setsockopt(zmq.MAXMSGSIZE, REQUEST_MAX_BYTES)
        gate.bind(self._router, cfg["storage.query_bind"], curve.QUERY)
        replies = make_socket(zmq.PULL)
        replies.bind(f"inproc://store-replies-{tag}")
        self._jobs = queue.Queue(maxsize=cfg["storage.query_queue"])
        top_cache = cfg["storage.query_top_cache"]  # one for all workers: any of them may answer a refresh
        sealed_totals = SealedTotals(top_cache) if top_cache else None
        hot_cache = cfg["storage.query_hot_cache"]
        block_runs = BlockRuns(hot_cache) if hot_cache else None
        ring_ms = int(cfg["storage.ring_buffer_duration"] * 1000)
        self.front_engine = QueryEngine(ring, cfg["storage.sqlite_path"], ring_ms, cfg["storage.query_max_rows"],
                                        cfg["storage.query_time_limit"], rollup_cache_bytes=0)
        for i in range(cfg["storage.query_workers"]):
            engine = QueryEngine(ring, cfg["storage.sqlite_path"], int(cfg["storage.ring_buffer_duration"] * 1000),
                                 cfg["storage.query_max_rows"], cfg["storage.query_time_limit"],
                                 rollup_cache_bytes=cfg["storage.query_rollup_cache"])
            engine.rollup_retention_ms = int(cfg["storage.rollup_retention"] * 1000)
            engine.sealed_totals = sealed_totals
            engine.block_runs = block_runs
            engine.prefix_v4, engine.prefix_v6 = cfg["analysis.anomaly_prefix_v4"], cfg["analysis.anomaly_prefix_v6"]
            self.engines.append(engine)
            push = make_socket(zmq.PUSH)
            push.setsockopt(zmq.SNDTIMEO, 2000)  # never block a worker for good on a stopped front thread
            push.connect(f"inproc://store-replies-{tag}")
            self._spawn(f"query-worker-{i}", self._work, engine, push)
        self._spawn("query", self._serve, replies)

    def stop(self) -> None:
        """Ask the threads to end and wait for them (each closes its own sockets)."""
        self._stop.set()
        for t in self._threads:
            t.join(5)

    @property
    def answering(self) -> bool:
        """Whether a user's query is being answered or waits for a worker."""
        return self.waiting > 0 or any(getattr(e, "answering", False) for e in self.engines)

    @property
    def sealed_totals(self):
        """The workers' shared top cache (None when storage.query_top_cache is 0 or before start)."""
        return self.engines[0].sealed_totals if self.engines else None

    @property
    def alive(self) -> list[str]:
        return [t.name for t in self._threads if t.is_alive()]

    def _spawn(self, name: str, target, *args) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # ---------------------------------------------------------------- the front thread

    def _serve(self, replies: zmq.Socket) -> None:
        router = self._router
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(replies, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                ready = dict(poller.poll(100))
                if replies in ready:
                    while True:
                        try:
                            router.send_multipart(replies.recv_multipart(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                if router in ready:
                    while True:
                        try:
                            frames = router.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._dispatch(router, frames[:-1], frames[-1])
            except zmq.ContextTerminated:
                break
            except Exception:
                log.exception("query loop error")
        for sock in (router, replies):
            sock.close(linger=0)
        if self.front_engine is not None:
            self.front_engine.close()

    def _dispatch(self, router: zmq.Socket, envelope: list[bytes], raw: bytes) -> None:
        parsed = parse_request(raw)
        if isinstance(parsed, dict):  # an error reply
            router.send_multipart(envelope + [pack_reply(parsed)])
            return
        op, args = parsed
        if op in INLINE_OPS:
            router.send_multipart(envelope + [self.pack(self.run_op(op, args, None))])
            return
        if op == "flows" and self.front_engine is not None:
            reply = self._ring_page(args)
            if reply is not None:
                router.send_multipart(envelope + [self.pack(reply)])
                return
        try:
            self._jobs.put_nowait((envelope, op, args))
        except queue.Full:
            self.queries_refused += 1
            router.send_multipart(envelope + [pack_reply(error_reply(
                f"the store is busy: {self._jobs.maxsize} queries are already waiting; try again in a moment"))])

    def _ring_page(self, args: dict) -> dict | None:
        """The reply to a flows request when the ring alone answers it cheaply, else None."""
        try:
            reply = self.front_engine.ring_flows(args)
        except QueryError as e:
            return error_reply(str(e))
        except Exception:
            log.exception("ring page failed; a worker answers it")
            return None
        if reply is not None:
            self.pages_inline += 1
        return reply

    # ---------------------------------------------------------------- the workers

    def _work(self, engine: QueryEngine, push: zmq.Socket) -> None:
        try:
            while not self._stop.is_set():
                try:
                    envelope, op, args = self._jobs.get(timeout=0.1)
                except queue.Empty:
                    continue
                engine.answering = True  # the top warmer (topwarm.py) waits while any worker answers
                try:
                    reply = self.pack(self.run_op(op, args, engine))
                finally:
                    engine.answering = False
                try:
                    push.send_multipart(envelope + [reply])
                except zmq.Again:  # the front thread stopped (shutdown): nobody is left to answer
                    break
        except zmq.ContextTerminated:
            pass
        finally:
            engine.close()
            push.close(linger=0)

    def pack(self, reply: dict) -> bytes:
        """The reply as msgpack, or an error reply in its place when it is over query.max_reply_bytes (counted)."""
        raw = pack_reply(reply)
        limit = self.cfg["query.max_reply_bytes"]
        if len(raw) > limit:
            self.replies_too_big += 1
            return pack_reply(too_big_reply(len(raw), limit))
        return raw

    def answer(self, raw: bytes) -> dict:
        """One request answered on the calling thread (tests and tools; the server uses the workers)."""
        parsed = parse_request(raw)
        if isinstance(parsed, dict):
            return parsed
        op, args = parsed
        return self.run_op(op, args, self.engines[0] if self.engines else None)

    def run_op(self, op: str, args: dict, engine: QueryEngine | None) -> dict:
        try:
            own = self.service_ops.get(op)
            if own is not None:  # "names" runs on a worker: a first reply over 100,000 interfaces takes most of a second
                return own()
            return getattr(engine, op)(args)
        except QueryError as e:
            return error_reply(str(e))
        except Exception as e:
            log.exception("query failed", extra=fields(op=op))
            return error_reply(f"internal error in {op}: {e}")
