#!/usr/bin/env bash
# Runs the mixed-cluster suite: Node socket.io with @socket.io/redis-adapter beside Switchyard nodes on
# one redis-server (classic mode, then sharded mode), the Node emitter, `switchyard emit`, message history
# and redis.bridge (test/history.test.js), and the HTTP API
# of one `switchyard` node acting on sockets of the others (test/api.test.js).
#   tests/cluster/run.sh                      every test file
#   tests/cluster/run.sh test/mixed.test.js   only the given files
# Needs redis-server and the release builds of the cluster-node example and the switchyard binary:
#   cargo build --release -p switchyard-fixtures --bin cluster-node && cargo build --release -p switchyard
# CLUSTER_SERVER_LOG=1 shows the Switchyard nodes' logs; CLUSTER_SUITE_TIMEOUT (s, default 360) bounds the run.
set -euo pipefail
cd "$(dirname "$0")"

if [[ ! -d node_modules/@socket.io/redis-adapter || ! -d node_modules/socket.io-client ]]; then
  echo "tests/cluster: installing npm dependencies (npm ci)"
  timeout 300 npm ci --no-audit --no-fund --loglevel=error
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "tests/cluster: redis-server not found (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
# CLUSTER_NODE_BIN / SWITCHYARD_BIN point elsewhere (another target directory, say).
for binary in "${CLUSTER_NODE_BIN:-../../target/release/cluster-node}" "${SWITCHYARD_BIN:-../../target/release/switchyard}"; do
  if [[ ! -x "$binary" ]]; then
    echo "tests/cluster: $binary not found; build it with" >&2
    echo "  cargo build --release -p switchyard-fixtures --bin cluster-node && cargo build --release -p switchyard" >&2
    exit 1
  fi
done

files=("$@")
[[ ${#files[@]} -gt 0 ]] || files=(test/*.test.js)
timeout --kill-after=10 "${CLUSTER_SUITE_TIMEOUT:-360}" \
  node --test --test-reporter=spec --test-force-exit --test-concurrency=1 "${files[@]}"
