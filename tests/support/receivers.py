"""Real receivers on loopback for the notifier tests: an HTTP server that records webhook posts (and
can answer the first ones with an error), an SMTP server (aiosmtpd), and syslog listeners on UDP
and TCP (RFC 6587 octet counting). Each records what arrived, one entry per message, thread-safe."""
from __future__ import annotations

import json
import re
import socket
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from support.services import free_port


class WebhookReceiver:
    def __init__(self, fail_first: int = 0, status: int = 503):
        self.posts: list[dict] = []      # JSON bodies of the posts it took
        self.refused = 0                 # posts answered with ``status``
        self.fail_first = fail_first
        self.status = status
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer._lock:
                    if outer.refused < outer.fail_first:
                        outer.refused += 1
                        code = outer.status
                    else:
                        outer.posts.append(json.loads(body))
                        code = 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def notifications(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(n["key"], n["transition"]) for p in self.posts for n in p["notifications"]]


class SmtpReceiver:
    """aiosmtpd's Controller on a free port; ``messages``: email.message.Message objects."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.messages.append(message_from_bytes(envelope.original_content or envelope.content))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()

    def notifications(self) -> list[tuple[str, str]]:
        """(key, transition) from each body's '* SEVERITY transition: title [key]' lines."""
        out = []
        for m in list(self.messages):
            for line in m.get_payload(decode=True).decode().splitlines():
                found = re.match(r"\* \w+ (raised|escalated|resolved): .* \[(.+)\]$", line)
                if found:
                    out.append((found.group(2), found.group(1)))
        return out


_SD = re.compile(r'key="((?:[^"\\]|\\.)*)".*transition="(\w+)"')


class SyslogReceiver:
    """UDP: one record per datagram. TCP: octet-counted records; ``connections`` counts deliveries."""

    def __init__(self, protocol: str):
        self.protocol = protocol
        self.records: list[bytes] = []
        self.connections = 0
        kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._udp if protocol == "udp" else self._tcp, daemon=True)

    def __enter__(self):
        if self.protocol == "tcp":
            self.sock.listen(16)
        self.sock.settimeout(0.2)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def _udp(self):
        while not self._stop.is_set():
            try:
                self.records.append(self.sock.recv(65536))
            except socket.timeout:
                continue

    def _tcp(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.connections += 1
            data = b""
            with conn:
                conn.settimeout(5)
                while chunk := conn.recv(65536):
                    data += chunk
            while data:
                length, _, rest = data.partition(b" ")
                self.records.append(rest[:int(length)])
                data = rest[int(length):]

    def notifications(self) -> list[tuple[str, str]]:
        out = []
        for r in list(self.records):
            found = _SD.search(r.decode())
            if found:
                out.append((found.group(1), found.group(2)))
        return out
