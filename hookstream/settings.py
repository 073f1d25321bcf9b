"""The one settings object: every knob is an environment variable `HOOKSTREAM_*`."""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


ENV_PREFIX = "HOOKSTREAM_"
DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")
# Kafka's default record limit (producer max.request.size, broker message.max.bytes) is 1 MiB; a webhook
# body must leave room for the metadata headers (quarantine error text, trace ids) beside it.
MAX_RECORD_BODY_BYTES = 960 * 1024


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ConfigError(Exception):
    """One bad HOOKSTREAM_* value, said as one line an operator can act on."""


def check_bootstrap(value: str) -> str:
    """`host:port[,host:port…]`, each port a number 1–65535 (kafka-python fails late and obscurely)."""
    servers = [part.strip() for part in value.split(",")]
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{server!r} is not host:port; expected host:port[,host:port…], e.g. 127.0.0.1:9092")
    return ",".join(servers)


def check_database_url(value: str) -> str:
    """A ledger URL hookstream can open: sqlite:///… or postgresql[+psycopg]://… (checked without SQLAlchemy)."""
    scheme, sep, _rest = value.partition("://")
    if not sep or scheme.lower() not in DATABASE_SCHEMES:
        raise ValueError("not a ledger URL; expected sqlite:///path/to/ledger.db "
                         "or postgresql+psycopg://user@host:5432/dbname")
    return value


