"""Chaos suite wiring: a broker of the module's own, which the run restarts (the session's broker stays up)."""

from test_ingest.conftest import own_broker  # noqa: F401 — the fixture, shared rather than written twice
