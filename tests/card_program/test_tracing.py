"""One webhook, one trace: `hookstream ingest` → Kafka → `hookstream process three-ds` → outbox → the API call
the sandbox receives, exported over OTLP/HTTP to a receiver this test runs."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import httpx

from card_program.conftest import WEBHOOK_KEY, envelope, fund, wait_until
from fixtures.feed import Feed
from fixtures.otlp import Collector, Span, otlp  # noqa: F401 — the fixture
from hookstream.schemas.routing import CARDS_3DS

RESPOND = "/cards/virtual-cards/{cardId}/3ds-authorization"


def spans_of(collector: Collector, trace_id: str, want: int) -> list[Span]:
    return wait_until(lambda: len(s := [x for x in collector.snapshot() if x.trace_id == trace_id]) >= want and s,
                      f"{want} spans of trace {trace_id}")


def one(spans: list[Span], kind: str, service: str) -> Span:
    found = [s for s in spans if s.kind == kind and s.service == service]
    assert len(found) == 1, (kind, service, spans)
    return found[0]


def challenge(code: str) -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return envelope("B", "cards", "notification_3ds_authorization", "pending", code,
                    {"code": code, "card_id": "crd_webhook", "merchant_name": "Acme Coffee",
                     "merchant_country_code": "USA", "transaction_amount": "1.00", "transaction_currency": "USD",
                     "transaction_timestamp": now})


def test_one_webhook_gives_one_connected_trace_across_receiver_processor_and_api_call(
        e2e_settings, e2e_ledger, processes, start_pipeline, start_processor, otlp):  # noqa: F811
    fund(e2e_ledger, "acct-1", "100.00", cards={"crd_webhook": "WEBHOOK"})
    sandbox = start_pipeline(e2e_settings, **otlp.env())
    three_ds = start_processor("three-ds", e2e_settings, api_url=sandbox.base, **otlp.env())

    code = sandbox.trigger("3ds", card_id="crd_webhook", transaction_amount="42.50")["code"]
    wait_until(lambda: sandbox.control("GET", "3ds-responses"), "the 3DS answer")
    (call,) = [c for c in sandbox.calls(RESPOND.replace("{cardId}", "crd_webhook")) if c["template"] == RESPOND]
    version, trace_id, client_span_id, flags = call["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1, "sampled"  # 0x02, trace-context level 2's "random", may be set

    spans = spans_of(otlp, trace_id, 4)
    server = one(spans, "SERVER", "hookstream-ingest")
    consumer = one(spans, "CONSUMER", "hookstream-three-ds")
    dispatch = one(spans, "INTERNAL", "hookstream-three-ds")
    client = one(spans, "CLIENT", "hookstream-three-ds")
    assert len(spans) == 4 and {s.service for s in spans} == {"hookstream-ingest", "hookstream-three-ds"}
    # The sandbox sent no traceparent: the receiver started the trace, and every hop hangs off it.
    assert server.parent_span_id == ""
    assert consumer.parent_span_id == server.span_id, "the record's traceparent is the receiver's span"
    assert dispatch.parent_span_id == consumer.span_id, "the outbox row's traceparent is the processor's span"
    assert client.parent_span_id == dispatch.span_id
    assert client.span_id == client_span_id, "the API received the client span as traceparent"

    topic = e2e_settings.topic(CARDS_3DS)
    assert server.attributes["http.response.status_code"] == 200
    assert server.events == ("authenticated", "validated", "published")
    # three-ds decides: its effects are staged when decided and applied with the batch's commit
    assert consumer.name == f"process {topic}" and consumer.events == ("claimed", "decided", "committed")
    assert consumer.attributes["hookstream.outcome"] == "ok"
    assert (client.name, client.attributes["http.response.status_code"]) == (f"POST {RESPOND}", 200)
    assert dispatch.name == "dispatch respond_3ds"
    # The 3DS code is a secret: no span carries it (its operation id travels as a digest).
    assert code not in json.dumps([s.__dict__ for s in otlp.snapshot()], default=str)

    # Log lines written while a span was current carry its ids; the event.processed line is the record's.
    processed = [e for e in three_ds.log_events("event.processed") if e.get("trace_id") == trace_id]
    assert [e["span_id"] for e in processed] == [consumer.span_id]
    sent = [e for e in three_ds.log_events("dispatch.sent") if e.get("trace_id") == trace_id]
    assert [e["span_id"] for e in sent] == [dispatch.span_id]
    ingest = next(p for p in processes.started if p.name == "ingest")
    published = [json.loads(ln) for ln in ingest.output().splitlines() if '"webhook.published"' in ln]
    assert [(e["trace_id"], e["span_id"]) for e in published] == [(trace_id, server.span_id)]


def test_an_incoming_traceparent_is_continued_and_records_without_one_start_a_trace(
        e2e_settings, e2e_ledger, start_pipeline, start_processor, otlp):  # noqa: F811
    fund(e2e_ledger, "acct-1", "100.00", cards={"crd_webhook": "WEBHOOK"})
    sandbox = start_pipeline(e2e_settings, **otlp.env())
    three_ds = start_processor("three-ds", e2e_settings, api_url=sandbox.base, **otlp.env())

    # A caller that traces: its traceparent and tracestate are continued through Kafka.
    caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    reply = httpx.post(sandbox.ingest_url, content=challenge(str(uuid.uuid4())), timeout=30, headers={
        "content-type": "application/json", "X-Webhook-Key": WEBHOOK_KEY,
        "traceparent": f"00-{caller_trace}-{caller_span}-01", "tracestate": "vendor=opaque"})
    assert reply.status_code == 200
    spans = spans_of(otlp, caller_trace, 2)
    server = one(spans, "SERVER", "hookstream-ingest")
    consumer = wait_until(lambda: [s for s in otlp.snapshot() if s.trace_id == caller_trace
                                   and s.kind == "CONSUMER"], "the processor's span")[0]
    assert server.parent_span_id == caller_span
    assert consumer.parent_span_id == server.span_id and consumer.trace_state == "vendor=opaque"

    # A record with no traceparent (written before tracing was on, or by another producer) is
    # processed as usual, under a trace of its own.
    Feed(e2e_settings).send(challenge(str(uuid.uuid4())))
    roots = wait_until(lambda: [s for s in otlp.snapshot() if s.kind == "CONSUMER" and s.parent_span_id == ""],
                       "the untraced record's span")
    assert len(roots) == 1 and roots[0].trace_id != caller_trace
    assert roots[0].attributes["hookstream.outcome"] == "ok"
    wait_until(lambda: three_ds.outcome("ok") == 2, "both records processed")
