"""Peer (a): Starlette + aiokafka — key checked, JSON parsed (stdlib), 200 after send_and_wait (acks=all)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from common import BOOTSTRAP, LINGER_MS, OK, accept
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

producer: AIOKafkaProducer


async def webhook(request: Request) -> Response:
    accepted = await accept(request)
    if isinstance(accepted, Response):
        return accepted
    topic, key, body = accepted
    try:
        await producer.send_and_wait(topic, body, key=key)
    except KafkaError:
        return Response(status_code=503)
    return Response(OK, media_type="application/json")


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    global producer
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True,
                                linger_ms=LINGER_MS)
    await producer.start()
    try:
        yield
    finally:
        await producer.stop()


app = Starlette(routes=[Route("/webhooks/cryptomate", webhook, methods=["POST"])], lifespan=lifespan)
