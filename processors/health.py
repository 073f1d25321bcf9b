"""The processor's small HTTP port: /healthz fails when the poll loop is stuck; /metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hookstream import metrics

STALL_AFTER_S = 30.0  # a poll loop silent this long is stuck (handlers have their own timeouts)


class Health:
    """The poll loop's liveness: `beat()` each iteration; `healthy()` if one was recent."""

    def __init__(self, stall_after_s: float = STALL_AFTER_S, clock: Callable[[], float] = time.monotonic):
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._last = clock()
        self.stopped = False

    def beat(self) -> None:
        self._last = self._clock()

    def silent_for(self) -> float:
        return self._clock() - self._last

    def healthy(self) -> bool:
        return not self.stopped and self.silent_for() <= self.stall_after_s


def serve(health: Health, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the HTTP server on a daemon thread; `server.server_address[1]` is the bound port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                ok = health.healthy()
                body = (b"ok\n" if ok else b"poll loop stuck for %.1fs\n" % health.silent_for())
                self._send(200 if ok else 503, body, "text/plain; charset=utf-8")
            elif path == "/metrics":
                body, content_type = metrics.render()
                self._send(200, body, content_type)
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # probes every few seconds would drown the event log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    return server
