"""`hookstream sandbox`: run the CryptoMate platform emulator on a local port."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from hookstream.logs import get_logger
from hookstream.sandbox.config import SandboxConfig
from hookstream.sandbox.state import DEFAULT_SEED

log = get_logger("hookstream.sandbox")


def read_seed(path: Path) -> dict[str, Any]:
    """A seed document from a .yaml/.yml or .json file."""
    text = path.read_text()
    data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    if not isinstance(data, dict):
        raise click.BadParameter("the seed must be a mapping", param_hint="--seed")
    return data


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8100, show_default=True, help="Port to listen on.")
@click.option("--seed", "seed_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="YAML or JSON seed (company, api_keys, cards, wallets, velocity_rules). "
                   "Default: the built-in seed (keys sandbox-key-level-1/2/3, cards crd_webhook/crd_topup/crd_defi).")
@click.option("--webhook-url", default=None,
              help="Where webhooks are delivered, e.g. http://127.0.0.1:8000/webhooks/cryptomate "
                   "(also settable with POST /management/companies/webhook/subscribe).")
@click.option("--webhook-key", default=None, help="X-Webhook-Key sent with every webhook (at least 10 characters).")
@click.option("--generation", type=click.Choice(["A", "B"], case_sensitive=False), default="B", show_default=True,
              help="Envelope: A = operation/sub_operation, B = product/event_type.")
@click.option("--casing", type=click.Choice(["upper", "lower"], case_sensitive=False), default="upper",
              show_default=True, help="Case of product/event_type/status values (observed traffic: upper).")
@click.option("--amounts", type=click.Choice(["string", "number"], case_sensitive=False), default="number",
              show_default=True, help="Money fields as JSON strings (\"42.50\") or numbers (42.5).")
@click.option("--retry-base", "retry_base_s", type=float, default=1.0, show_default=True,
              help="First redelivery delay in seconds for regular events (doubles each attempt).")
@click.option("--authorization-timeout", "authorization_timeout_s", type=float, default=1.2, show_default=True,
              help="Authorization deadline in seconds (the platform's 1,200 ms; older platform docs say 1.0).")
@click.option("--no-rate-limit", is_flag=True, help="Disable the 15 requests/s per key and per IP limit.")
def sandbox(host: str, port: int, seed_path: Path | None, webhook_url: str | None, webhook_key: str | None,
            generation: str, casing: str, amounts: str, retry_base_s: float, authorization_timeout_s: float,
            no_rate_limit: bool) -> None:
    """Run the CryptoMate sandbox: the platform API subset, simulate endpoints and a webhook sender.

    State lives in memory. Inspect and steer it under /_sandbox/ (see docs/sandbox.md).
    """
    import uvicorn

    from hookstream.sandbox.app import create_app
    from hookstream.sandbox.runtime import Sandbox

    config = SandboxConfig(generation=generation.upper(), casing=casing.lower(),  # type: ignore[arg-type]
                           amounts=amounts.lower(), retry_base_s=retry_base_s,  # type: ignore[arg-type]
                           authorization_timeout_s=authorization_timeout_s,
                           rate_limit_enabled=not no_rate_limit)
    seed = read_seed(seed_path) if seed_path else DEFAULT_SEED
    box = Sandbox(seed, config)
    box.set_webhook(url=webhook_url, key=webhook_key)
    log.info("sandbox.starting", host=host, port=port, webhook_url=box.state.company.webhook_url,
             generation=config.generation, casing=config.casing, amounts=config.amounts,
             cards=len(box.state.cards))
    click.echo(f"sandbox ready on http://{host}:{port} (inspect: http://{host}:{port}/_sandbox/state)")
    uvicorn.run(create_app(box), host=host, port=port, log_level="warning", access_log=False)
