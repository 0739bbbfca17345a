"""StoreClient: the query-protocol client used by the web, the CLI and user scripts.

    from flowmodel.client import StoreClient
    store = StoreClient("tcp://127.0.0.1:5555")
    page = store.flows(src="10.0.0.0/8", since="15m")
    for row in page.rows(): print(row["src_addr"], row["bytes"])

Lazy Pirate: a reply that does not come within ``timeout_s`` closes and reopens the REQ socket and
retries up to ``retries`` times, then raises StoreUnavailable.
"""
from __future__ import annotations

import threading
from typing import Any

import msgpack
import zmq

from .protocol import REQUEST_MAX_BYTES, parse_when

# numpy (and flowmodel.addr / flowmodel.schema, which stand on it) is imported where a flows reply is
# turned into columns, not here: the web and the CLI import this client at start and most of their
# requests (status, top, series, overview) never build a column; numpy costs ~12 MB RSS per process.


class StoreError(RuntimeError):
    """The store answered with an error; ``str(e)`` is its plain-language reason."""


class StoreUnavailable(ConnectionError):
    """The store did not answer in time after the retries."""


class FlowPage:
    """One page of the flows op: a FlowBatch plus the cursors for the next and previous pages."""

    def __init__(self, batch: FlowBatch, next_cursor: str | None, prev_cursor: str | None, reply: dict):
        self.batch = batch
        self.next_cursor = next_cursor
        self.prev_cursor = prev_cursor
        self.reply = reply

    def __len__(self) -> int:
        return self.batch.count

    def rows(self) -> list[dict[str, Any]]:
        """Rows as dicts with addresses and countries as text (for pages and CLI lines, not for bulk
        work): a country is its code ('DE'), a label's words ('private') or '' (flowmodel.geo)."""
        from . import addr, geo
        from .schema import ADDRESS_COLUMNS, FLOW_COLUMNS

        cols = {}
        for name in FLOW_COLUMNS:
            arr = self.batch[name]
            if name in ADDRESS_COLUMNS:
                cols[name] = addr.column_to_text(arr)
            elif name in geo.COUNTRY_COLUMNS:
                cols[name] = geo.countries_text(arr)
            else:
                cols[name] = arr.tolist()
        return [{name: cols[name][i] for name in cols} for i in range(self.batch.count)]


def batch_from_reply(reply: dict) -> FlowBatch:
    import numpy as np

    from .schema import FLOW_COLUMNS, FlowBatch

    count = int(reply.get("count", 0))
    cols = {name: np.frombuffer(raw, dtype=FLOW_COLUMNS[name][0]) for name, raw in reply.get("columns", {}).items()
            if name in FLOW_COLUMNS}
    return FlowBatch(cols, count)


