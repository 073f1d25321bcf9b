"""Sandbox fixtures: a fresh sandbox per test on a real port, and a scriptable webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from test_sandbox.harness import FakeClock, Running, running_sandbox


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox() -> Iterator[Running]:
    with running_sandbox() as running:
        yield running
