"""The receiver's Starlette application: routes, lifespan, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hookstream import heap, metrics, tracing
from hookstream.ingest.authorization import Decider, load_policy
from hookstream.ingest.forwarder import drain, run_forwarder
from hookstream.ingest.openapi import openapi_route
from hookstream.ingest.publisher import Publisher
from hookstream.ingest.receiver import Receiver, WebhookFastPath
from hookstream.ingest.spool import Spool
from hookstream.logs import configure_logging, get_logger, register_secrets
from hookstream.schemas.routing import TOPICS
from hookstream.settings import Settings, get_settings

log = get_logger(__name__)

WEBHOOK_PATH = "/webhooks/cryptomate"
SHUTDOWN_DRAIN_MIN_S = 10.0


class Probes:
    """Liveness and readiness read from the producer itself (no client or thread of their own)."""

    def __init__(self, settings: Settings, publisher: Publisher, spool: Spool, decider: Decider) -> None:
        self._publisher = publisher
        self._spool = spool
        self._decider = decider
        # an ack can take up to the delivery timeout; twice that plus slack with no ack is no progress
        self._stall_after_s = 2 * settings.delivery_timeout_s + 5.0
        self._missing_logged: tuple[str, ...] = ()

    def liveness(self) -> str | None:
        """Why this process cannot make progress while work waits (restart it), else None."""
        reason = self._publisher.stalled(self._stall_after_s)
        if reason is not None:
            log.error("ingest.stalled", reason=reason, spool_depth=self._spool.depth,
                      in_flight=self._publisher.in_flight)
        return reason

    def readiness(self) -> tuple[str | None, bool]:
        """Why this receiver should get no traffic now, else None; and whether Kafka is fine."""
        reason = self.kafka_readiness() or self.liveness()  # the producer's stall is Kafka's too
        if reason is not None:
            return reason, False
        policy_problem = self._decider.problem()
        if policy_problem is not None:
            return f"authorization policy cannot decide: {policy_problem}", True
        return None, True

    def kafka_readiness(self) -> str | None:
        """Why webhooks cannot be made durable now, else None."""
        publisher = self._publisher
        if not publisher.connected:
            return publisher.unavailable or "kafka producer not connected yet"
        if not publisher.broker_connected():
            return "no connection to a kafka broker"
        if not publisher.has_producer_id():
            return "kafka producer has no producer id yet"
        missing = tuple(publisher.missing_topics())
        if missing != self._missing_logged:
            self._missing_logged = missing
            if missing:
                log.error("ingest.topics_missing", topics=list(missing),
                          hint="run `hookstream topics create` with the same HOOKSTREAM_TOPIC_PREFIX")
        if missing:
            return f"topics missing: {', '.join(missing)} (run `hookstream topics create`)"
        return None


def served_app() -> Starlette:
    """The app `hookstream ingest` serves (uvicorn's factory, in every worker): once started, its heap is settled."""
    return create_app(settle_heap=True)


def create_app(settings: Settings | None = None, publisher: Publisher | None = None, *,
               settle_heap: bool = False) -> Starlette:
    """The receiver app. Everything that touches Kafka or disk starts in the lifespan.

    `settle_heap`: freeze start-up's objects out of the collector's passes once started (`hookstream.heap`);
    for a process that runs only this app (tests that start many apps in one process leave it off)."""
    settings = settings or get_settings()
    # `ingest --workers N` imports this factory in fresh processes: they need the redacting setup too.
    configure_logging(settings.log_level, settings.log_format)
    register_secrets(k.get_secret_value() for k in settings.webhook_keys)
    tracing.configure("hookstream-ingest")  # per worker process: the exporter's thread does not survive a fork
    publisher = publisher or Publisher(settings)
    spool_io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookstream-spool")
    spool = Spool(settings.spool_dir, settings.spool_max_bytes)
    decider = Decider(settings, load_policy(settings.authorization_policy, settings))
    receiver = Receiver(settings, publisher, spool, decider, spool_io)
    probes = Probes(settings, publisher, spool, decider)

    async def healthz(_: Request) -> Response:
        reason = probes.liveness()
        if reason is not None:
            return JSONResponse({"status": "stalled", "reason": reason, "spool_depth": spool.depth},
                                status_code=503)
        return JSONResponse({"status": "ok", "spool_depth": spool.depth})

    async def readyz(_: Request) -> Response:
        reason, kafka_ok = probes.readiness()
        body = {"status": "ready" if reason is None else "unavailable", "kafka": kafka_ok,
                "spool_depth": spool.depth}
        if reason is not None:
            body["reason"] = reason
        return JSONResponse(body, status_code=200 if reason is None else 503)

    async def metrics_endpoint(_: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        publisher.start(loop, [settings.topic(t) for t in TOPICS])
        forwarder = asyncio.create_task(run_forwarder(
            spool, publisher, spool_io, settings.spool_forward_interval_s, settings.delivery_timeout_s))
        log.info("ingest.started", path=WEBHOOK_PATH, spool_depth=spool.depth,
                 kafka=settings.kafka_bootstrap, policy=settings.authorization_policy)
        if settle_heap:
            heap.settle()
        try:
            yield
        finally:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder
            # A drained receiver leaves no spool behind when Kafka is reachable. Just after a broker restart the
            # producer still has to reconnect and may need a new producer id: give it more than one delivery
            # timeout, bounded well inside Kubernetes' 30 s grace period (what is not forwarded stays on disk).
            drain_s = max(settings.delivery_timeout_s, SHUTDOWN_DRAIN_MIN_S)
            try:
                await asyncio.wait_for(drain(spool, publisher, spool_io, drain_s), drain_s + 1.0)
            except (TimeoutError, OSError) as exc:
                log.warning("spool.not_drained", spool_depth=spool.depth, error=type(exc).__name__)
            await loop.run_in_executor(None, decider.close)
            await loop.run_in_executor(None, publisher.close, min(5.0, settings.delivery_timeout_s))
            spool_io.submit(spool.close).result(timeout=5)
            spool_io.shutdown(wait=True)
            log.info("ingest.stopped", spool_depth=spool.depth)
            await loop.run_in_executor(None, tracing.shutdown)  # the last spans leave before the process does

    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, receiver.endpoint, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/openapi.json", openapi_route(settings, WEBHOOK_PATH), methods=["GET"]),
        ],
        lifespan=lifespan,
        middleware=[Middleware(WebhookFastPath, receiver=receiver, path=WEBHOOK_PATH)],
    )
    app.state.receiver = receiver
    app.state.spool = spool
    app.state.publisher = publisher
    return app
