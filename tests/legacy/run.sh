#!/usr/bin/env bash
# Runs the suite of older and other clients against Switchyard with engine.allow_eio3 on:
#   - the official Socket.IO v2 client (socket.io-client@2) beside the current one (socket.io-client@4,
#     installed as socket.io-client-v4), with Node's test runner (test/*.test.js);
#   - python-socketio 4 (a Socket.IO v2-era client: Engine.IO v3) and python-socketio 5 (python/);
#   - the rust_socketio crate (crates/legacy-clients, built here on demand; LEGACY_SKIP_RUST=1 skips it).
# The server is target/release/interop with INTEROP_ALLOW_EIO3=1 (build it first), or INTEROP_SERVER_CMD.
#   tests/legacy/run.sh                  everything
#   tests/legacy/run.sh test/mixed.test.js   only the given Node test files
# The Python clients live in virtual environments under tests/legacy/.venv-* (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")"

if [[ ! -d node_modules/socket.io-client || ! -d node_modules/socket.io-client-v4 ]]; then
  echo "tests/legacy: installing npm dependencies (npm ci)"
  timeout 300 npm ci --no-audit --no-fund --loglevel=error
fi

if [[ -z "${INTEROP_SERVER_CMD:-}" && ! -x ../../target/release/interop ]]; then
  echo "tests/legacy: target/release/interop not found; build it with" >&2
  echo "  cargo build --release -p switchyard-fixtures --bin interop" >&2
  exit 1
fi

suite_timeout="${LEGACY_SUITE_TIMEOUT:-600}"
if [[ $# -gt 0 ]]; then
  exec timeout --kill-after=10 "$suite_timeout" node --test --test-reporter=spec --test-force-exit "$@"
fi

status=0
echo "==> Node: socket.io-client@2 and @4"
timeout --kill-after=10 "$suite_timeout" \
  node --test --test-reporter=spec --test-force-exit --test-concurrency=2 test/*.test.js || status=$?

for version in 4 5; do
  python=".venv-sio$version/bin/python"
  echo "==> Python: python-socketio $version"
  if [[ ! -x "$python" ]]; then
    echo "tests/legacy: $python missing: run scripts/install-deps.sh" >&2
    status=1
    continue
  fi
  timeout --kill-after=10 300 "$python" python/run_client.py "$version" || status=$?
done

if [[ "${LEGACY_SKIP_RUST:-0}" != 1 ]]; then
  # Its own package and lockfile, built in the dev profile into target/legacy-rust (the first build
  # compiles its dependency tree: a few minutes on two cores; later runs reuse it).
  echo "==> Rust: rust_socketio"
  CARGO_TARGET_DIR=../../target/legacy-rust timeout --kill-after=10 1200 \
    cargo run --quiet --locked --manifest-path rust/Cargo.toml || status=$?
fi

exit "$status"
