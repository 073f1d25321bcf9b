"""docs/processors.md's new processor, as written there: one file and one registration line, installed as a
package would be, runs against the real broker, receiver and ledger; two packages claiming one name refuse."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import httpx

from fixtures.feed import upgrade_ledger
from fixtures.plugins import env_with, hookstream, install_plugin
from fixtures.waiting import wait_until
from hookstream.broker import free_port
from hookstream.kafka import ensure_topics
from hookstream.ledger import Ledger
from hookstream.schemas.routing import TOPICS, route_for
from hookstream.schemas.envelope import parse_envelope

DOC = Path(__file__).resolve().parents[2] / "docs" / "processors.md"
KEY = "test-webhook-key-0001"  # make_settings' webhook key


def _example() -> tuple[str, str, str, str]:
    """(processor name, module, class, the module's source) as the doc gives them."""
    blocks = dict((lang, body) for lang, body in re.findall(r"```(\w*)\n(.*?)```", DOC.read_text(), re.S)
                  if lang in ("python", "toml"))
    name, module, cls = re.search(r'^([\w-]+) = "([\w.]+):(\w+)"$', blocks["toml"], re.M).groups()
    return name, module, cls, blocks["python"]


def _install(root: Path) -> str:
    name, module, cls, source = _example()
    install_plugin(root, "mypkg", {module.replace(".", "/") + ".py": source}, {name: f"{module}:{cls}"})
    return name


def chargeback(op: str, card: str, amount: str, status: str = "WON") -> bytes:
    return json.dumps({"product": "cards", "event_type": "CHARGEBACK", "operation_id": op, "status": status,
                       "data": {"card_id": card, "amount": amount}}).encode()


def test_the_documented_processor_handles_an_event_type_the_routing_table_does_not_know(
        make_settings, processes, tmp_path):
    settings = make_settings()
    assert route_for(parse_envelope(chargeback("x", "c", "1"))) is None  # the table does not know it
    name = _install(tmp_path / "site")
    env = env_with(tmp_path / "site", **{**settings.to_env(), "HOOKSTREAM_PROCESSOR_HTTP_PORT": "0"})
    listed = hookstream(["process", "--list"], env)
    assert listed.returncode == 0 and re.search(rf"^{name}\s+topics=cryptomate.unrouted event_types=chargeback",
                                                listed.stdout, re.M), listed.stdout
    ensure_topics(settings, list(TOPICS))
    upgrade_ledger(settings.database_url)
    ledger = Ledger(settings.database_url)
    with ledger.unit_of_work() as uow:
        uow.link_card("card-cb", "acct-cb", "WEBHOOK")

    port = free_port()
    processes.start(["ingest", "--port", str(port)], env, name="ingest", ready_url=f"http://127.0.0.1:{port}/readyz",
                    timeout=90)
    proc = processes.start(["process", name], env, name=name, ready_text='"processor.ready"', timeout=120)
    url = f"http://127.0.0.1:{port}/webhooks/cryptomate"
    headers = {"content-type": "application/json", "X-Webhook-Key": KEY}
    for body in (chargeback("cb-1", "card-cb", "12.50"), chargeback("cb-1", "card-cb", "12.50"),  # redelivered
                 chargeback("cb-2", "card-cb", "99.00", status="LOST")):
        assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 200

    def balance() -> Decimal:
        with ledger.unit_of_work(read_only=True) as uow:
            return uow.balance("acct-cb").available

    wait_until(lambda: proc.output().count('"event.processed"') >= 3, "the processor to handle all three deliveries",
               timeout=60)
    assert balance() == Decimal("12.50")  # credited once; the lost chargeback changed nothing
    assert '"chargeback.credited"' in proc.output()
    ledger.close()


def test_two_packages_registering_one_processor_name_is_one_error_naming_both(tmp_path):
    _install(tmp_path / "one")
    name, _, _, source = _example()
    install_plugin(tmp_path / "two", "otherpkg", {"otherpkg/chargebacks.py": source},
                   {name: "otherpkg.chargebacks:Chargebacks"})
    env = env_with(tmp_path / "one", tmp_path / "two")
    for args in (["process", name], ["process", "--list"], ["deploy", "render", "--check"]):
        result = hookstream(args, env)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr)
        (line,) = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        assert line.startswith("Error:") and f"processor {name!r} is registered twice" in line, line
        assert "mypkg.chargebacks:Chargebacks (from mypkg 0.1)" in line, line
        assert "otherpkg.chargebacks:Chargebacks (from otherpkg 0.1)" in line, line
