"""`hookstream sandbox` as a user runs it: seed file, options, a simulated authorization delivered."""

from __future__ import annotations

import socket

import httpx
import yaml

from test_sandbox.harness import running_receiver

SEED = {
    "company": {"name": "Cli Co", "webhook_key": "seeded-webhook-key"},
    "api_keys": [{"key": "cli-level-2-key", "level": 2}],
    "cards": [{"id": "crd_cli", "approval_method": "WEBHOOK", "metadata": {"account": "a-1"}}],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_serves_the_seed_and_delivers_a_simulated_authorization_in_the_chosen_format(processes, tmp_path):
    seed = tmp_path / "seed.yaml"
    seed.write_text(yaml.safe_dump(SEED))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with running_receiver(lambda n, body: (200, {"response_code": "00"}, 0.0)) as receiver:
        proc = processes.start(["sandbox", "--port", str(port), "--seed", str(seed), "--webhook-url", receiver.url,
                         "--generation", "A", "--casing", "lower", "--amounts", "string"],
                        name="sandbox", ready_url=f"{base}/_sandbox/healthz", timeout=30)
        headers = {"x-api-key": "cli-level-2-key"}
        response = httpx.post(f"{base}/cards/webhook/simulate/authorize", headers=headers,
                              json={"card_id": "crd_cli", "bill_amount": 12})
        assert (response.status_code, response.content) == (201, b"")
        hits = receiver.wait(lambda hits: len(hits) == 2)
        first = hits[0]
        assert first.headers["x-webhook-key"] == "seeded-webhook-key"
        assert (first.body["operation"], first.body["sub_operation"], first.body["status"]) == (
            "cards", "authorization", "pending")
        assert first.body["data"]["bill_amount"] == "12.00"
        assert (hits[1].body["sub_operation"], hits[1].body["status"]) == ("clearing", "pending")
        denied = httpx.get(f"{base}/management/companies", headers=headers)
        assert denied.status_code == 401
    assert "seeded-webhook-key" not in proc.output() and "cli-level-2-key" not in proc.output()
