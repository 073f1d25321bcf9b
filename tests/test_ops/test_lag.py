"""`hookstream lag`: lag from the groups' committed offsets, visible while no processor runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from fixtures.waiting import wait_until
from hookstream.broker import free_port
from hookstream.kafka import ensure_topics
from hookstream.schemas.routing import CARDS_TRANSACTIONS

CLI = [sys.executable, "-m", "hookstream.cli"]


def test_lag_reports_committed_offsets_per_group_and_partition_and_dead_letters(settings, processes):
    ensure_topics(settings, [CARDS_TRANSACTIONS, "hookstream.cards.dlq"], partitions=1)
    topic, dlq = settings.topic(CARDS_TRANSACTIONS), settings.topic("hookstream.cards.dlq")
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for i in range(10):
        producer.send(topic, f"r{i}".encode(), partition=0)
    for i in range(2):
        producer.send(dlq, f"d{i}".encode(), partition=0)
    producer.flush()
    producer.close()
    # The cards group processed 4 records and committed, then its processes died.
    group = settings.topic("hookstream.cards")
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.commit({tp: OffsetAndMetadata(4, "", -1)})
    consumer.close()

    env = {**os.environ, **settings.to_env()}
    result = subprocess.run(CLI + ["lag"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith(group))
    assert row == [group, topic, "0", "4", "10", "6"]
    assert "dead letters: cards 2" in result.stdout

    port = free_port()
    processes.start(["lag", "--serve", str(port), "--interval", "1"], settings.to_env(), name="lag",
                    ready_url=f"http://127.0.0.1:{port}/metrics")

    def scraped() -> str | None:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return text if "hookstream_consumer_group_lag{" in text else None
    text = wait_until(scraped, "the exporter's first measurement", 60)
    assert re.search(rf'hookstream_consumer_group_lag{{group="{re.escape(group)}",partition="0",'
                     rf'topic="{re.escape(topic)}"}} 6\.0', text), text
    assert 'hookstream_dlq_records{processor="cards"} 2.0' in text
    assert "hookstream_kafka_up 1.0" in text
