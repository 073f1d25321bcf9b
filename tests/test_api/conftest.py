"""API client fixtures: the client talks to a real sandbox over HTTP (the sandbox tests' fixtures)."""

from test_sandbox.conftest import clock, sandbox  # noqa: F401  (pytest fixtures, shared)
