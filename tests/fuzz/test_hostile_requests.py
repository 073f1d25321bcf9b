"""Generated hostile requests into a real receiver on a real broker: the promises of issue 15 hold for all."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hypothesis_settings

from fuzz.conftest import CASES, RSS_GROWTH_BOUND, Watch, rss_bytes
from fuzz.strategies import Case, case_strategy
from test_ingest.conftest import KEY
from test_ingest.payloads import CATALOG, envelope

NOT_5XX = {200, 400, 401, 413}
KEPT = {200, 400}  # authentic and answered: on a topic, unrouted or quarantine
FUZZ = hypothesis_settings(
    max_examples=CASES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _sized(limit: int, over: int) -> bytes:
    """A valid deposit padded to exactly `limit + over` bytes."""
    product, event_type, status, op, data, _, _ = CATALOG[13]
    skeleton = envelope(product, event_type, status, op, {**data, "padding": ""})
    body = envelope(product, event_type, status, op, {**data, "padding": "x" * (limit + over - len(skeleton))})
    assert len(body) == limit + over
    return body


def _send(client: httpx.Client, url: str, case: Case) -> int:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in case.headers]
    return client.post(url, content=case.body, headers=headers).status_code


@pytest.mark.timeout(300 + CASES // 4)  # ~0.1 s a case on a busy 2-core machine, with margin
def test_hostile_requests_get_no_5xx_lose_no_authentic_body_and_publish_nothing_unauthenticated(
    settings, fuzz_receiver, all_records
):
    receiver = fuzz_receiver
    limit = settings.max_body_bytes
    outcomes: list[tuple[Case, int]] = []
    timeline: list[tuple[float, float, int, int, int]] = []  # start, end, status, body bytes, header bytes
    client = httpx.Client(timeout=30)
    rss_start = rss_bytes(receiver.proc.pid)

    at_limit, past_limit = _sized(limit, 0), _sized(limit, 1)
    key = [("X-Webhook-Key", KEY)]

    @FUZZ
    @given(case_strategy(limit))
    @example(Case(at_limit, key, True))
    @example(Case(past_limit, key, True))
    @example(Case(past_limit, [], False))
    @example(Case(at_limit, key + [("X-Trace-Id", "t" * 2**20)], True))
    def one_request(case: Case) -> None:
        started = time.monotonic()
        status = _send(client, receiver.url, case)
        timeline.append((started, time.monotonic(), status, len(case.body), sum(len(v) for _, v in case.headers)))
        outcomes.append((case, status))
        assert status in NOT_5XX, f"{status} for {case.body[:200]!r} {[(k, v[:40]) for k, v in case.headers]}"
        if case.authentic is False:
            assert status == 401
        fresh_and_small = not any(k.lower() == "x-request-timestamp" for k, _ in case.headers)
        if case.authentic and fresh_and_small and len(case.body) <= limit:
            assert status in KEPT
        if case.authentic and len(case.body) > limit:
            assert status in (401, 413)

    with Watch(receiver) as watch:
        one_request()
    client.close()
    rss_growth = rss_bytes(receiver.proc.pid) - rss_start

    kept = {case.body for case, status in outcomes if status in KEPT} | set(watch.canary_bodies)
    refused = {case.body for case, status in outcomes if status not in KEPT} - kept
    records = set(all_records(len(kept)))
    missing = kept - records
    assert not missing, f"{len(missing)} answered bodies not on Kafka, e.g. {sorted(missing)[:3]!r}"
    assert not (refused & records), "a refused (401/413) body was published"
    in_flight = [t for t in timeline for start, end in watch.slow_windows if t[0] < end and t[1] > start]
    print(f"fuzz: slow windows {watch.slow_windows}, requests in flight then (start, end, status, body, "
          f"headers): {in_flight[:20]}, slowest request {max(t[1] - t[0] for t in timeline):.3f}s")
    assert rss_growth < RSS_GROWTH_BOUND, f"receiver RSS grew {rss_growth / 2**20:.0f} MiB"

    receiver.proc.stop()
    log = receiver.proc.output()
    secrets = {case.secret for case, _ in outcomes if case.secret}
    assert secrets and not [s for s in secrets if s in log], "a 3DS code reached the receiver's log"
    statuses = sorted({status for _, status in outcomes})
    print(f"fuzz: {len(outcomes)} cases, statuses {statuses}, {len(kept)} kept, {len(refused)} refused, "
          f"{watch.probes} probes (slowest {watch.probe_slowest:.3f}s), {watch.canaries} authorizations "
          f"(slowest {watch.canary_slowest:.3f}s), RSS +{rss_growth / 2**20:.1f} MiB")
    watch.assert_kept_promises()  # last, so a timing failure still reports every other figure


def _raw_post(port: int, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """One request written as bytes: the client spends no time on MiB-sized header values (h11 checks each one
    with a regular expression while holding the GIL the probe threads need)."""
    head = b"".join([b"POST /webhooks/cryptomate HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
                     b"Content-Length: %d\r\n" % len(body), *(k + b": " + v + b"\r\n" for k, v in headers), b"\r\n"])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        return int(sock.recv(4096).split(b" ", 2)[1])


@pytest.mark.timeout(300)
def test_no_request_delays_another_by_more_than_the_authorization_budget_while_3_mib_of_headers_arrive(
    settings, fuzz_receiver, all_records
):
    """3 MiB of request headers, three senders at once, while probes and canary authorizations flow: the probes
    answer within 1 s and the authorizations within the platform's 1.2 s; an authentic deposit carrying 3 MiB of
    trace headers is kept; the receiver's log never echoes what the client sent (before the fix, one rejection
    line with a 3 MiB X-Request-Timestamp held the event loop for seconds)."""
    receiver = fuzz_receiver
    port = int(receiver.base.rsplit(":", 1)[1])
    product, event_type, status, _, data, _, _ = CATALOG[13]
    key, mib = KEY.encode(), 2**20
    kinds = {  # name: (headers, answer)
        "wrong key, 3 MiB trace id": ([(b"X-Webhook-Key", b"not-the-key"), (b"X-Trace-Id", b"t" * 3 * mib)], 401),
        "3 MiB timestamp": ([(b"X-Webhook-Key", key), (b"X-Request-Timestamp", b"\xe9" * 3 * mib)], 401),
        "3 x 1 MiB trace ids": ([(b"X-Webhook-Key", key), (b"Content-Type", b"application/json")]
                                + [(b"X-Trace-Id", b"\xe9" * mib)] * 3, 200),
    }
    rounds = 20
    answers: dict[str, list[tuple[bytes, int]]] = {name: [] for name in kinds}

    def sender(name: str) -> None:
        headers, _ = kinds[name]
        for n in range(rounds):
            body = envelope(product, event_type, status, f"big-headers-{name}-{n}".replace(" ", "-"), data)
            answers[name].append((body, _raw_post(port, headers, body)))

    with Watch(receiver) as watch:
        senders = [threading.Thread(target=sender, args=(name,)) for name in kinds]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(240)
    longest = max(len(line) for line in receiver.proc.output().splitlines())
    print(f"3 MiB headers: {len(kinds) * rounds} requests, {watch.probes} probes (slowest {watch.probe_slowest:.3f}s), "
          f"{watch.canaries} authorizations (slowest {watch.canary_slowest:.3f}s), longest log line {longest}")
    for name, (_, expected) in kinds.items():
        assert [answer for _, answer in answers[name]] == [expected] * rounds, name
    kept = {body for body, answer in answers["3 x 1 MiB trace ids"]} | set(watch.canary_bodies)
    refused = {body for name in kinds if kinds[name][1] == 401 for body, _ in answers[name]}
    records = set(all_records(len(kept)))
    assert kept <= records, f"{len(kept - records)} answered bodies not on Kafka"
    assert not (refused & records), "a refused body was published"
    watch.assert_kept_promises()
    assert longest < 16 * 1024, f"the receiver logged a {longest}-character line: a client's header echoed"


def _slow_client(port: int, body: bytes, declared: int | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST /webhooks/cryptomate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Webhook-Key: {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {declared or len(body)}\r\n\r\n").encode()
    sock.sendall(head)
    return sock


def test_slow_clients_never_delay_probes_or_authorizations_and_are_kept_when_complete(
    settings, fuzz_receiver, all_records
):
    receiver = fuzz_receiver
    port = int(receiver.base.rsplit(":", 1)[1])
    product, event_type, status, _, data, _, _ = CATALOG[13]
    bodies = [envelope(product, event_type, status, f"slow-{i}", data) for i in range(40)]
    with Watch(receiver) as watch:
        trickling = [_slow_client(port, body) for body in bodies[:30]]
        stalled = [_slow_client(port, body, declared=len(body) + 100) for body in bodies[30:]]
        for offset in range(0, max(len(b) for b in bodies), 16):  # ~16 bytes per client every 20 ms
            for sock, body in zip(trickling, bodies, strict=False):
                if offset < len(body):
                    sock.sendall(body[offset:offset + 16])
            time.sleep(0.02)
        answers = []
        for sock in trickling:
            answers.append(sock.recv(4096).split(b"\r\n", 1)[0])
            sock.close()
        for sock, body in zip(stalled, bodies[30:], strict=True):  # never finish: the server must cope
            sock.sendall(body)
        time.sleep(1.0)
        for sock in stalled:
            sock.close()
    assert answers == [b"HTTP/1.1 200 OK"] * len(trickling)
    watch.assert_kept_promises()
    records = set(all_records(len(trickling) + watch.canaries))
    assert set(bodies[:30]) <= records
    assert not (set(bodies[30:]) & records), "an incomplete body was published"
    assert receiver.proc.alive()
    assert json.loads(httpx.get(f"{receiver.base}/healthz", timeout=5).content)["status"] == "ok"
