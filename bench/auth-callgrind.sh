#!/usr/bin/env bash
# Server instructions per handshake (callgrind: the same on a noisy machine) of the `switchyard` binary
# without auth, with an HS256 secret and with an ES256 public key. Each variant runs twice under
# valgrind, with 100 and with 600 handshakes per transport (WebSocket, polling + upgrade); the
# difference over the 1000 extra handshakes is the cost of one, startup excluded.
#   bash bench/auth-callgrind.sh
# Needs valgrind and: cargo build --release -p switchyard -p switchyard-bench. Only loopback traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
for alg in hs256 es256; do "$bin/switchyard-bench" auth-setup --alg "$alg" --dir "$dir" > "$dir/$alg.json"; done
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
instructions() { # variant count
  local variant="$1" n="$2" port env=() token=""
  port="$(free_port)"
  if [[ "$variant" != none ]]; then
    while IFS='=' read -r k v; do env+=("$k=$v"); done < <(node -e 'const j=require(process.argv[1]);for(const[k,v]of Object.entries(j.env))console.log(`${k}=${v}`)' "$dir/$variant.json")
    token="$(node -e 'console.log(require(process.argv[1]).token)' "$dir/$variant.json")"
  fi
  env "${env[@]}" SWITCHYARD_SERVER_HOST=127.0.0.1 SWITCHYARD_SERVER_PORT="$port" SWITCHYARD_LOG_LEVEL=warn \
    SWITCHYARD_LIMITS_HANDSHAKES_PER_SECOND_PER_IP=0 SWITCHYARD_LIMITS_CONNECTIONS_PER_IP=0 SWITCHYARD_RECOVERY_ENABLED=false \
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg-$variant-$n.out" "$bin/switchyard" > "$dir/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 150); do curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && break; sleep 0.2; done
  local args=(connect --port "$port" --count "$n" --concurrency 8)
  [[ -n "$token" ]] && args+=(--token "$token")
  timeout 300 "$bin/switchyard-bench" "${args[@]}" > /dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  grep -m1 "^summary:\|^totals:" "$dir/cg-$variant-$n.out" | awk '{print $2}'
}
declare -A per
for variant in none hs256 es256; do
  small="$(instructions "$variant" 100)"
  large="$(instructions "$variant" 600)"
  per[$variant]=$(((large - small) / 1000))
  echo "$variant: ${per[$variant]} instructions per handshake"
done
for variant in hs256 es256; do
  echo "$variant vs none: $(node -e "console.log((${per[$variant]}/${per[none]}).toFixed(2))")x"
done
