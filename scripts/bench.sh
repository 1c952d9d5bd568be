#!/usr/bin/env bash
# The benchmark (not a test, not part of CI): builds switchyard-bench, whose `run` subcommand builds and
# starts Switchyard's bench-server example, the Node socket.io peer (bench/node) and the socketioxide peer
# (bench/peers/socketioxide) one at a time, runs the idle, fanout, echo, connect and cluster scenarios against
# each (twice by default), and writes BENCHMARKS.md and bench/chart.svg. Raw results go to bench/results/.
# The cluster scenario starts its own redis-server (Debian's redis-server package) and two nodes per server.
#
# Arguments are passed to `switchyard-bench run`, e.g.
#   scripts/bench.sh --scenarios fanout --repeats 3
#   scripts/bench.sh --scenarios cluster --servers switchyard,node
#   scripts/bench.sh --scenarios idle --idle-connections 19000   (the open-file limit here is 20,000)
#   scripts/bench.sh --scenarios fanout-polling,echo-polling
#   scripts/bench.sh --scenarios echo,echo-1000 --servers switchyard,socketioxide   (the echo goal's two load points)
#   scripts/bench.sh --scenarios kafka --servers switchyard,node   (opt-in, not in the default list: Kafka on
#     and off beside Node + kafkajs, about a minute per repeat; needs tests/kafka/.venv from install-deps.sh)
#   scripts/bench.sh --scenarios recovery,history --repeats 1   (opt-in: recovery of 1,000 missed messages on
#     one node and on two over a redis-server it starts, Node's in-memory recovery beside; history reads and
#     writes of the switchyard binary, off / embedded / Redis Streams. About 35 s per repeat for both)
#   scripts/bench.sh --cargo-profile release ...   (run the release build, e.g. the test command's, not perf)
#   scripts/bench.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  exec cargo run --quiet --release -p switchyard-bench -- run --help
fi

cargo build --release -p switchyard-bench
# Bounded: the standard run takes well under 15 minutes; the servers die with the runner.
exec timeout 3600 cargo run --quiet --release -p switchyard-bench -- run --command-line "scripts/bench.sh${*:+ $*}" "$@"
