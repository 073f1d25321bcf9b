"""kafka-python 3.0's idempotent producer after an outage longer than its delivery timeout: the dead end
it cannot leave by itself, recognised, and the repair the receiver carries."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import pytest
from kafka.errors import KafkaError

from fixtures.waiting import wait_until
from hookstream.kafka import ensure_topics, make_producer, reinitialize_after_reset, wedged
from hookstream.schemas.routing import DEPOSITS
from hookstream.settings import Settings


@pytest.mark.timeout(600)
def test_repaired_producer_sends_again_after_a_long_outage_where_the_shipped_one_stays_wedged(own_broker, tmp_path):
    settings = Settings(kafka_bootstrap=own_broker.bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
                        topic_partitions=1, spool_dir=tmp_path / "spool", webhook_keys="k" * 16,
                        delivery_timeout_s=1.0)  # delivery_timeout_ms = 2,000
    ensure_topics(settings, [DEPOSITS])
    topic = settings.topic(DEPOSITS)
    shipped = make_producer(settings, role="shipped")
    del shipped._transaction_manager.reset_producer_id  # undo the factory's repair: the library as shipped
    repaired = make_producer(settings, role="repaired")
    reinitialize_after_reset(repaired)  # the factory already did: a second call must change nothing
    try:
        for producer in (shipped, repaired):
            producer.send(topic, b"before").get(timeout=30)

        # records in flight when the broker goes away are retried, then expire: the producer id is reset
        stop = threading.Event()
        futures = []

        def keep_sending() -> None:
            while not stop.is_set():
                futures.extend(p.send(topic, b"during") for p in (shipped, repaired))
                time.sleep(0.005)

        sender = threading.Thread(target=keep_sending)
        sender.start()
        time.sleep(0.5)
        own_broker.stop()
        time.sleep(0.5)
        stop.set()
        sender.join()
        # outage > delivery timeout + 1 s: in-flight batches expire, the producer id is reset
        wait_until(lambda: wedged(shipped), "the shipped producer to reach its dead end", timeout=60)

        own_broker.start()

        def sends_again() -> bool:  # a record may still join a batch made during the outage and expire with it
            try:
                repaired.send(topic, b"after").get(timeout=10)
                return True
            except KafkaError:
                return False

        wait_until(sends_again, "the repaired producer to send again (a new producer id)", timeout=90)
        assert not wedged(repaired)
        late = shipped.send(topic, b"after")
        with pytest.raises(KafkaError):
            late.get(timeout=10)  # kafka-python as shipped: never sends again
        wait_until(lambda: wedged(shipped), "the shipped producer to still be wedged", timeout=5)
    finally:
        for producer in (shipped, repaired):
            with contextlib.suppress(KafkaError):  # the wedged one cannot flush
                producer.close(timeout=1)
            producer._sender.force_close()
