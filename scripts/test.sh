#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need, then runs pytest.
# Tests start their own Kafka broker (jars from Maven Central), PostgreSQL and Prometheus on loopback.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/test_ingest -k outage`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

# System packages: a JDK and Maven for the Kafka broker, PostgreSQL server binaries.
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bash .ci/deploy-tools.sh            # promtool/prometheus, kustomize, compose loader (tests/test_deploy)
.venv/bin/hookstream kafka jars     # Kafka jars into ~/.cache/hookstream (skipped when cached)

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
