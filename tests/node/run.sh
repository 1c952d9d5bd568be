#!/usr/bin/env bash
# Runs the Node interop suite: the official socket.io-client against the server under test.
#   tests/node/run.sh                 against target/release/interop (build it first)
#   tests/node/run.sh --reference     against the Node reference server (tests/node/reference-server.js)
#   tests/node/run.sh [--reference] test/acks.test.js ...   only the given files
# INTEROP_SERVER_CMD overrides the server command (a shell command; it gets PORT in its environment).
# test/msgpack.test.js starts its server with INTEROP_PARSER=msgpack (the client uses socket.io-msgpack-parser).
# INTEROP_SUITE_TIMEOUT (seconds, default 600) bounds the whole run; INTEROP_SERVER_LOG=1 shows server output.
set -euo pipefail
cd "$(dirname "$0")"

if [[ "${1:-}" == "--reference" ]]; then
  export INTEROP_SERVER_CMD="exec node '$PWD/reference-server.js'"
  shift
fi

if [[ ! -d node_modules/socket.io-client || ! -d node_modules/socket.io ]]; then
  echo "tests/node: installing npm dependencies (npm ci)"
  timeout 300 npm ci --no-audit --no-fund
fi

if [[ -z "${INTEROP_SERVER_CMD:-}" && ! -x ../../target/release/interop ]]; then
  echo "tests/node: target/release/interop not found; build it with" >&2
  echo "  cargo build --release -p switchyard-fixtures --bin interop" >&2
  echo "or run against another server: INTEROP_SERVER_CMD=... or --reference" >&2
  exit 1
fi

suite_timeout="${INTEROP_SUITE_TIMEOUT:-600}"
run_files() {
  timeout --kill-after=10 "$suite_timeout" \
    node --test --test-reporter=spec --test-force-exit "$@"
}

if [[ $# -gt 0 ]]; then
  run_files --test-concurrency=2 "$@"
  exit
fi

# The load test saturates both cores; it runs alone, after the timing-sensitive files have run two at a time.
functional=()
for file in test/*.test.js; do
  [[ "$file" == test/load.test.js ]] || functional+=("$file")
done
status=0
run_files --test-concurrency=2 "${functional[@]}" || status=$?
run_files --test-concurrency=1 test/load.test.js || status=$?
exit "$status"
