"""deploy/compose.yaml is a valid Compose project (docker compose's own loader) with every role in it."""

from __future__ import annotations

from pathlib import Path

import yaml

from test_deploy.conftest import run, tool
from test_deploy.exprs import PROCESSORS, REPO

COMPOSE = REPO / "deploy/compose.yaml"


def test_compose_file_is_valid_for_docker_compose():
    result = run([tool("docker-compose"), "-f", str(COMPOSE), "config", "--quiet"])
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_an_invalid_file(tmp_path):
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  receiver:\n    image: hookstream\n    restart: sometimes\n    portz: [1]\n")
    result = run([tool("docker-compose"), "-f", str(bad), "config", "--quiet"])
    assert result.returncode != 0


def test_compose_runs_kafka_postgres_monitoring_and_every_hookstream_role():
    result = run([tool("docker-compose"), "-f", str(COMPOSE), "config", "--format", "json"])
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    roles = {name: s["command"] for name, s in services.items() if s.get("image") == "hookstream:dev"}
    assert roles["receiver"][:1] == ["ingest"]
    assert roles["sandbox"][:1] == ["sandbox"]
    for p in PROCESSORS:
        assert roles[f"processor-{p}"] == ["process", p]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                # `config` resolves bind sources to absolute paths next to the compose file.
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']} is not in the repository"


def test_the_compose_receiver_decides_authorizations_with_the_ledger_policy():
    result = run([tool("docker-compose"), "-f", str(COMPOSE), "config", "--format", "json"])
    assert result.returncode == 0, result.stderr
    receiver = yaml.safe_load(result.stdout)["services"]["receiver"]
    env = receiver["environment"]
    assert env["HOOKSTREAM_AUTHORIZATION_POLICY"] == "hookstream.ingest.policy:ledger_policy"
    assert env["HOOKSTREAM_DATABASE_URL"].startswith("postgresql+psycopg://")  # the ledger the policy reads
    assert "migrate" in receiver["depends_on"]  # the schema exists before the first authorization
