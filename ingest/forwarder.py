"""Moves spooled records to Kafka once the broker is back, oldest segment first."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from hookstream.ingest.publisher import PublishError, Publisher
from hookstream.ingest.spool import Spool
from hookstream.logs import get_logger

log = get_logger(__name__)


async def forward_once(spool: Spool, publisher: Publisher, io: Executor, timeout: float) -> int:
    """Forward every sealed segment this process can lock; return the records forwarded."""
    loop = asyncio.get_running_loop()
    if spool.depth == 0 or not publisher.broker_connected():
        return 0
    await loop.run_in_executor(io, spool.seal)
    forwarded = 0
    segments = spool.claim_segments()
    while True:
        item = await loop.run_in_executor(io, next, segments, None)
        if item is None:
            return forwarded
        path, records = item
        pending = [r for r in records if not spool.already_on_kafka(r)]
        if len(pending) < len(records):
            log.info("spool.already_on_kafka", segment=path.name, records=len(records) - len(pending))
        try:
            await asyncio.gather(*(
                publisher.publish(r.topic, r.value, r.key, r.headers, timeout) for r in pending
            ))
        except PublishError as exc:
            log.warning("spool.forward_failed", segment=path.name, error=str(exc))
            await loop.run_in_executor(io, segments.close)
            return forwarded
        await loop.run_in_executor(io, spool.done, path, len(records))
        forwarded += len(records)
        log.info("spool.forwarded", segment=path.name, records=len(records), spool_depth=spool.depth)


async def drain(spool: Spool, publisher: Publisher, io: Executor, timeout: float) -> int:
    """On shutdown: wait (within `timeout`) for a broker connection, then forward what the spool holds.

    Just after a broker restart the producer may not have reconnected yet; `forward_once` alone would
    see no connection and leave the spool behind although Kafka is back.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while spool.depth and not publisher.broker_connected() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return await forward_once(spool, publisher, io, max(deadline - loop.time(), 0.01))


async def run_forwarder(spool: Spool, publisher: Publisher, io: Executor, interval: float,
                        timeout: float) -> None:
    """Background task: retry the spool every `interval` seconds until cancelled."""
    while True:
        try:
            await forward_once(spool, publisher, io, timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - keep forwarding; the spool stays on disk
            log.error("spool.forwarder_error", error=type(exc).__name__, detail=str(exc))
        await asyncio.sleep(interval)
