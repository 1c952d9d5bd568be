#!/usr/bin/env bash
# Property-based test of the HTTP API: schemathesis generates requests from the server's own OpenAPI
# document (/api/openapi.json) and checks every answer against it (status codes, schemas, content
# types, headers, schema-violating requests refused, auth enforced), against the release `switchyard`
# binary with a few official socket.io-client sockets connected (clients.mjs), so rooms and sockets
# exist for the operations to reach.
#   tests/api/run.sh
# Needs: the release binary (cargo build --release -p switchyard), schemathesis in tests/api/.venv
# (scripts/install-deps.sh), Node.js with tests/node's npm dependencies.
#   SWITCHYARD_BIN        another binary
#   SCHEMATHESIS          another schemathesis executable
#   API_MAX_EXAMPLES      test cases per operation and phase (default 15)
#   API_SEED              the random seed (default 1: every run generates the same cases); "random" for a new one
#   API_SERVER_LOG=1      show the server's log
set -euo pipefail
cd "$(dirname "$0")"

bin="${SWITCHYARD_BIN:-../../target/release/switchyard}"
st="${SCHEMATHESIS:-.venv/bin/schemathesis}"
if [[ ! -x "$bin" ]]; then
  echo "tests/api: $bin not found; build it with: cargo build --release -p switchyard" >&2
  exit 1
fi
if [[ ! -x "$st" ]]; then
  echo "tests/api: $st not found; scripts/install-deps.sh installs schemathesis into tests/api/.venv" >&2
  exit 1
fi
if [[ ! -d ../node/node_modules/socket.io-client ]]; then
  echo "tests/api: installing tests/node's npm dependencies (npm ci)"
  (cd ../node && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
fi

# Absolute, for the run below happens in a scratch directory.
st="$(cd "$(dirname "$st")" && pwd)/$(basename "$st")"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
key=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
url="http://127.0.0.1:$port"
work=$(mktemp -d)
server_pid=""
clients_pid=""
cleanup() {
  [[ -n "$clients_pid" ]] && kill "$clients_pid" 2>/dev/null || true
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The key through SWITCHYARD_API_KEY, as a deployment would set it; no rate limit, so every generated
# request reaches the handlers. History on (its embedded store in the scratch directory), so
# GET /api/rooms/{room}/history answers pages, not 501.
server_log=/dev/null
[[ -n "${API_SERVER_LOG:-}" ]] && server_log=/dev/stderr
SWITCHYARD_API_KEY="$key" "$bin" --host 127.0.0.1 --port "$port" \
  --set api.requests_per_second=0 --set server.chat_page=false --set limits.connections_per_ip=0 \
  --set limits.handshakes_per_second_per_ip=0 \
  --set history.enabled=true --set "store.dir=$work/data" >"$server_log" 2>&1 &
server_pid=$!
ready() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url/readyz" >/dev/null 2>&1
}
for _ in $(seq 1 100); do
  ready && break
  kill -0 "$server_pid" 2>/dev/null || { echo "tests/api: the server exited" >&2; exit 1; }
  sleep 0.1
done
ready || { echo "tests/api: the server is not ready after 10 s" >&2; exit 1; }

node clients.mjs "$url" "$key" 4 >"$work/clients.out" 2>&1 &
clients_pid=$!
for _ in $(seq 1 100); do
  grep -q ready "$work/clients.out" && break
  kill -0 "$clients_pid" 2>/dev/null || { cat "$work/clients.out" >&2; echo "tests/api: the clients exited" >&2; exit 1; }
  sleep 0.1
done
grep -q ready "$work/clients.out" || { cat "$work/clients.out" >&2; echo "tests/api: clients not ready" >&2; exit 1; }

seed=()
[[ "${API_SEED:-1}" != random ]] && seed=(--seed "${API_SEED:-1}")
# Hypothesis keeps its example database in the work directory, which is removed afterwards.
cd "$work"
timeout --kill-after=10 150 "$st" run "$url/api/openapi.json" \
  -H "Authorization: Bearer $key" \
  --checks all \
  --max-examples "${API_MAX_EXAMPLES:-15}" \
  "${seed[@]}" \
  --request-timeout 10 \
  --no-color
