"""Hostile input through HTTP into a real receiver on a real broker: bounded, kept, never secret in logs."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from hookstream.schemas import headers as h
from test_ingest.conftest import KEY
from test_ingest.payloads import CATALOG, card_txn, envelope

LEDGER_POLICY = {"HOOKSTREAM_AUTHORIZATION_POLICY": "hookstream.ingest.policy:ledger_policy"}
HUGE_AMOUNTS = [b"1e999999", b"1E+100000000", b'"1E+100000000"', b'"1e999999"', b"-1e999999", b"1" + b"0" * 5000]
PLATFORM_DEADLINE_S = 1.2  # for authorizations (platform reference §1.1)
THREE_DS = CATALOG[9]
DEPOSIT = CATALOG[13]


def _raw_authorization(op: str, amount: bytes) -> bytes:
    body = json.loads(envelope("cards", "authorization", "pending", op, card_txn("crd_huge", "1.00")))
    text = json.dumps(body).replace('"bill_amount": "1.00"', '"bill_amount": AMOUNT')
    assert "AMOUNT" in text
    return text.replace("AMOUNT", amount.decode()).encode()


class _Prober:
    """Probes /healthz back to back in a thread and remembers the slowest answer."""

    def __init__(self, base: str) -> None:
        self._base, self._stop = base, threading.Event()
        self.slowest, self.failures, self.count = 0.0, 0, 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(f"{self._base}/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.slowest = max(self.slowest, time.perf_counter() - started)
                self.failures += not ok
                self.count += 1
                self._stop.wait(0.05)

    def __enter__(self) -> _Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_amount_with_a_huge_exponent_is_quarantined_and_never_stalls_other_requests(
    settings, start_receiver, topic_reader
):
    receiver = start_receiver(settings, **LEDGER_POLICY)
    bad = [_raw_authorization(f"huge-{i}", amount) for i, amount in enumerate(HUGE_AMOUNTS)]
    warm_up = b'{"product": "cards"'  # the quarantine topic's metadata is fetched once, before timing
    assert receiver.post(warm_up).status_code == 400
    # the yardstick: as many ordinary invalid bodies (truncated JSON), sent the same way on this machine
    ordinary = [_raw_authorization(f"ordinary-{i}", b"1.00")[:-20] for i in range(len(bad))]
    with _Prober(receiver.base) as prober, ThreadPoolExecutor(len(bad)) as pool:
        yardstick = list(pool.map(lambda body: _timed(receiver.post, body), ordinary))
        answers = list(pool.map(lambda body: _timed(receiver.post, body), bad))
        # a regular authorization right after still gets its own decision
        normal = receiver.post(envelope("cards", "authorization", "pending", "normal-1", card_txn("crd_n", "5.00")))
        time.sleep(0.3)
    assert [r.status_code for r, _ in yardstick] == [400] * len(ordinary)
    # a huge exponent costs what any invalid body costs: within the platform deadline, or within
    # twice the ordinary bodies' time when this shared machine is slower than that for everything
    bound = max(PLATFORM_DEADLINE_S, 2 * max(s for _, s in yardstick))
    for response, seconds in answers:
        assert response.status_code == 400
        assert response.json()["response_code"] == "INVALID"
        assert seconds < bound, f"a bad amount held its request {seconds:.2f}s (bound {bound:.2f}s)"
    assert normal.status_code == 200 and normal.json()["response_code"]
    assert prober.count > 0 and prober.failures == 0
    assert prober.slowest < 1.0, f"/healthz stalled {prober.slowest:.2f}s"
    kept = topic_reader("cryptomate.quarantine", 2 * len(bad) + 1)
    assert sorted(r.value for r in kept) == sorted(bad + ordinary + [warm_up])


def _timed(post, body: bytes) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = post(body)
    return response, time.perf_counter() - started


def test_oversized_trace_header_is_cut_and_the_body_is_kept_for_every_event_kind(
    settings, start_receiver, topic_reader
):
    receiver = start_receiver(settings)
    trace = "t" * (1024 * 1024)
    stamp = str(int(time.time() * 1000))
    bodies = {}
    for topic, entry in (("cryptomate.deposits", DEPOSIT), ("cryptomate.cards.3ds", THREE_DS),
                         ("cryptomate.cards.transactions", CATALOG[0])):
        product, event_type, status, op, data, _, _ = entry
        bodies[topic] = envelope(product, event_type, status, op, data)
        response = receiver.post(bodies[topic], **{"X-Trace-Id": trace, "X-Request-Timestamp": stamp})
        assert response.status_code == 200, response.text
    for topic, body in bodies.items():
        [record] = topic_reader(topic, 1)
        assert record.value == body
        assert record.headers[h.TRACE_ID].startswith("t" * 100)
        assert len(record.headers[h.TRACE_ID]) <= h.MAX_VALUE_BYTES
        assert record.headers.get(h.SPOOLED) is None  # straight to Kafka, not parked in the spool
    assert receiver.proc.alive()
    assert httpx.get(f"{receiver.base}/healthz", timeout=5).json()["spool_depth"] == 0


def test_3ds_operation_id_is_never_logged_in_any_accepted_spelling(settings, start_receiver, topic_reader):
    receiver = start_receiver(settings, HOOKSTREAM_LOG_LEVEL="debug")
    product, _, status, _, data, _, _ = THREE_DS
    spellings = [
        ("B", "cards", "notification_3ds_authorization"),
        ("B", "CARDS", "NOTIFICATION_3DS_AUTHORIZATION"),
        ("B", "Cards", " Notification_3DS_Authorization "),
        ("B", "cards", "notification-3ds-authorization"),
        ("B", "cards", "Notification 3DS Authorization"),
        ("B", "cards", "notification.3ds.authorization"),
        ("A", "CARDS", "NOTIFICATION_3DS_AUTHORIZATION"),
        ("A", "cards", "notification-3ds-authorization"),
        ("B", "cards", "NOTIFICATION_3DS_AUTHORİZATION"),  # dotted capital I: not the canonical name
        ("B", "cards", "3ds_challenge"),  # an event type this version does not know
        ("B", "cards", "notification_3ds_authorization_v2"),
    ]
    codes = []
    for i, (generation, prod, event_type) in enumerate(spellings):
        code = f"3ds-secret-{i:02d}-6c1f0e2a"
        codes.append(code)
        doc = {("operation" if generation == "A" else "product"): prod,
               ("sub_operation" if generation == "A" else "event_type"): event_type,
               "operation_id": code, "status": status, "data": {**data, "code": code}}
        response = receiver.post(json.dumps(doc).encode(), **{"X-Trace-Id": f"trace-{i}"})
        assert response.status_code == 200, (event_type, response.text)
    records = topic_reader("cryptomate.cards.3ds", 8) + topic_reader("cryptomate.unrouted", 3)
    assert len(records) == len(spellings)
    receiver.proc.stop()
    lines = [json.loads(line) for line in receiver.proc.output().splitlines() if line.startswith("{")]
    logged_ids = [line["operation_id"] for line in lines if "operation_id" in line]
    assert len(logged_ids) >= len(spellings)  # every request logged its (masked) operation id
    assert all(op.startswith("sha256-") for op in logged_ids)
    text = receiver.proc.output()
    assert not [code for code in codes if code in text]
    for record in records:  # record keys and headers carry the digest, the body keeps the code
        assert record.headers[h.OPERATION_ID].startswith("sha256-")
        assert json.loads(record.value)["operation_id"] in codes
        assert not any(code in value for value in record.headers.values() for code in codes)
