"""The webhook endpoint: one request → authenticated, validated, routed, durable, answered."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from hookstream import metrics, tracing
from hookstream.ingest.auth import KeyRing, timestamp_fresh
from hookstream.ingest.authorization import AuthorizationRequest, Decider
from hookstream.ingest.publisher import Headers, PublishError, Publisher
from hookstream.ingest.spool import Spool, SpooledRecord, SpoolFull, SpoolWriter
from hookstream.logs import get_logger
from hookstream.schemas import headers as h
from hookstream.schemas.envelope import Envelope, EnvelopeError, parse_envelope
from hookstream.schemas.events import Authorization
from hookstream.schemas.routing import (
    NEVER_RETRIED, QUARANTINE, UNROUTED, dedup_key, loggable_operation_id, parse_data, partition_key, route_for,
)
from hookstream.settings import Settings

log = get_logger(__name__)

JSON = "application/json"
OK = b'{"response_code":"OK"}'
UNAUTHORIZED = Response(b"", status_code=401)
TOO_LARGE = b'{"response_code":"PAYLOAD_TOO_LARGE"}'
UNAVAILABLE = b'{"response_code":"UNAVAILABLE"}'


class BodyTooLarge(Exception):
    pass


SHOWN_CHARS = 64  # of a value the client sent, in a rejection line: enough to recognise it, never a flood


def shown(value: object) -> object:
    """A client-sent value as a rejection line may show it: at most SHOWN_CHARS characters and the full length.

    A header may be megabytes long (httptools accepts it); rendering, redacting and writing such a line took the
    event loop 0.1–0.7 s per MiB, every other request waiting meanwhile (issue 15, docs/reliability.md).
    """
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return f"{value[:SHOWN_CHARS]}…({len(value)} chars)"
    return value


class RejectionLog:
    """Refused requests, logged at most once per reason per interval with how many were held back:
    a flood of bad requests must not flood the log. Never logs the presented key, and shows client-sent values
    bounded (`shown`)."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self._interval = interval_s
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, reason: str, request: Request, **fields: object) -> None:
        metrics.webhooks_rejected.labels(reason).inc()
        now = time.monotonic()
        if now < self._next.get(reason, 0.0):
            self._held[reason] = self._held.get(reason, 0) + 1
            return
        self._next[reason] = now + self._interval
        peer = request.client.host if request.client is not None else None
        log.warning("webhook.rejected", reason=reason, peer=peer, held_back=self._held.pop(reason, 0),
                    **{name: shown(value) for name, value in fields.items()})


class _Children:
    """Prometheus label children resolved once per label values, not once per request."""

    def __init__(self, metric: Any, method: str) -> None:
        self._metric, self._method = metric, method
        self._children: dict[tuple[str, ...], Callable[..., None]] = {}

    def __call__(self, *labels: str) -> Callable[..., None]:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = getattr(self._metric.labels(*labels), self._method)
        return child