class Settings(BaseSettings):
    """All configuration. Field `foo_bar` is read from `HOOKSTREAM_FOO_BAR`."""

    # hide_input_in_errors: a model-level error (the Kafka security check) would otherwise print every input,
    # passwords included
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True,
                                      hide_input_in_errors=True)

    # --- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    topic_prefix: str = Field("", description="Prepended to every topic name (tenancy, test isolation).")
    topic_partitions: int = Field(6, ge=1, description="Partitions for `hookstream topics create`.")
    topic_replication_factor: int = Field(1, ge=1, description="Replication factor for `topics create`.")
    topic_min_insync_replicas: int | None = Field(
        None, ge=1, description="min.insync.replicas of topics `topics create` makes (unset: the broker's default)."
    )
    kafka_client_id: str = Field("hookstream", description="Kafka client.id prefix.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client connects: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (required with SASL_*): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (never logged).")
    kafka_ssl_cafile: Path | None = Field(None, description="PEM CA bundle that signed the brokers' certificates.")
    kafka_ssl_certfile: Path | None = Field(None, description="PEM client certificate (mTLS).")
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM client private key (mTLS).")
    kafka_ssl_key_password: SecretStr | None = Field(None, description="Password of an encrypted client key.")
    kafka_ssl_check_hostname: bool = Field(True, description="Verify the broker certificate's host name.")

    # --- Receiver --------------------------------------------------------------------------
    webhook_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted X-Webhook-Key values, comma separated (two during a rotation).",
    )
    request_timestamp_window_s: float = Field(
        300.0, ge=0, description="Reject X-Request-Timestamp further than this from now; 0 disables."
    )
    max_body_bytes: int = Field(
        256 * 1024, ge=1024, le=MAX_RECORD_BODY_BYTES,
        description="Larger webhook bodies get 413 (at most 960 KiB: the body and its headers must fit one "
        "Kafka record, 1 MiB by default).",
    )
    delivery_timeout_s: float = Field(
        10.0, gt=0, description="How long a webhook waits for the broker's ack before 503."
    )
    kafka_linger_ms: int = Field(
        0, ge=0, le=1000, description="How long a producer holds a record to fill its batch before sending "
        "(kafka-python `linger_ms`): added to every acknowledged publish, so to every answer.",
    )
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with 503.")
    spool_dir: Path = Field(Path("var/spool"), description="Durable spool for never-retried events.")
    spool_max_bytes: int = Field(64 * 1024 * 1024, ge=4096, description="Spool bound, all segments.")
    spool_after_s: float = Field(
        2.0, gt=0, description="A 3DS challenge not acked by the broker in this time is spooled."
    )
    spool_forward_interval_s: float = Field(1.0, gt=0, description="How often the spool retries Kafka.")

    # --- Authorization (answered by the receiver) -------------------------------------------
    authorization_budget_ms: int = Field(
        800, ge=50, le=1150, description="Answer authorizations within this (platform deadline 1,200 ms)."
    )
    authorization_fallback_code: str = Field("05", description="response_code over budget or on error.")
    authorization_policy: str = Field(
        "hookstream.ingest.policy:ledger_policy",
        description="`module:function` deciding authorization response codes (default: the ledger decides,"
                    " placing a hold on approval).",
    )
    authorization_static_code: str = Field("05", description="Code returned by the static policy.")
    authorization_mcc_deny: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="MCC codes always declined (ledger policy)."
    )
    authorization_country_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Merchant countries allowed; empty allows all (ledger policy)."
    )
    authorization_max_amount: Decimal | None = Field(
        None, description="Per-transaction maximum bill_amount in USD (ledger policy)."
    )

    # --- Ledger ----------------------------------------------------------------------------
    database_url: str = Field(
        "sqlite:///var/hookstream.db", description="SQLAlchemy URL: SQLite file or postgresql+psycopg://…"
    )
    database_pool_size: int = Field(5, ge=1, description="Connections each process keeps open to the ledger.")
    database_pool_max_overflow: int = Field(10, ge=0, description="Extra connections opened under a burst.")
    database_pool_timeout_s: float = Field(
        10.0, gt=0, description="Wait for a free pooled connection before the unit of work is retried."
    )
    database_lock_timeout_ms: int = Field(
        10_000, ge=1, description="A row/database lock wait gives up after this (Postgres lock_timeout, "
        "SQLite busy_timeout); the unit of work is then retried."
    )
    database_statement_timeout_ms: int = Field(
        30_000, ge=0, description="Postgres statement_timeout (0: none); a statement past it is retried."
    )

    # --- CryptoMate API --------------------------------------------------------------------
    api_base_url: str = Field("https://api.sandbox.cryptomate.me", description="CryptoMate API base URL.")
    api_key: SecretStr = Field(SecretStr(""), description="x-api-key for the CryptoMate API.")
    api_rate_limit_per_s: float = Field(15.0, gt=0, description="Client-side request rate limit.")
    api_connect_timeout_s: float = Field(3.0, gt=0)
    api_read_timeout_s: float = Field(10.0, gt=0)

    # --- Processors ------------------------------------------------------------------------
    retry_initial_s: float = Field(0.5, gt=0, description="First retry delay for transient failures.")
    retry_max_s: float = Field(30.0, gt=0, description="Retry delay cap.")
    retry_max_attempts: int = Field(8, ge=1, description="Attempts before a record is dead-lettered.")
    dlq_max_replays: int = Field(3, ge=1, description="Replays of one record before replay refuses it.")
    processor_start_timeout_s: float = Field(
        300.0, gt=0, description="How long a starting processor waits for its broker and ledger, retrying, "
        "before it exits 1.")
    processor_http_port: int = Field(0, ge=0, description="Processor /healthz + /metrics port (0: random).")
    processor_http_host: str = Field(
        "127.0.0.1", description="Interface for the processor's HTTP port (0.0.0.0 in a container)."
    )
    processor_shutdown_timeout_s: float = Field(20.0, gt=0, description="Drain bound on SIGTERM.")
    processor_concurrency: int | None = Field(
        None, ge=1, description="Processing lanes per processor process (keys in parallel; one key stays in "
        "order). Unset: the processor class's choice, else 1 on SQLite and 8 on Postgres.")
    three_ds_ttl_s: float = Field(300.0, gt=0, description="3DS challenges older than this expire.")
    auto_unblock: bool = Field(False, description="card-status: unblock velocity-blocked cards via the API.")
    dispatch_concurrency: int = Field(8, ge=1, description="Outbox API commands in flight per process.")
    dispatch_retry_budget_s: float = Field(
        3600.0, gt=0, description="An outbox command without a deadline that keeps failing transiently is retried "
        "this long after its first failure, however many attempts that takes, then dead-lettered (commands with a "
        "deadline, 3DS answers, are retried until it)."
    )
    dispatch_lease_s: float = Field(
        30.0, gt=0, description="A claimed outbox command is re-sent (same key) if not settled by then."
    )
    outbox_retention_s: float = Field(
        7 * 24 * 3600.0, gt=0, description="Settled outbox commands (sent, expired, dead) are deleted after this."
    )

    # --- Operations ------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    @field_validator("webhook_keys", "authorization_mcc_deny", "authorization_country_allow", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        return check_bootstrap(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return check_database_url(value)

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        problem = kafka_security_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    def to_env(self) -> dict[str, str]:
        """The HOOKSTREAM_* environment that reproduces these settings in a child process."""
        env: dict[str, str] = {}
        for name, value in self:
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, list):
                value = ",".join(v.get_secret_value() if isinstance(v, SecretStr) else str(v) for v in value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            env[f"HOOKSTREAM_{name.upper()}"] = str(value)
        return env

    def topic(self, name: str) -> str:
        """The physical topic for a logical topic name."""
        return f"{self.topic_prefix}{name}"


# pydantic error type → the expected form, said to an operator (the rest say it in their message)
_EXPECTED = {
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "decimal_parsing": "a number",
    "bool_parsing": "true or false",
}
_SECRET_FIELDS = frozenset({"api_key", "webhook_keys", "kafka_sasl_password", "kafka_ssl_key_password"})


def _shown(field: str, value: object) -> str:
    if field in _SECRET_FIELDS:
        return "(value hidden)"
    text = str(value)
    return repr(re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", text))  # never echo a database password


def describe(error: ValidationError) -> str:
    """One line naming each bad environment variable, what is wrong with it and the expected form."""
    parts = []
    for err in error.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        kind, ctx = err["type"], err.get("ctx") or {}
        if kind == "literal_error":
            problem = f"expected one of {ctx.get('expected', '').replace(chr(39), '')}"
        elif kind in _EXPECTED:
            problem = f"expected {_EXPECTED[kind]}"
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            words = {"greater_than_equal": "≥", "greater_than": ">", "less_than_equal": "≤", "less_than": "<"}
            bound = next(iter(ctx.values()), "")
            problem = f"out of range; expected a number {words[kind]} {bound}"
        elif kind == "value_error":
            problem = str(ctx.get("error", err["msg"]))
        else:
            problem = err["msg"]
        if not err["loc"]:  # a model-level check (Kafka security) names its variables itself
            parts.append(problem)
            continue
        parts.append(f"{ENV_PREFIX}{field.upper()}={_shown(field, err.get('input'))}: {problem}")
    return "; ".join(parts)

def kafka_security_problem(s: Settings) -> str | None:
    """One line saying what is wrong with the HOOKSTREAM_KAFKA_* security combination, or None."""
    protocol = s.kafka_security_protocol
    sasl, ssl = protocol.startswith("SASL_"), protocol.endswith("SSL")
    if sasl:
        missing = [name for name, value in (("HOOKSTREAM_KAFKA_SASL_MECHANISM", s.kafka_sasl_mechanism),
                                            ("HOOKSTREAM_KAFKA_SASL_USERNAME", s.kafka_sasl_username),
                                            ("HOOKSTREAM_KAFKA_SASL_PASSWORD", s.kafka_sasl_password))
                   if not value]
        if missing:
            return f"HOOKSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} needs {', '.join(missing)}"
    elif s.kafka_sasl_mechanism or s.kafka_sasl_username or s.kafka_sasl_password:
        return (f"HOOKSTREAM_KAFKA_SASL_* is set but HOOKSTREAM_KAFKA_SECURITY_PROTOCOL={protocol}; "
                "use SASL_SSL (or SASL_PLAINTEXT)")
    tls_files = (("HOOKSTREAM_KAFKA_SSL_CAFILE", s.kafka_ssl_cafile),
                 ("HOOKSTREAM_KAFKA_SSL_CERTFILE", s.kafka_ssl_certfile),
                 ("HOOKSTREAM_KAFKA_SSL_KEYFILE", s.kafka_ssl_keyfile))
    if not ssl and any(value for _, value in tls_files):
        return (f"HOOKSTREAM_KAFKA_SSL_* is set but HOOKSTREAM_KAFKA_SECURITY_PROTOCOL={protocol}; "
                "use SSL or SASL_SSL")
    if bool(s.kafka_ssl_certfile) != bool(s.kafka_ssl_keyfile):
        return ("HOOKSTREAM_KAFKA_SSL_CERTFILE and HOOKSTREAM_KAFKA_SSL_KEYFILE go together "
                "(client certificate and its key)")
    for name, value in tls_files:
        if value and not Path(value).is_file():
            return f"{name}={value}: no such file"
    return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment.

    Raises ConfigError (one line) when a HOOKSTREAM_* value is unusable.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