class StoreClient:
    """Thread-safe (one request at a time) client for the store's query endpoint."""

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", timeout_s: float = 5.0, retries: int = 2,
                 context: zmq.Context | None = None, keys=None, max_reply_bytes: int = 64 << 20):
        self.endpoint = endpoint
        self.keys = keys  # flowmodel.curve.ClientKeys (CURVE to the store), from_config loads them; None: plain
        self.max_reply_bytes = max_reply_bytes
        self.timeout_ms = int(timeout_s * 1000)
        self.retries = retries
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg, endpoint: str | None = None, **kw) -> "StoreClient":
        """query.endpoint (or ``endpoint``), its timeout, retries and reply bound, and the CURVE keys of ``security.*``."""
        from .curve import client_keys

        kw = {"timeout_s": cfg["query.timeout"], "retries": cfg["query.retries"], **kw}
        return cls(endpoint or cfg["query.endpoint"], keys=client_keys(cfg),
                   max_reply_bytes=cfg["query.max_reply_bytes"], **kw)

    def _open(self) -> zmq.Socket:
        from .curve import connect_securely

        sock = self._ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_reply_bytes + (64 << 10))  # the store's bound, and an error reply's room
        connect_securely(sock, self.endpoint, self.keys)
        return sock

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close(linger=0)
                self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, op: str, **args: Any) -> dict:
        """Send one request; return the reply map (ok true) or raise StoreError / StoreUnavailable."""
        try:
            body = msgpack.packb({"op": op, **{k: v for k, v in args.items() if v is not None}}, use_bin_type=True)
        except (OverflowError, TypeError, ValueError) as e:  # an int past 64 bits, an object msgpack cannot write
            raise StoreError(f"{op}: an argument cannot be sent to the store ({e})") from None
        if len(body) > REQUEST_MAX_BYTES:  # the store's socket would drop it (and the connection) unanswered
            raise StoreError(f"the request is {len(body):,} bytes; the store takes {REQUEST_MAX_BYTES:,} at most")
        with self._lock:
            for _attempt in range(self.retries + 1):
                if self._sock is None:
                    self._sock = self._open()
                self._sock.send(body)
                if self._sock.poll(self.timeout_ms, zmq.POLLIN):
                    reply = msgpack.unpackb(self._sock.recv(), raw=False)
                    break
                # Lazy Pirate: a REQ socket that lost its reply is stuck; throw it away.
                self._sock.close(linger=0)
                self._sock = None
            else:
                raise StoreUnavailable(f"the store at {self.endpoint} did not answer within "
                                       f"{self.timeout_ms / 1000:g} s ({self.retries + 1} {'try' if self.retries == 0 else 'tries'})"
                                       + self._curve_hint())
        if not isinstance(reply, dict):
            raise StoreError("the store sent a reply that is not a map")
        if not reply.get("ok"):
            raise StoreError(reply.get("error", "the store refused the request without a reason"))
        return reply

    def _curve_hint(self) -> str:
        """A store that refuses the CURVE handshake looks like one that is down: say what to check."""
        from .curve import is_loopback

        if self.keys is not None:
            return ("; if it is running, check that this client's public key is in the store's "
                    "security.authorized_keys and that security.store_public_key is the store's")
        if not is_loopback(self.endpoint):
            return "; if the store speaks CURVE, set security.client_key and security.store_public_key"
        return ""

    # --- ops (thin wrappers; arguments as the protocol documents them) ---

    @staticmethod
    def _times(args: dict) -> dict:
        for key in ("since", "until"):
            if isinstance(args.get(key), str):
                args[key] = parse_when(args[key], name=key)
        return args

    def flows(self, limit: int = 100, cursor: str | None = None, direction: str = "next", **filters) -> FlowPage:
        reply = self.request("flows", limit=limit, cursor=cursor, direction=direction, **self._times(filters))
        return FlowPage(batch_from_reply(reply), reply.get("next_cursor"), reply.get("prev_cursor"), reply)

    def top(self, by: str = "src", metric: str = "bytes", limit: int = 10, **filters) -> dict:
        return self.request("top", by=by, metric=metric, limit=limit, **self._times(filters))

    def explore(self, by: str, since, metric: str = "bytes", limit: int = 10, **filters) -> dict:
        """The top ``limit`` keys of ``by`` with their series per step (protocol.OPS["explore"])."""
        return self.request("explore", by=by, metric=metric, limit=limit, **self._times({"since": since, **filters}))

    def series(self, step: float = 60, **filters) -> dict:
        return self.request("series", step=step, **self._times(filters))

    def overview(self, step: float = 10, limit: int = 10, **filters) -> dict:
        """Spread, scaled series and scaled top src/dst/protocol for one window (what the dashboard shows)."""
        return self.request("overview", step=step, limit=limit, **self._times(filters))

    def exporters(self) -> dict:
        return self.request("exporters")

    def status(self) -> dict:
        return self.request("status")

    def advisories(self, **filters) -> list[dict]:
        return self.request("advisories", **self._times(filters))["advisories"]

    def notes(self, kind: str | None = None, active: bool = True, **args) -> list[dict]:
        """Acknowledgements and silences (flowmodel.notes), newest first."""
        return self.request("notes", kind=kind, active=active, **args)["notes"]

    def rollups(self, kind: str, **args) -> dict:
        return self.request("rollups", kind=kind, **self._times(args))

    def ping(self) -> bool:
        return bool(self.request("ping").get("ok"))
