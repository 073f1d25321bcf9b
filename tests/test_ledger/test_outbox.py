"""The outbox on both backends: leases, per-target order, and one request schedule per API key."""

from __future__ import annotations

import json
import threading
import time

from hookstream.ledger import Ledger
from hookstream.ledger.outbox import RELEASED, Outbox, enqueue


def command(key: str, order_key: str | None = None, due_at: float = 0.0) -> dict:
    return {"processor": "p", "idempotency_key": key, "kind": "unblock_card",
            "payload": json.dumps({"card_id": "crd"}), "order_key": order_key, "deadline": None, "due_at": due_at}


def test_a_claimed_command_is_leased_and_comes_back_with_its_key_when_the_lease_runs_out(ledger: Ledger) -> None:
    with ledger.unit_of_work() as uow:
        enqueue(uow, [command("k1"), command("k1")])  # a redelivered event adds nothing
    box = Outbox(ledger)
    now = time.time()
    first = box.claim("p", "dispatcher-a", 10, lease_s=5, now=now)
    assert [c.idempotency_key for c in first] == ["k1"] and first[0].attempts == 1
    assert box.claim("p", "dispatcher-b", 10, lease_s=5, now=now + 1) == [], "leased: not sent twice at once"
    # dispatcher-a died after sending: its lease runs out and the same key goes again.
    again = box.claim("p", "dispatcher-b", 10, lease_s=5, now=now + 6)
    assert [(c.idempotency_key, c.attempts) for c in again] == [("k1", 2)]
    assert box.finish(first[0].id, "dispatcher-a", "sent") is False, "a lost lease cannot settle"
    assert box.finish(again[0].id, "dispatcher-b", "sent") is True
    assert box.claim("p", "dispatcher-b", 10, lease_s=5, now=now + 20) == []
    assert box.counts("p") == {"sent": 1}


def test_commands_of_one_target_go_one_at_a_time_in_order_others_in_parallel(ledger: Ledger) -> None:
    with ledger.unit_of_work() as uow:
        enqueue(uow, [command("a1", "card:a"), command("a2", "card:a"), command("b1", "card:b"), command("x")])
    box = Outbox(ledger)
    now = time.time()
    claimed = box.claim("p", "d", 10, lease_s=30, now=now)
    assert [c.idempotency_key for c in claimed] == ["a1", "b1", "x"]
    box.retry_at(claimed[0].id, "d", now + 3, now, "ServerError: 500")  # a1 fails: a2 keeps waiting
    assert box.claim("p", "d", 10, lease_s=30, now=now + 1) == []
    retried = box.claim("p", "d", 10, lease_s=30, now=now + 3)
    assert [c.idempotency_key for c in retried] == ["a1"]
    box.finish(retried[0].id, "d", "sent")
    assert [c.idempotency_key for c in box.claim("p", "d", 10, lease_s=30, now=now + 3)] == ["a2"]


