"""The pool and timeout settings reach the database connections a processor opens."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc

from hookstream.ledger import Ledger
from hookstream.ledger.errors import is_transient_db_error
from hookstream.settings import Settings


def _settings(url: str, **values: object) -> Settings:
    return Settings(database_url=url, **values)


def test_timeouts_and_pool_follow_the_settings(ledger_url: str) -> None:
    books = Ledger.from_settings(_settings(ledger_url, database_pool_size=3, database_pool_max_overflow=1,
                                           database_lock_timeout_ms=1234, database_statement_timeout_ms=4321))
    try:
        assert books.engine.pool.size() == 3
        with books.engine.connect() as conn:
            if books.dialect == "postgresql":
                assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1234ms"
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "4321ms"
            else:
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    finally:
        books.close()


@pytest.mark.postgres
def test_a_statement_past_the_timeout_is_a_transient_error(postgres_database_url: str) -> None:
    books = Ledger.from_settings(_settings(postgres_database_url, database_statement_timeout_ms=100))
    try:
        with pytest.raises(sa_exc.DBAPIError) as caught, books.engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_sleep(2)")
        assert is_transient_db_error(caught.value)
    finally:
        books.close()
