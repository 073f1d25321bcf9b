"""SQLAlchemy engines tuned per backend: SQLite WAL + BEGIN IMMEDIATE, Postgres with lock timeouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from hookstream.settings import ConfigError

# Execution option naming how a SQLite transaction begins: IMMEDIATE takes the write lock up front
# so two writers never both read a balance and then collide on upgrade (WAL returns SQLITE_BUSY
# without waiting in that case); DEFERRED is for read-only units of work.
SQLITE_BEGIN = "hookstream_sqlite_begin"


def is_sqlite_memory(url: str) -> bool:
    u = make_url(url)
    return u.get_backend_name() == "sqlite" and u.database in (None, "", ":memory:")


def make_engine(url: str, *, busy_timeout_ms: int = 10_000, pool_size: int = 5,
                max_overflow: int = 10, pool_timeout_s: float = 10.0, statement_timeout_ms: int = 0,
                echo: bool = False) -> Engine:
    """An engine for a ledger URL: `sqlite:///path.db`, `sqlite://` (memory) or `postgresql+psycopg://…`.

    On Postgres a dropped connection (restart, failover) invalidates the pool and surfaces as a transient
    error (`ledger.errors.is_transient_db_error`): the unit of work is retried on a fresh connection.
    """
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, busy_timeout_ms, pool_size, max_overflow, pool_timeout_s, echo)
    if backend == "postgresql":
        if u.drivername == "postgresql":  # bare postgresql:// means psycopg 3 here, not psycopg2
            u = u.set(drivername="postgresql+psycopg")
        # a lock wait past lock_timeout raises lock_not_available (55P03), a statement past
        # statement_timeout query_canceled (57014): both transient
        options = f"-c lock_timeout={busy_timeout_ms} -c statement_timeout={statement_timeout_ms}"
        try:
            return create_engine(
                u, echo=echo, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout_s,
                pool_recycle=1800, connect_args={"options": options, "connect_timeout": 10},
            )
        except ImportError as exc:
            raise ConfigError(f"a PostgreSQL ledger needs the psycopg driver ({exc}); "
                              "install it with: pip install 'hookstream[postgres]'") from None
    raise ValueError(f"unsupported ledger database {backend!r}: use sqlite:/// or postgresql+psycopg://")


def _sqlite_engine(url: str, busy_timeout_ms: int, pool_size: int, max_overflow: int,
                   pool_timeout_s: float, echo: bool) -> Engine:
    # `?synchronous=normal` trades durability on power loss (not on process crash) for speed;
    # the default FULL fsyncs each commit so a committed effect survives before its offset does.
    u = make_url(url)
    synchronous = str(u.query.get("synchronous", "full")).upper()
    if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"synchronous must be off, normal, full or extra, not {synchronous.lower()!r}")
    url = u.difference_update_query(["synchronous"]).render_as_string(hide_password=False)
    kwargs: dict[str, Any] = {"echo": echo}
    connect_args: dict[str, Any] = {"timeout": busy_timeout_ms / 1000, "check_same_thread": False}
    if is_sqlite_memory(url):
        kwargs["poolclass"] = StaticPool  # one shared connection, else every checkout is a new empty DB
    else:
        database = make_url(url).database
        if database and not database.startswith("file:"):
            # A typo in the path must not open a new, empty ledger ("unknown account" for everything).
            folder = Path(database).expanduser().absolute().parent
            if not folder.is_dir():
                raise ConfigError(f"the SQLite ledger's folder {str(folder)!r} does not exist "
                                  f"(database URL {url!r}); create it or fix the URL")
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout_s)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions cannot BEGIN IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {'DEFERRED' if mode == 'DEFERRED' else 'IMMEDIATE'}")

    return engine
