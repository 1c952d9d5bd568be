#!/usr/bin/env bash
# Fanout instructions per delivery (callgrind: the same on a noisy machine) of the bench server without
# the admin UI's namespace (`none`), with it on in production mode and one admin socket connected
# (`admin`: issue 9's budget is within 5% of `none`), and in development mode with no admin socket
# connected (`dev-idle`: its observer reads one flag per hook). Each variant runs twice under valgrind, `switchyard-bench fanout --receivers 200`
# with 1000 and with 100 messages; the difference over the 180,000 extra deliveries is the cost of one,
# startup and joins excluded. PAIRS (default 2) repeats each variant; VARIANTS picks some.
#   bash bench/admin-callgrind.sh
# Needs valgrind, node with tests/admin's npm dependencies (the admin socket is socket.io-client) and:
#   cargo build --release -p switchyard-fixtures --bin bench-server -p switchyard-bench
# Only loopback traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
instructions() { # variant messages
  local variant="$1" n="$2" port env=() admin_pid=""
  port="$(free_port)"
  case "$variant" in
    admin) env=(SWITCHYARD_ADMIN_ENABLED=true SWITCHYARD_ADMIN_AUTH=none SWITCHYARD_ADMIN_MODE=production) ;;
    dev-idle) env=(SWITCHYARD_ADMIN_ENABLED=true SWITCHYARD_ADMIN_AUTH=none SWITCHYARD_ADMIN_MODE=development) ;;
  esac
  env "${env[@]}" PORT="$port" RUST_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg-$variant-$n.out" "$bin/bench-server" > "$dir/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 150); do curl -sf "http://127.0.0.1:$port/socket.io/?EIO=4&transport=polling" > /dev/null && break; sleep 0.2; done
  if [[ "$variant" == admin ]]; then
    # The admin socket stays connected (and gets server_stats) for the whole run.
    (cd tests/admin && exec timeout 600 node -e '
      const { io } = require("socket.io-client");
      const s = io(process.argv[1] + "/admin", { transports: ["websocket"] });
      s.on("config", () => console.log("admin connected"));
      s.on("connect_error", (e) => { console.error("admin: " + e.message); process.exit(1); });
    ' "http://127.0.0.1:$port" > "$dir/admin.log" 2>&1) &
    admin_pid=$!
    for _ in $(seq 100); do grep -q "admin connected" "$dir/admin.log" && break; sleep 0.2; done
    grep -q "admin connected" "$dir/admin.log" || { echo "the admin socket did not connect" >&2; cat "$dir/admin.log" >&2; exit 1; }
  fi
  timeout 600 "$bin/switchyard-bench" fanout --port "$port" --receivers 200 --messages "$n" > "$dir/fanout-$variant-$n.log" 2>&1
  [[ -n "$admin_pid" ]] && { kill "$admin_pid"; wait "$admin_pid" 2>/dev/null || true; }
  kill "$pid"; wait "$pid" 2>/dev/null || true
  grep -m1 "^summary:\|^totals:" "$dir/cg-$variant-$n.out" | awk '{print $2}'
}
for pair in $(seq "${PAIRS:-2}"); do
  for variant in ${VARIANTS:-none admin dev-idle}; do
    small="$(instructions "$variant" 100)"
    large="$(instructions "$variant" 1000)"
    echo "pair $pair, $variant: $(((large - small) / 180000)) instructions per delivery"
  done
done
