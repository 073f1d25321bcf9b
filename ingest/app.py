"""The receiver's Starlette application: routes, lifespan, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from kafka.errors import KafkaError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hookstream import metrics
from hookstream.ingest.authorization import Decider, load_policy
from hookstream.ingest.forwarder import forward_once, run_forwarder
from hookstream.ingest.openapi import openapi_route
from hookstream.ingest.publisher import Publisher
from hookstream.ingest.receiver import Receiver
from hookstream.ingest.spool import Spool
from hookstream.kafka import make_admin
from hookstream.logs import configure_logging, get_logger, register_secrets
from hookstream.settings import Settings, get_settings

log = get_logger(__name__)

WEBHOOK_PATH = "/webhooks/cryptomate"


class Readiness:
    """Broker metadata reachable, checked off the loop and cached for a second."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin = None
        self._checked_at = 0.0
        self._ok = False
        self._lock = asyncio.Lock()

    def _probe(self) -> bool:
        try:
            if self._admin is None:
                self._admin = make_admin(self._settings, request_timeout_ms=2000, bootstrap_timeout_ms=2000)
            self._admin.describe_cluster()
            return True
        except (KafkaError, OSError):
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    self._admin.close()
            self._admin = None
            return False

    async def check(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._checked_at > 1.0:
                loop = asyncio.get_running_loop()
                self._ok = await loop.run_in_executor(None, self._probe)
                self._checked_at = time.monotonic()
            return self._ok

    def close(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()


def create_app(settings: Settings | None = None, publisher: Publisher | None = None) -> Starlette:
    """The receiver app. Everything that touches Kafka or disk starts in the lifespan."""
    settings = settings or get_settings()
    # `ingest --workers N` imports this factory in fresh processes: they need the redacting setup too.
    configure_logging(settings.log_level, settings.log_format)
    register_secrets(k.get_secret_value() for k in settings.webhook_keys)
    publisher = publisher or Publisher(settings)
    spool_io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookstream-spool")
    spool = Spool(settings.spool_dir, settings.spool_max_bytes)
    decider = Decider(settings, load_policy(settings.authorization_policy, settings))
    receiver = Receiver(settings, publisher, spool, decider, spool_io)
    readiness = Readiness(settings)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "spool_depth": spool.depth})

    async def readyz(_: Request) -> Response:
        ok = publisher.connected and await readiness.check()
        return JSONResponse({"status": "ready" if ok else "unavailable", "kafka": ok,
                             "spool_depth": spool.depth}, status_code=200 if ok else 503)

    async def metrics_endpoint(_: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        publisher.start(loop)
        forwarder = asyncio.create_task(run_forwarder(
            spool, publisher, spool_io, settings.spool_forward_interval_s, settings.delivery_timeout_s))
        log.info("ingest.started", path=WEBHOOK_PATH, spool_depth=spool.depth,
                 kafka=settings.kafka_bootstrap, policy=settings.authorization_policy)
        try:
            yield
        finally:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder
            try:  # a drained receiver leaves no spool behind when Kafka is reachable
                await asyncio.wait_for(forward_once(spool, publisher, spool_io, settings.delivery_timeout_s),
                                       settings.delivery_timeout_s)
            except (TimeoutError, OSError) as exc:
                log.warning("spool.not_drained", spool_depth=spool.depth, error=type(exc).__name__)
            await loop.run_in_executor(None, decider.close)
            await loop.run_in_executor(None, publisher.close)
            spool_io.submit(spool.close).result(timeout=5)
            spool_io.shutdown(wait=True)
            readiness.close()
            log.info("ingest.stopped", spool_depth=spool.depth)

    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, receiver.endpoint, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/openapi.json", openapi_route(settings, WEBHOOK_PATH), methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.receiver = receiver
    app.state.spool = spool
    app.state.publisher = publisher
    return app
