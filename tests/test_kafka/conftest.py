"""The receiver fixture of the ingest tests, reused: the Kafka tests drive the real `hookstream ingest`."""

from test_ingest.conftest import start_receiver  # noqa: F401 - a fixture
