"""The dispatcher's sender loop against the real sandbox, on both ledgers: what it gives back when stopped."""

from __future__ import annotations

import json
import time

from test_sandbox.harness import KEY2, running_sandbox

from hookstream.ledger import Ledger
from hookstream.ledger.outbox import RELEASED, Outbox, enqueue
from hookstream.processors.dispatch import Dispatcher
from hookstream.processors.runtime import default_api_factory
from hookstream.settings import Settings

PATH = "/cards/virtual-cards/crd_topup/virtual-balance"


def overrides(n: int) -> list[dict]:
    return [{"processor": "p", "idempotency_key": f"override-{i}", "kind": "override_card_virtual_balance",
             "payload": json.dumps({"card_id": "crd_topup", "virtual_balance": str(10 + i)}), "order_key": None,
             "deadline": None, "due_at": 0.0} for i in range(n)]


def wait_for(condition, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_stopping_gives_back_at_once_what_is_not_on_the_wire_and_records_what_was_sent(ledger: Ledger) -> None:
    with running_sandbox() as sandbox:
        # 2 requests/s: the claimed commands wait for their send times, ~0.55 s apart, in the sender's loop.
        settings = Settings(api_base_url=sandbox.url, api_key=KEY2, api_rate_limit_per_s=2.0,
                            dispatch_concurrency=4)
        with ledger.unit_of_work() as uow:
            enqueue(uow, overrides(8))

        def received() -> list[str]:
            return [c["idempotency_key"] for c in sandbox.box.calls if c["path"] == PATH]

        first = Dispatcher("p", settings, ledger, lambda: default_api_factory(settings), None).start()
        first.wake()
        wait_for(lambda: len(received()) >= 2, "two overrides at the platform")
        first.stop()

        sent_keys = received()
        assert 2 <= len(sent_keys) < 8, "stopped while most still waited for their send times"
        box = Outbox(ledger)
        assert box.counts("p") == {"sent": len(sent_keys), "pending": 8 - len(sent_keys)}
        # Given back unsent: no lease left behind (another dispatcher takes them now, not after 30 s), and the
        # attempt they never made is not counted.
        waiting = box.claim("p", "someone-else", 10, lease_s=30, now=time.time())
        assert sorted(c.idempotency_key for c in waiting) == sorted(
            f"override-{i}" for i in range(8) if f"override-{i}" not in sent_keys)
        assert {c.attempts for c in waiting} == {1}
        box.finish_many([(c.id, RELEASED, None) for c in waiting], "someone-else")

        # A second dispatcher sends the rest; the platform saw every key exactly once.
        faster = Settings(api_base_url=sandbox.url, api_key=KEY2, api_rate_limit_per_s=10.0)
        second = Dispatcher("p", faster, ledger, lambda: default_api_factory(faster), None).start()
        try:
            second.wake()
            wait_for(lambda: box.counts("p") == {"sent": 8}, "every override sent")
        finally:
            second.stop()
        assert sorted(received()) == sorted(f"override-{i}" for i in range(8))
        assert all(c["status"] == 200 for c in sandbox.box.calls if c["path"] == PATH)
