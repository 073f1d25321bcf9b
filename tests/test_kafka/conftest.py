"""Fixtures of other rooms, reused: the Kafka tests drive the real `hookstream ingest` and `hookstream process`."""

from card_program.conftest import start_processor  # noqa: F401 - a fixture
from test_ingest.conftest import own_broker, start_receiver  # noqa: F401 - fixtures
