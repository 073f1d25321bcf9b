# The two commands of the README. Both create .venv and install what they need.
.PHONY: run test bench chaos

run:  ## the whole pipeline locally with demo traffic (Ctrl-C stops it)
	scripts/run.sh

test:  ## the whole test suite (real Kafka, PostgreSQL, Prometheus, sandbox)
	scripts/test.sh

bench:  ## benchmarks; figures go to docs/benchmarks.md (needs wrk and go: see benchmarks/ingest.py)
	.venv/bin/pip install -q -e ".[bench]"
	.venv/bin/python benchmarks/ingest.py

chaos:  ## the chaos suite at full size (HOOKSTREAM_CHAOS_EVENTS, default 20000 per backend); JSON reports in reports/
	HOOKSTREAM_CHAOS_EVENTS=$${HOOKSTREAM_CHAOS_EVENTS:-20000} HOOKSTREAM_CHAOS_REPORT=reports/chaos-{backend}.json \
	  scripts/test.sh tests/chaos -s -p no:cacheprovider
