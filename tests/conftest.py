"""Test wiring: one real Kafka broker per run, per-test topic prefixes, processes started by PID."""

pytest_plugins = ["fixtures.kafka", "fixtures.processes", "fixtures.postgres", "fixtures.feed"]
