"""Peer (b): Starlette + confluent-kafka — produce() with a delivery callback bridged to an asyncio future."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

from common import BOOTSTRAP, LINGER_MS, OK, accept
from confluent_kafka import KafkaException, Producer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

producer = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "enable.idempotence": True,
                     "linger.ms": LINGER_MS})


def settle(done: asyncio.Future[None], err: Any) -> None:
    if not done.done():
        done.set_exception(KafkaException(err)) if err else done.set_result(None)


async def webhook(request: Request) -> Response:
    accepted = await accept(request)
    if isinstance(accepted, Response):
        return accepted
    topic, key, body = accepted
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def delivered(err: Any, _msg: Any) -> None:  # librdkafka's callback, on the poll thread
        loop.call_soon_threadsafe(settle, done, err)

    try:
        producer.produce(topic, body, key=key, on_delivery=delivered)
        await done
    except (KafkaException, BufferError):
        return Response(status_code=503)
    return Response(OK, media_type="application/json")


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    stopping = threading.Event()

    def poll() -> None:  # serves delivery callbacks
        while not stopping.is_set():
            producer.poll(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield
    finally:
        stopping.set()
        poller.join()
        producer.flush(10)


app = Starlette(routes=[Route("/webhooks/cryptomate", webhook, methods=["POST"])], lifespan=lifespan)
