"""The processor contract: the Processor class a handler subclasses, the Event it gets, its Context."""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from hookstream import metrics
from hookstream.domain.effects import ApiCommand, Effects
from hookstream.idempotency import idempotency_key
from hookstream.schemas.envelope import Envelope
from hookstream.settings import Settings

if TYPE_CHECKING:  # types only: the processor contract does not import the ledger or structlog at run time
    from structlog.stdlib import BoundLogger

    from hookstream.ledger.store import UnitOfWork
    from hookstream.processors.view import LedgerView


@dataclass(frozen=True, slots=True)
class Event:
    """One Kafka record, parsed: the normalised envelope, its typed `data`, and where it came from."""

    envelope: Envelope
    data: BaseModel  # the routed model, e.g. schemas.events.Deposit
    dedup_key: str
    topic: str  # physical topic
    partition: int
    offset: int
    key: bytes | None
    value: bytes  # the webhook body, byte for byte
    headers: dict[str, str]
    received_at: datetime | None  # when the receiver took it (hs-received-at), if known

    @property
    def product(self) -> str:
        return self.envelope.product

    @property
    def event_type(self) -> str:
        return self.envelope.event_type

    @property
    def status(self) -> str | None:
        return self.envelope.status

    @property
    def operation_id(self) -> str:
        return self.envelope.operation_id


class Processor:
    """Subclass this: set `name`, `topics`, `event_types`; implement `decide` (or `handle`).

    `decide(event, view)` is the preferred contract: pure, it reads the ledger through `view` (a
    read-only `processors.view.LedgerView`) and returns `Effects` (ledger intents such as
    `Effects.credit`, API commands, the inbox outcome, log notes), which the runtime applies in the
    event's claim transaction, set-based for the whole batch. Raise to fail (nothing is written; the
    runtime retries or dead-letters as below).

    `handle(event, ctx)` runs inside a ledger transaction that has already claimed the event's
    dedup key (a savepoint of the poll batch's transaction: commit happens after the batch, never
    in the handler); write effects through `ctx.uow`. Return normally for success; raise to fail
    and your writes are undone (the runtime classifies the error: transient → retried later,
    permanent → dead-lettered). Never catch and hide an error: a swallowed failure is a committed,
    lost effect. A handler never calls the API: it asks for a call with `ctx.send(ApiCommand)`, which
    the runtime writes into the outbox in the same transaction; the dispatcher sends it after commit
    with the Idempotency-Key derived from the event and the command's purpose.
    """

    name: ClassVar[str]
    topics: ClassVar[tuple[str, ...]]  # logical topic names, e.g. schemas.routing.DEPOSITS
    event_types: ClassVar[frozenset[str] | None] = None  # lower-case event_type; None: all
    retry_budget_s: ClassVar[float | None] = None  # give up (dead-letter) this long after 1st failure
    concurrency: ClassVar[int | None] = None  # lanes (keys in parallel); HOOKSTREAM_PROCESSOR_CONCURRENCY wins

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def needs_api(self) -> bool:
        """Whether `handle` calls the CryptoMate API (then the process refuses to start without a key)."""
        return False

    def deadline(self, event: Event) -> datetime | None:
        """When acting on `event` stops making sense (aware datetime); None: never.

        Past it the event is recorded as `expired` instead of handled or retried.
        """
        return None

    def decide(self, event: Event, view: LedgerView) -> Effects:
        """What this event asks for, as values (see the class docstring); implement this or `handle`."""
        raise NotImplementedError

    def handle(self, event: Event, ctx: Context) -> None:
        raise NotImplementedError

    def preload(self, view: LedgerView, records: list[tuple[Any, str]]) -> None:
        """Optional, for a deciding processor: before a batch, read ahead in one statement what its decisions
        will ask `view` one by one. `records` are the batch's coming Kafka records with the dedup key the
        receiver gave each. Reads only: a guess that proves wrong costs the event its own read, nothing else."""


@dataclass(slots=True)
class Context:
    """What a handler may use besides the event."""

    processor: str
    event: Event
    uow: UnitOfWork  # this event's ledger transaction (a savepoint of the batch; the claim already made)
    log: BoundLogger  # structlog logger bound to the event's identity
    settings: Settings
    attempt: int  # 1 on first delivery to this process, +1 per retry
    metrics: types.ModuleType = metrics
    commands: list[ApiCommand] = field(default_factory=list)  # for the outbox, in this transaction

    def send(self, command: ApiCommand) -> None:
        """Ask for an API call once this event's transaction commits (through the outbox)."""
        self.commands.append(command)

    def idempotency_key(self, purpose: str = "") -> str:
        """The Idempotency-Key for a mutating API call made for this event."""
        return idempotency_key(self.processor, self.event.dedup_key, purpose)
