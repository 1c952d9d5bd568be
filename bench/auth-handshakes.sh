#!/usr/bin/env bash
# Handshakes per second of the `switchyard` binary without auth, with an HS256 secret and with an ES256
# public key (every client sending a valid token), in one run on one machine, so the ratios against
# "none" hold even on a noisy machine. Each round starts a fresh server per variant, in rotated order.
#   bash bench/auth-handshakes.sh [rounds (3)] [handshakes per burst (2000)]
# Needs: cargo build --release -p switchyard -p switchyard-bench. Prints one JSON line per run, then
# the medians and the ratios (WebSocket, and polling + upgrade). Only loopback traffic. Connection
# state recovery is off: its store is scanned on every disconnect, which dominates a connect burst.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
count="${2:-2000}"
bin=target/release
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
for alg in hs256 es256; do
  "$bin/switchyard-bench" auth-setup --alg "$alg" --dir "$dir" > "$dir/$alg.json"
done
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
run_one() { # variant
  local variant="$1" port env=() token=""
  port="$(free_port)"
  if [[ "$variant" != none ]]; then
    while IFS='=' read -r k v; do env+=("$k=$v"); done < <(node -e 'const j=require(process.argv[1]);for(const[k,v]of Object.entries(j.env))console.log(`${k}=${v}`)' "$dir/$variant.json")
    token="$(node -e 'console.log(require(process.argv[1]).token)' "$dir/$variant.json")"
  fi
  env "${env[@]}" SWITCHYARD_SERVER_HOST=127.0.0.1 SWITCHYARD_SERVER_PORT="$port" SWITCHYARD_LOG_LEVEL=warn \
    SWITCHYARD_LIMITS_HANDSHAKES_PER_SECOND_PER_IP=0 SWITCHYARD_LIMITS_CONNECTIONS_PER_IP=0 SWITCHYARD_RECOVERY_ENABLED=false \
    "$bin/switchyard" > "$dir/server-$variant.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && break; sleep 0.1; done
  local args=(connect --port "$port" --server-pid "$pid" --count "$count" --concurrency 32)
  [[ -n "$token" ]] && args+=(--token "$token")
  local line
  line="$(timeout 300 "$bin/switchyard-bench" "${args[@]}" 2>/dev/null | tail -1)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "{\"variant\":\"$variant\",\"result\":$line}"
}
variants=(none hs256 es256)
for round in $(seq 0 $((rounds - 1))); do
  for i in 0 1 2; do
    run_one "${variants[$(((i + round) % 3))]}" | tee -a "$dir/runs.jsonl"
  done
done
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const keys = ["ws_handshakes_per_sec", "polling_handshakes_per_sec", "ws_server_cpu_us_per_handshake", "polling_server_cpu_us_per_handshake", "ws_failed", "polling_failed"];
const out = {};
for (const v of ["none", "hs256", "es256"]) {
  out[v] = {};
  for (const k of keys) out[v][k] = median(lines.filter((l) => l.variant === v).map((l) => l.result[k]).filter((x) => typeof x === "number"));
}
for (const v of ["hs256", "es256"]) for (const k of keys) out[v][k + "_vs_none"] = +(out[v][k] / out.none[k]).toFixed(3);
console.log(JSON.stringify(out, null, 1));
' "$dir/runs.jsonl"