class Receiver:
    """Holds what every request needs, built once per process."""

    def __init__(self, settings: Settings, publisher: Publisher, spool: Spool, decider: Decider,
                 spool_io: Executor) -> None:
        self.settings = settings
        self.publisher = publisher
        self.spool = spool
        self.decider = decider
        self.keys = KeyRing(settings.webhook_keys)
        self._spool_writer = SpoolWriter(spool, spool_io)  # spool_io: one thread, so writes stay ordered
        self._max_body = settings.max_body_bytes
        self._timeout = settings.delivery_timeout_s
        self._budget = settings.authorization_budget_ms / 1000
        self._topic_unrouted = settings.topic(UNROUTED)
        self._topic_quarantine = settings.topic(QUARANTINE)
        self._retry_after = {"Retry-After": str(settings.retry_after_s)}
        self._rejected = RejectionLog()
        self._request_seconds = _Children(metrics.request_seconds, "observe")
        self._received = _Children(metrics.webhooks_received, "inc")
        self._published = _Children(metrics.webhooks_published, "inc")
        self._tracer = tracing.tracer("hookstream.ingest")  # None: not exporting, no tracing work at all
        self._publish = self.publisher.publish if self._tracer is None else self._publish_traced

    async def endpoint(self, request: Request) -> Response:
        started = time.perf_counter()
        if self._tracer is None:
            response = await self._handle(request, started)
        else:
            response = await self._handle_traced(request, started)
        self._request_seconds("webhook", str(response.status_code))(time.perf_counter() - started)
        return response

    async def _handle_traced(self, request: Request, started: float) -> Response:
        """The request as one SERVER span, continuing the caller's `traceparent` if it sent one."""
        with self._tracer.start_as_current_span(
            "POST /webhooks/cryptomate", context=tracing.extract(request.headers), kind=tracing.kind("SERVER"),
            attributes={"http.request.method": "POST", "url.path": request.url.path},
        ) as span:
            response = await self._handle(request, started)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                tracing.fail(span, "not made durable")
            return response

    async def _handle(self, request: Request, started: float) -> Response:
        hdrs = request.headers
        presented = hdrs.get("x-webhook-key")
        if not self.keys.verify(presented):
            self._rejected("unauthorized", request, status=401,
                           detail="no X-Webhook-Key" if presented is None else "X-Webhook-Key not accepted")
            return UNAUTHORIZED
        request_ts = hdrs.get("x-request-timestamp")
        if not timestamp_fresh(request_ts, self.settings.request_timestamp_window_s):
            self._rejected("stale_timestamp", request, status=401, request_timestamp=request_ts)
            return UNAUTHORIZED
        try:
            body = await self._read_body(request)
        except BodyTooLarge:
            self._rejected("too_large", request, status=413, content_length=hdrs.get("content-length"),
                           max_body_bytes=self._max_body)
            return Response(TOO_LARGE, status_code=413, media_type=JSON)
        except ClientDisconnect:
            metrics.webhooks_rejected.labels("disconnected").inc()
            return Response(b"", status_code=400)

        received_at = str(int(time.time() * 1000)).encode()
        base: Headers = [(h.RECEIVED_AT, received_at)]
        if request_ts is not None:
            base.append((h.REQUEST_TIMESTAMP, h.fit(request_ts.encode())))
        trace = hdrs.get("x-trace-id")
        if trace is not None:
            base.append((h.TRACE_ID, h.fit(trace.encode())))
        if self._tracer is not None:  # the processor's span continues this request's
            span = tracing.current_span()
            span.add_event("authenticated")
            base.extend(tracing.record_headers(span))

        try:
            envelope = parse_envelope(body)
        except EnvelopeError as exc:
            return await self._quarantine(body, None, exc, base)
        route = route_for(envelope)
        if route is None:
            return await self._unrouted(body, envelope, base)
        try:
            data = parse_data(envelope, route)
        except EnvelopeError as exc:
            return await self._quarantine(body, envelope, exc, base)

        operation_id = loggable_operation_id(envelope)  # once: headers, key, logs and spans use it
        dedup = dedup_key(envelope, operation_id)
        record_headers = envelope_headers(envelope, dedup, operation_id) + base
        if self._tracer is not None:
            tracing.current_span().add_event("validated", {
                "hookstream.product": envelope.product, "hookstream.event_type": envelope.event_type,
                "hookstream.operation_id": operation_id})
        key = partition_key(envelope, route)
        topic = self.settings.topic(route.topic)
        self._received(envelope.product, envelope.event_type)()

        if envelope.event_type == "authorization":
            assert isinstance(data, Authorization)
            return await self._authorization(envelope, data, dedup, topic, key, body, record_headers, started,
                                             operation_id)
        if envelope.event_type in NEVER_RETRIED:
            timeout = min(self._timeout, self.settings.spool_after_s)
            return await self._durable_or_spool(envelope, topic, key, body, record_headers, timeout, OK, operation_id)
        return await self._durable(envelope, topic, key, body, record_headers, operation_id)

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            raise BodyTooLarge()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body:
                raise BodyTooLarge()
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # --- outcomes ------------------------------------------------------------------------------
    async def _durable(self, env: Envelope, topic: str, key: bytes, body: bytes, headers: Headers,
                       operation_id: str) -> Response:
        """Regular events: 200 only once Kafka has the record, else 503 (the platform retries)."""
        try:
            published = await self._publish(topic, body, key, headers, self._timeout)
        except PublishError as exc:
            return self._unavailable(env.product, env.event_type, exc)
        self._published(env.product, env.event_type)()
        log.info("webhook.published", operation_id=operation_id, event_type=env.event_type,
                 topic=published.topic, partition=published.partition, offset=published.offset)
        return Response(OK, media_type=JSON)

    async def _durable_or_spool(self, env: Envelope, topic: str, key: bytes, body: bytes, headers: Headers,
                                timeout: float, answer: bytes, operation_id: str, status: int = 200,
                                labels: tuple[str, str] | None = None) -> Response:
        """Never-retried events: Kafka if it acks within `timeout`, else the fsync'd spool; answered `status`.

        A record acknowledged after its timeout is already on Kafka: the forwarder then skips its spooled copy.
        `labels` (product, event_type) for the metrics when the record is not the event's own (quarantine).
        """
        product, event_type = labels or (env.product, env.event_type)
        try:
            published = await self._publish(
                topic, body, key, headers, timeout,
                late_ack=functools.partial(self.spool.acknowledged_late, topic, key, body))
        except PublishError as exc:
            record = SpooledRecord(topic, key, body, headers + [(h.SPOOLED, b"1")])
            try:
                await self._spool_writer.append(record)
            except (SpoolFull, OSError) as spool_exc:
                log.error("webhook.spool_failed", operation_id=operation_id, error=str(spool_exc))
                return self._unavailable(product, event_type, exc)
            if self._tracer is not None:
                tracing.current_span().add_event("spooled", {"hookstream.spool_depth": self.spool.depth})
            log.warning("webhook.spooled", operation_id=operation_id, event_type=env.event_type,
                        cause=str(exc), spool_depth=self.spool.depth)
            return Response(answer, status_code=status, media_type=JSON)
        self._published(product, event_type)()
        log.info("webhook.published", operation_id=operation_id, event_type=env.event_type,
                 topic=published.topic, partition=published.partition, offset=published.offset)
        return Response(answer, status_code=status, media_type=JSON)

    async def _authorization(self, env: Envelope, data: Authorization, dedup: str, topic: str, key: bytes,
                             body: bytes, headers: Headers, started: float, operation_id: str) -> Response:
        """Decide within the budget, make the event + decision durable, answer the code."""
        budget_left = self._budget - (time.perf_counter() - started)
        # keep ~a quarter of the budget for making the record durable (Kafka ack or spool fsync)
        decision, elapsed = await self.decider.decide(
            AuthorizationRequest(env, data, dedup), max(budget_left * 0.75, 0.01)
        )
        decided = time.perf_counter()
        if self._tracer is not None:
            tracing.current_span().add_event("decided", {
                "hookstream.response_code": decision.response_code, "hookstream.decision_reason": decision.reason,
                "hookstream.decision_ms": round(elapsed * 1000, 3)})
        headers = headers + [
            (h.RESPONSE_CODE, decision.response_code.encode()),
            (h.DECISION_REASON, decision.reason.encode()),
            (h.DECISION_MS, f"{elapsed * 1000:.3f}".encode()),
        ]
        if decision.hold_id:
            headers.append((h.HOLD_ID, decision.hold_id.encode()))
        answer = json.dumps({"response_code": decision.response_code}, separators=(",", ":")).encode()
        publish_timeout = max(self._budget - (time.perf_counter() - started) - 0.05, 0.01)
        log.info("authorization.decided", operation_id=operation_id, dedup_key=dedup,
                 response_code=decision.response_code, reason=decision.reason,
                 decision_ms=round(elapsed * 1000, 3))
        response = await self._durable_or_spool(env, topic, key, body, headers, publish_timeout, answer, operation_id)
        done = time.perf_counter()
        if done - started > self._budget:  # the phases say where it went: decision, or Kafka ack / spool fsync
            log.warning("authorization.over_budget", operation_id=operation_id,
                        took_ms=round((done - started) * 1000, 1), decision_ms=round(elapsed * 1000, 1),
                        durable_ms=round((done - decided) * 1000, 1), budget_ms=round(self._budget * 1000))
        return response

    async def _unrouted(self, body: bytes, env: Envelope, base: Headers) -> Response:
        """Authentic, but a product/event type this version does not know: kept, answered 200."""
        headers = envelope_headers(env, dedup_key(env)) + base
        self._received("unrouted", "unrouted")()
        try:
            await self._publish(self._topic_unrouted, body, loggable_operation_id(env).encode(), headers,
                                         self._timeout)
        except PublishError as exc:
            return self._unavailable("unrouted", "unrouted", exc)
        log.warning("webhook.unrouted", product=env.product, event_type=env.event_type,
                    operation_id=loggable_operation_id(env))
        self._published("unrouted", "unrouted")()
        return Response(OK, media_type=JSON)

    async def _quarantine(self, body: bytes, env: Envelope | None, exc: EnvelopeError, base: Headers) -> Response:
        """Authentic but invalid: the raw body and the error go to quarantine; answered 400."""
        error = json.dumps({"error": str(exc), "details": exc.errors}, separators=(",", ":"))
        operation_id = loggable_operation_id(env) if env is not None else None
        headers = (envelope_headers(env, dedup_key(env, operation_id), operation_id) if env is not None else []) + base
        headers.append((h.ERROR, error[:4096].encode()))
        self._received("invalid", "invalid")()
        key = operation_id.encode() if operation_id is not None else None
        payload = json.dumps({"response_code": "INVALID", "error": str(exc),
                              "fields": [e["loc"] for e in exc.errors]}, separators=(",", ":")).encode()
        if env is not None and operation_id is not None and env.event_type in NEVER_RETRIED:
            # An invalid authorization or 3DS challenge is never sent again either: through an outage it is
            # spooled like a valid one (kept), not refused with a 503 nobody retries.
            log.warning("webhook.quarantined", error=str(exc), details=exc.errors)
            timeout = min(self._timeout, self.settings.spool_after_s, self._budget - 0.05)  # answered in time
            return await self._durable_or_spool(env, self._topic_quarantine, key or b"", body, headers,
                                                timeout, payload, operation_id, 400, ("invalid", "invalid"))
        try:
            await self._publish(self._topic_quarantine, body, key, headers, self._timeout)
        except PublishError as pub_exc:
            return self._unavailable("invalid", "invalid", pub_exc)
        log.warning("webhook.quarantined", error=str(exc), details=exc.errors)
        self._published("invalid", "invalid")()
        return Response(payload, status_code=400, media_type=JSON)

    async def _publish_traced(self, topic: str, value: bytes, key: bytes | None, headers: Headers,
                              timeout: float, late_ack: Callable[[], None] | None = None) -> Any:
        """`Publisher.publish`, then a `published` event: where the record is; the time since `validated` is
        the broker's acknowledgement. An event, not a child span: a span costs about twice as much (benchmarks)."""
        published = await self.publisher.publish(topic, value, key, headers, timeout, late_ack)
        tracing.current_span().add_event("published", {
            "messaging.destination.name": topic, "messaging.destination.partition.id": str(published.partition),
            "messaging.kafka.offset": published.offset})
        return published

    def _unavailable(self, product: str, event_type: str, exc: Exception) -> Response:
        metrics.webhooks_failed.labels(product, event_type, "broker_unavailable").inc()
        log.error("webhook.not_durable", product=product, event_type=event_type, error=str(exc))
        return Response(UNAVAILABLE, status_code=503, media_type=JSON, headers=self._retry_after)


