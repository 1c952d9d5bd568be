#!/usr/bin/env bash
# The project's test command: installs what the tests need, builds everything once in release mode, and
# runs every suite. Each step is bounded by a timeout. Without the dependencies or a build nothing else
# can run, so a failure there stops at once; the other steps all run, and the last line reads
# "N passed, N failed" (", N skipped" when an optional suite is absent). Exit status 0 only if all passed.
#   TEST_FAIL_FAST=1   stop at the first failing step
#   TEST_SKIP=clippy,fuzz   skip the named steps (names as printed)
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
skipped=0
report=()
failed_steps=()

summary() {
  echo
  echo "==================== summary ===================="
  printf '%s\n' "${report[@]}"
  if [[ ${#failed_steps[@]} -gt 0 ]]; then
    echo "failed: ${failed_steps[*]}"
  fi
  if [[ $skipped -gt 0 ]]; then
    echo "$passed passed, $failed failed, $skipped skipped"
  else
    echo "$passed passed, $failed failed"
  fi
}

skip() {
  local name="$1" why="$2"
  skipped=$((skipped + 1))
  report+=("$(printf '  %-8s %-8s %s' skip "$name" "$why")")
  echo "==> $name: skipped ($why)"
}

# step NAME SECONDS REQUIRED COMMAND... ; REQUIRED=1 ends the run when the step fails.
step() {
  local name="$1" seconds="$2" required="$3"
  shift 3
  if [[ ",${TEST_SKIP:-}," == *",$name,"* ]]; then
    skip "$name" "TEST_SKIP"
    return 0
  fi
  echo
  echo "==> $name: $* (timeout ${seconds}s)"
  local started status
  started=$(date +%s)
  timeout --kill-after=30 "$seconds" "$@"
  status=$?
  local elapsed=$(($(date +%s) - started))
  if [[ $status -eq 0 ]]; then
    passed=$((passed + 1))
    report+=("$(printf '  %-8s %-8s %4ss' ok "$name" "$elapsed")")
    echo "==> $name: ok (${elapsed}s)"
    return 0
  fi
  local why="exit status $status"
  [[ $status -eq 124 || $status -eq 137 ]] && why="timed out after ${seconds}s"
  failed=$((failed + 1))
  failed_steps+=("$name")
  report+=("$(printf '  %-8s %-8s %4ss  %s' FAILED "$name" "$elapsed" "$why")")
  echo "==> $name: FAILED ($why)"
  if [[ "$required" == 1 || "${TEST_FAIL_FAST:-0}" == 1 ]]; then
    echo "==> stopping: the remaining steps need '$name'"
    summary
    exit 1
  fi
  return 0
}

total_started=$(date +%s)

# npm and pip installs run in parallel (fresh clone on a loaded 2-core machine: 9.5 -> 4.1 min).
step deps 1800 1 bash scripts/install-deps.sh
step fmt 120 0 cargo fmt --all -- --check
# One release build of every target (libraries, binaries, fixture servers, tests, benches); the steps after it
# reuse it: nextest runs these test binaries, the Node and browser suites run these fixture servers and binaries.
step build 2700 1 cargo build --release --workspace --all-targets
# Clippy in the release profile: it still type-checks every crate (clippy cannot reuse compiled code),
# but build scripts and proc-macros built above are shared; the dev profile would rebuild those too.
step clippy 1500 0 cargo clippy --release --workspace --all-targets -- -D warnings
step nextest 1500 0 cargo nextest run --release --workspace
# The fuzz targets run one per core at a time: ~5 rounds of 10 s instead of 9 in a row.
if [[ -f scripts/fuzz-smoke.sh ]]; then
  step fuzz 1800 0 bash scripts/fuzz-smoke.sh
else
  skip fuzz "scripts/fuzz-smoke.sh not present"
fi
step node 900 0 bash tests/node/run.sh
# The HTTP API, property-based: schemathesis against the release binary's /api/openapi.json.
step api 300 0 bash tests/api/run.sh
# Older and other clients (socket.io-client@2 beside @4, python-socketio 4 and 5) with engine.allow_eio3.
step legacy 1500 0 bash tests/legacy/run.sh
if [[ -f tests/cluster/run.sh ]]; then
  step cluster 600 0 bash tests/cluster/run.sh
else
  skip cluster "tests/cluster/run.sh not present"
fi
# The official Socket.IO Admin UI (docs/ADMIN.md): socket.io-client on the admin namespace (one node, two
# over Redis), a mixed cluster with an instrumented Node server, the real UI files in headless Chromium.
step admin 420 0 bash tests/admin/run.sh
# Kafka out and in: the tansu broker (killed and restarted under traffic), confluent-kafka, socket.io-client.
step kafka 400 0 bash tests/kafka/run.sh
if [[ -f tests/browser/run.sh ]]; then
  step browser 600 0 bash tests/browser/run.sh
else
  skip browser "tests/browser/run.sh not present"
fi

echo
echo "total time: $(($(date +%s) - total_started))s"
summary
[[ $failed -eq 0 ]]
