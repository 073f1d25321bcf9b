"""Real-HTTP test harness: a sandbox served by uvicorn in a thread, and a scriptable webhook receiver."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookstream.sandbox.app import create_app
from hookstream.sandbox.config import SandboxConfig
from hookstream.sandbox.runtime import Sandbox

KEY1, KEY2, KEY3 = "sandbox-key-level-1", "sandbox-key-level-2", "sandbox-key-level-3"
WEBHOOK_KEY = "test-webhook-key-0123"


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app on a free 127.0.0.1 port in a thread; yields its base URL; always stops."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


class FakeClock:
    def __init__(self, start: float = 10_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Running:
    url: str
    box: Sandbox
    http: httpx.Client

    def api(self, method: str, path: str, key: str | None = KEY3, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if key is not None:
            headers["x-api-key"] = key
        return self.http.request(method, path, headers=headers, **kw)

    def control(self, method: str, path: str, **kw: Any) -> httpx.Response:
        response = self.http.request(method, f"/_sandbox/{path}", **kw)
        assert response.status_code < 300, response.text
        return response

    def deliveries(self, **params: Any) -> list[dict[str, Any]]:
        return self.control("GET", "deliveries", params=params).json()

    def wait_deliveries(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0,
                        **params: Any) -> list[dict[str, Any]]:
        """Poll /_sandbox/deliveries until `predicate` holds; bounded."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.deliveries(**params)
            if predicate(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"deliveries never matched in {timeout}s: {json.dumps(found)[:3000]}")
            time.sleep(0.02)


@contextmanager
def running_sandbox(seed: dict[str, Any] | None = None, clock: Callable[[], float] | None = None,
                    **config: Any) -> Iterator[Running]:
    """A fresh sandbox on a real port; `config` sets SandboxConfig fields."""
    kwargs: dict[str, Any] = {"config": SandboxConfig(**config)}
    if clock is not None:
        kwargs["clock"] = clock
    box = Sandbox(seed, **kwargs)
    with serve(create_app(box)) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield Running(url, box, http)


@dataclass
class Hit:
    at: float
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """Answers webhooks per `script(hit_number, body) -> (status, json_body, delay_s)`; records hits."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    script: Callable[[int, dict[str, Any]], tuple[int, Any, float]] = lambda n, body: (200, {"response_code": "OK"}, 0.0)

    def event_types(self) -> list[str]:
        return [str(h.body.get("event_type", h.body.get("sub_operation"))).lower() for h in self.hits]

    def wait(self, predicate: Callable[[list[Hit]], bool], timeout: float = 10.0) -> list[Hit]:
        deadline = time.monotonic() + timeout
        while not predicate(self.hits):
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver never matched in {timeout}s: {[h.body for h in self.hits]}")
            time.sleep(0.02)
        return self.hits


@contextmanager
def running_receiver(script: Callable[[int, dict[str, Any]], tuple[int, Any, float]] | None = None
                     ) -> Iterator[Receiver]:
    receiver = Receiver()
    if script is not None:
        receiver.script = script

    async def hook(request: Request) -> Response:
        body = json.loads(await request.body())
        receiver.hits.append(Hit(time.monotonic(), dict(request.headers), body))
        status, payload, delay = receiver.script(len(receiver.hits), body)
        if delay:
            await asyncio.sleep(delay)
        return Response(json.dumps(payload).encode() if payload is not None else b"", status_code=status,
                        media_type="application/json")

    with serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        receiver.url = f"{url}/hook"
        yield receiver


def approve_all(n: int, body: dict[str, Any]) -> tuple[int, Any, float]:
    """A customer endpoint approving authorizations ("00") and acknowledging everything else."""
    kind = str(body.get("event_type", body.get("sub_operation"))).lower()
    return 200, {"response_code": "00" if kind == "authorization" else "OK"}, 0.0