class WebhookFastPath:
    """ASGI middleware: a POST on the webhook path goes straight to the receiver, without the router,
    endpoint wrapper and exception-middleware layers per request (their work is for other routes: the
    receiver answers every outcome itself). Everything else, any other spelling of the path and a mounted
    root path go on to the app. Sits inside Starlette's ServerErrorMiddleware: a crash is still a 500."""

    def __init__(self, app: ASGIApp, receiver: Receiver, path: str) -> None:
        self._app, self._endpoint, self._path = app, receiver.endpoint, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self._path and scope["method"] == "POST" \
                and not scope.get("root_path"):
            response = await self._endpoint(Request(scope, receive, send))
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)


def envelope_headers(env: Envelope, dedup: str, operation_id: str | None = None) -> Headers:
    """The normalised metadata every published record carries (values are never secrets).
    `operation_id`: `loggable_operation_id(env)` when the caller has it already."""
    if operation_id is None:
        operation_id = loggable_operation_id(env)
    return [*_kind_headers(env.generation, env.product, env.event_type, env.status),
            (h.OPERATION_ID, operation_id.encode()), (h.DEDUP_KEY, dedup.encode())]


@functools.lru_cache(maxsize=1024)
def _kind_headers(generation: str, product: str, event_type: str, status: str | None) -> Headers:
    """The headers every event of one kind shares, encoded once."""
    out: Headers = [(h.GENERATION, generation.encode()), (h.PRODUCT, product.encode()),
                    (h.EVENT_TYPE, event_type.encode())]
    if status is not None:
        out.append((h.STATUS, status.encode()))
    return out
