"""The routing table: (product, event_type) → topic, partition key and data model; the dedup key."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from hookstream.schemas import events
from hookstream.schemas.envelope import Envelope, EnvelopeError, safe_errors
from hookstream.schemas.headers import fit

CARDS_TRANSACTIONS = "cryptomate.cards.transactions"
CARDS_3DS = "cryptomate.cards.3ds"
CARDS_STATUS = "cryptomate.cards.status"
DEPOSITS = "cryptomate.deposits"
TREASURY = "cryptomate.treasury"
COMPANY = "cryptomate.company"
UNROUTED = "cryptomate.unrouted"
QUARANTINE = "cryptomate.quarantine"


@dataclass(frozen=True, slots=True)
class Route:
    topic: str
    key_field: str  # field of `data` whose value keys the record (per-entity order)
    model: type[BaseModel]


_card = Route(CARDS_TRANSACTIONS, "card_id", events.CardTransaction)

# Card events are keyed by card_id and wallet/treasury events by wallet_id, so one entity's events
# stay in order on one partition.
ROUTES: dict[tuple[str, str], Route] = {
    ("cards", "authorization"): Route(CARDS_TRANSACTIONS, "card_id", events.Authorization),
    ("cards", "authorized"): _card,
    ("cards", "declined"): _card,
    ("cards", "cleared"): _card,
    ("cards", "clearing"): _card,
    ("cards", "reversal"): _card,
    ("cards", "refund"): _card,
    ("cards", "visa_direct_deposit"): _card,
    ("cards", "notification_3ds_authorization"): Route(CARDS_3DS, "card_id", events.ThreeDSChallenge),
    ("cards", "card_blocked_by_velocity"): Route(CARDS_STATUS, "card_id", events.CardBlockedByVelocity),
    ("cards", "deposit"): Route(DEPOSITS, "wallet_id", events.Deposit),
    ("cards", "warranty_withdraw"): Route(TREASURY, "wallet_id", events.WarrantyWithdraw),
    ("virtual_wallets", "deposit"): Route(DEPOSITS, "wallet_id", events.Deposit),
    ("virtual_wallets", "ramp_on"): Route(DEPOSITS, "wallet_id", events.RampOn),
    ("virtual_wallets", "withdraw"): Route(TREASURY, "wallet_id", events.Withdraw),
    ("treasury", "deposit"): Route(DEPOSITS, "wallet_id", events.Deposit),
    ("treasury", "ramp_on"): Route(DEPOSITS, "wallet_id", events.RampOn),
    ("treasury", "transfer"): Route(TREASURY, "wallet_id", events.Withdraw),
    ("company_activity", "client_status"): Route(COMPANY, "id", events.ClientStatus),
}

def dlq_topic(processor: str) -> str:
    """A processor's dead-letter topic (logical name). One partition: an offset alone names a letter."""
    return f"hookstream.{processor}.dlq"


DLQ_PARTITIONS = 1

# Every topic `hookstream topics create` makes.
TOPICS: tuple[str, ...] = (
    CARDS_TRANSACTIONS, CARDS_3DS, CARDS_STATUS, DEPOSITS, TREASURY, COMPANY, UNROUTED, QUARANTINE,
)

# Events whose operation_id is the 3DS code itself (platform reference §4.2): never logged as is.
SECRET_OPERATION_IDS: frozenset[str] = frozenset({"notification_3ds_authorization"})
# `data` fields whose value is a secret: an operation_id equal to one of them is that secret.
SECRET_DATA_FIELDS: tuple[str, ...] = ("code",)

# Events the platform never redelivers: when Kafka cannot take them they go to the spool.
NEVER_RETRIED: frozenset[str] = frozenset({"authorization", "notification_3ds_authorization"})


def route_for(envelope: Envelope) -> Route | None:
    """The route of a known event, or None for an unknown product/event type."""
    return ROUTES.get((envelope.product, envelope.event_type))


def parse_data(envelope: Envelope, route: Route | None = None) -> BaseModel:
    """The typed `data` of a routed event (EnvelopeError when it does not match its model); an event the
    table does not know yet gets `events.Unrouted`, its fields untyped, for a processor that declares it."""
    route = route or route_for(envelope)
    if route is None:
        return events.Unrouted.model_validate(envelope.data)
    try:
        return route.model.model_validate(envelope.data)
    except ValidationError as exc:
        raise EnvelopeError(
            f"invalid data for {envelope.product}/{envelope.event_type}",
            [{**e, "loc": f"data.{e['loc']}"} for e in safe_errors(exc)],
        ) from None


def partition_key(envelope: Envelope, route: Route) -> bytes:
    value: Any = envelope.data.get(route.key_field)
    return fit(str(value).encode())


def dedup_key(envelope: Envelope, loggable_id: str | None = None) -> str:
    """The identity of an event for exactly-once effects.

    (product, event_type, status, operation_id), case-normalised: operation_id alone would merge
    e.g. CLEARING/PENDING and CLEARING/SUCCESS of one transaction. Velocity blocks reuse the card id
    as operation_id, so they are identified by (card_id, blocked_at) instead.
    `loggable_id`: `loggable_operation_id(envelope)` when the caller has it already.
    """
    if envelope.event_type == "card_blocked_by_velocity":
        card = envelope.data.get("card_id", envelope.operation_id)
        key = f"{envelope.product}:card_blocked_by_velocity:{card}:{envelope.data.get('blocked_at', '')}"
    else:
        if loggable_id is None:
            loggable_id = loggable_operation_id(envelope)
        key = f"{envelope.product}:{envelope.event_type}:{envelope.status or ''}:{loggable_id}"
    return fit(key.encode()).decode("utf-8", "replace")


def is_secret_operation_id(envelope: Envelope) -> bool:
    """Whether operation_id is a secret, recognised by what it is rather than by one spelling:
    the event is a 3DS challenge (any accepted spelling normalises to it), names 3DS, or the id
    equals a secret `data` value (for 3DS, operation_id == data.code)."""
    if envelope.event_type in SECRET_OPERATION_IDS or "3ds" in envelope.event_type.split("_"):
        return True
    data = envelope.data
    op = None
    for name in SECRET_DATA_FIELDS:
        v = data.get(name)
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            op = envelope.operation_id.strip() if op is None else op
            if str(v).strip() == op:
                return True
    return False


def loggable_operation_id(envelope: Envelope) -> str:
    """operation_id safe for logs, keys and headers: a digest stands in for a secret one (the 3DS
    code), and an absurdly long one is cut to a bounded, still unique form."""
    if is_secret_operation_id(envelope):
        return "sha256-" + hashlib.sha256(envelope.operation_id.encode()).hexdigest()[:32]
    return fit(envelope.operation_id.encode()).decode("utf-8", "replace")
