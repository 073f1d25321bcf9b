"""The outbox dispatcher's CryptoMate client: aiohttp on one event loop, many requests in flight, no threads.

It sends the same `Request`s as the synchronous client and reads their answers with the same
`reply_or_raise`, so both raise the same typed errors and record the same metrics and spans. Why a second
transport (docs/benchmarks.md, "end to end"): against the sandbox, httpx's synchronous client spent ~770 µs
of CPU per request from 8 threads, its asyncio client ~3,900 µs with 64 in flight, aiohttp 150–170 µs; and
one loop that reads every ready socket per wake-up does not queue each request's thread for the GIL behind a
busy processor, which had made every call ~15 ms and capped one process at ~400 answers/s.

One attempt per call and no pacing: the dispatcher owns retries, and the dispatchers sharing an API key pace
themselves through the ledger. Make it anywhere; its session opens on the loop of the first `send`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from yarl import URL

from hookstream import tracing
from hookstream.api.client import Reply, Request, observe, reply_or_raise, request_span
from hookstream.api.errors import ApiConnectionError, ApiTimeoutError
from hookstream.logs import register_secrets
from hookstream.settings import Settings


class AsyncCryptoMateClient:
    """`await client.send(request)`: one attempt; raises ApiError subclasses (TransientApiError: worth retrying)."""

    def __init__(self, base_url: str, api_key: str, *, connect_timeout_s: float = 3.0,
                 read_timeout_s: float = 10.0, max_connections: int = 8) -> None:
        register_secrets([api_key])
        self.base_url = base_url.rstrip("/")
        self.host = URL(self.base_url).host or ""
        self._headers = {"x-api-key": api_key, "accept": "application/json"}
        # No total bound: a connect bound, then a bound on each wait for the answer's bytes (as httpx's read).
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=read_timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._tracer = tracing.tracer("hookstream.api")  # None: not exporting

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> AsyncCryptoMateClient:
        """The client configured by HOOKSTREAM_API_* settings (overrides win)."""
        values: dict[str, Any] = dict(connect_timeout_s=settings.api_connect_timeout_s,
                                      read_timeout_s=settings.api_read_timeout_s)
        values.update(overrides)
        return cls(settings.api_base_url, settings.api_key.get_secret_value(), **values)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            # A base URL with a path (".../v1") keeps it only with a trailing slash and relative request paths.
            self._session = aiohttp.ClientSession(
                self.base_url + "/", headers=self._headers, timeout=self._timeout, raise_for_status=False,
                connector=aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=self._max_connections))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, req: Request) -> Reply:
        with request_span(self._tracer, req, self.host) as span:
            reply = await self._request(req)
            if span is not None:
                span.set_attribute("http.response.status_code", reply.status)
            return reply

    async def _request(self, req: Request) -> Reply:
        session = self._open()
        started = time.monotonic()
        try:
            # A 302 from CryptoMate is a JSON "pending" answer, never a redirect (platform §5.6).
            async with session.request(req.method, req.path.lstrip("/"), headers=req.headers, data=req.content,
                                       params=req.params, allow_redirects=False) as response:
                content = await response.read()
        except (TimeoutError, asyncio.TimeoutError) as exc:
            observe(req.template, "timeout", time.monotonic() - started)
            raise ApiTimeoutError(type(exc).__name__, endpoint=req.template) from None
        except aiohttp.ClientError as exc:
            observe(req.template, "connection_error", time.monotonic() - started)
            raise ApiConnectionError(type(exc).__name__, endpoint=req.template) from None
        observe(req.template, str(response.status), time.monotonic() - started)
        return reply_or_raise(response.status, content, response.headers, req)