def test_dispatchers_sharing_an_api_key_share_one_request_schedule(ledger: Ledger) -> None:
    """Two processes' dispatchers (two Outbox objects, concurrent threads, two processors on one API key) never
    get send times closer than 1/rate, so no 1-second window holds more than the platform's 15 requests."""
    rate = 15 / 1.1
    with ledger.unit_of_work() as uow:
        enqueue(uow, [{**command(f"{p}{i}"), "processor": p} for p in ("p", "q") for i in range(60)])
    start = time.time()
    slots: list[float] = []
    lock = threading.Lock()

    def dispatcher(processor: str) -> None:
        box = Outbox(ledger)
        got: list[float] = []
        settled: list[tuple[int, str, str | None]] = []
        while len(got) < 40:
            _, claimed = box.exchange(settled, processor, processor, 4, lease_s=30, now=max(start, time.time()),
                                      key_id="key-digest", rate=rate)
            got += [at for _, at in claimed if at is not None]
            settled = [(c.id, "sent", None) for c, _ in claimed]
        with lock:
            slots.extend(got)

    threads = [threading.Thread(target=dispatcher, args=(p,)) for p in ("p", "q")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    ordered = sorted(slots)
    assert len(ordered) >= 80
    gaps = [b - a for a, b in zip(ordered, ordered[1:])]
    assert min(gaps) >= 1 / rate - 1e-6, min(gaps)
    assert max(sum(1 for s in ordered if t <= s < t + 1.0) for t in ordered) <= 15


def test_settled_commands_are_purged_after_the_retention_pending_ones_never(ledger: Ledger) -> None:
    from hookstream.processors.dispatch import Dispatcher
    from hookstream.settings import Settings

    with ledger.unit_of_work() as uow:
        enqueue(uow, [command("sent"), command("dead"), command("waiting"),
                      {**command("other"), "processor": "q"}])
    box = Outbox(ledger)
    now = time.time()
    claimed = {c.idempotency_key: c for c in box.claim("p", "d", 10, lease_s=5, now=now)}
    assert box.finish(claimed["sent"].id, "d", "sent") and box.finish(claimed["dead"].id, "d", "dead", "boom")
    assert box.finish_many([(claimed["waiting"].id, RELEASED, None)], "d") == {claimed["waiting"].id}
    other = box.claim("q", "d", 10, lease_s=5, now=now)
    assert box.finish(other[0].id, "d", "sent")

    settings = Settings(outbox_retention_s=3600)
    recent = Dispatcher("p", settings, ledger, lambda: None, None, clock=lambda: now)
    assert recent.purge() == 0, "settled within the retention: kept"
    later = Dispatcher("p", settings, ledger, lambda: None, None, clock=lambda: now + 3600 + 60)
    assert later.purge() == 2
    assert box.counts("p") == {"pending": 1}, "a pending command is never purged"
    assert box.counts("q") == {"sent": 1}, "another processor's commands are its own dispatcher's"


def test_a_dispatcher_round_settles_and_claims_in_one_transaction_paced_by_the_shared_schedule(ledger: Ledger) -> None:
    """`exchange`: what finished is settled (a lost lease is not), then as many commands as the key's schedule
    has send times for are claimed, each with its own time 1/rate apart; an expired one takes no time."""
    now = time.time()
    with ledger.unit_of_work() as uow:
        enqueue(uow, [command(f"k{i}") for i in range(6)]
                + [{**command("late"), "deadline": now - 1}] + [command(f"m{i}") for i in range(30)])
    box = Outbox(ledger)
    rate = 10.0
    done, first = box.exchange([], "d", "p", 8, lease_s=30, now=now, key_id="key", rate=rate)
    assert done == set()
    assert [c.idempotency_key for c, _ in first] == ["k0", "k1", "k2", "k3", "k4", "k5", "late", "m0"]
    times = [at for c, at in first if c.idempotency_key != "late"]
    assert dict((c.idempotency_key, at) for c, at in first)["late"] is None, "past its deadline: no send time"
    assert times == sorted(times) and all(abs((b - a) - 1 / rate) < 1e-6 for a, b in zip(times, times[1:]))
    # Another dispatcher took k0 over (its lease ran out): this one's settle of k0 does not count.
    stolen = box.claim("p", "other", 1, lease_s=30, now=now + 31)
    assert [c.idempotency_key for c in stolen] == ["k0"]
    ids = {c.idempotency_key: c.id for c, _ in first}
    settled = [(ids["k0"], "sent", None), (ids["k1"], "sent", None), (ids["late"], "expired", "deadline passed")]
    done, second = box.exchange(settled, "d", "p", 100, lease_s=30, now=now, key_id="key", rate=rate)
    assert done == {ids["k1"], ids["late"]}
    # The schedule has room for 1 s at 10/s from the next free time: 11 slots, 7 of them taken already.
    assert len(second) == 4 and [at for _, at in second][0] >= times[-1] + 1 / rate - 1e-6
    assert box.counts("p") == {"sent": 1, "expired": 1, "pending": 35}
    assert box.finish_many([(ids["k0"], "sent", None)], "other") == {ids["k0"]}, "its lease holder settles it"
    assert box.finish_many([(ids["k0"], "sent", None)], "other") == set(), "settled once"
    # A command whose send time passed before a sender took it goes back unsent: due again, attempt not counted.
    assert box.finish_many([(ids["k2"], RELEASED, None)], "d") == {ids["k2"]}
    done, again = box.exchange([], "d2", "p", 1, lease_s=30, now=now + 2, key_id="key", rate=rate)
    assert [(c.idempotency_key, c.attempts) for c, _ in again] == [("k2", 1)]
