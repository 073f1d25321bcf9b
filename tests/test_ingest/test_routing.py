"""Every documented event lands on its topic, keyed by its entity, with the body byte for byte."""

from __future__ import annotations

import json

from hookstream.schemas import headers as h
from test_ingest.payloads import CATALOG, VARIANTS, envelope


def test_every_catalog_event_in_every_envelope_form_lands_keyed_and_byte_identical(
    settings, start_receiver, topic_reader
):
    receiver = start_receiver(settings)
    sent: dict[tuple[str, str], list[tuple[bytes, str]]] = {}
    for i, variant in enumerate(VARIANTS):
        for product, event_type, status, op, data, topic, key in CATALOG:
            body = envelope(product, event_type, status, f"{op}-{i}", data, **variant)
            response = receiver.post(body)
            assert response.status_code == 200, (product, event_type, variant, response.text)
            if event_type == "authorization":
                assert set(response.json()) == {"response_code"}
            else:
                assert response.json() == {"response_code": "OK"}
            sent.setdefault((topic, key), []).append((body, variant["generation"]))

    for topic in {t for t, _ in sent}:
        expected = [(k, b) for (t, k), bodies in sent.items() if t == topic for b, _ in bodies]
        records = topic_reader(topic, len(expected))
        assert len(records) == len(expected), topic
        by_value = {r.value: r for r in records}
        for key, body in expected:
            record = by_value[body]  # the value is the request body, byte for byte
            assert record.key == key.encode()
            assert record.headers[h.PRODUCT] == json.loads(body).get("product", json.loads(body).get("operation", "")).lower()
            assert record.headers[h.GENERATION] in {"A", "B"}
            assert record.headers[h.DEDUP_KEY]
            assert int(record.headers[h.RECEIVED_AT]) > 0


def test_one_cards_records_stay_in_order_on_one_partition(settings, start_receiver, topic_reader):
    receiver = start_receiver(settings)
    card = CATALOG[0][4] | {"card_id": "crd_order"}
    steps = [("authorization", "pending"), ("authorized", "success"), ("cleared", "success"),
             ("refund", "success")]
    for event_type, status in steps:
        assert receiver.post(envelope("cards", event_type, status, "op-order", card)).status_code == 200
    records = topic_reader("cryptomate.cards.transactions", len(steps))
    assert len({r.partition for r in records}) == 1
    ordered = sorted(records, key=lambda r: r.offset)
    assert [r.headers[h.EVENT_TYPE] for r in ordered] == [e for e, _ in steps]


def test_generation_a_and_b_of_one_event_share_a_dedup_key(settings, start_receiver, topic_reader):
    receiver = start_receiver(settings)
    product, event_type, status, op, data, topic, _ = CATALOG[3]
    for variant in VARIANTS:
        assert receiver.post(envelope(product, event_type, status, op, data, **variant)).status_code == 200
    records = topic_reader(topic, len(VARIANTS))
    assert len(records) == len(VARIANTS)
    assert {r.headers[h.DEDUP_KEY] for r in records} == {"cards:cleared:success:txn_1"}
