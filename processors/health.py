"""The processor's small HTTP port: /healthz fails when the poll loop is stuck (or a check fails); /metrics."""

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
        self._checks: list[Callable[[], str | None]] = []

    def add_check(self, check: Callable[[], str | None]) -> None:
        """A further condition: `check()` returns a problem (the process is unhealthy) or None."""
        self._checks.append(check)

    def problem(self) -> str | None:
        """Why the process is unhealthy, or None."""
        if self.stopped:
            return "stopped"
        if self.silent_for() > self.stall_after_s:
            return f"poll loop stuck for {self.silent_for():.1f}s"
        for check in self._checks:
            found = check()
            if found:
                return found
        return None

    def beat(self) -> None:
        self._last = self._clock()

    def silent_for(self) -> float:
        return self._clock() - self._last

    def healthy(self) -> bool:
        return self.problem() is None


def serve(health: Health, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the HTTP server on a daemon thread; `server.server_address[1]` is the bound port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                problem = health.problem()
                body = b"ok\n" if problem is None else problem.encode() + b"\n"
                self._send(200 if problem is None else 503, body, "text/plain; charset=utf-8")
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
