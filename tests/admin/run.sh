#!/usr/bin/env bash
# Runs the admin UI suite (docs/ADMIN.md): the official socket.io-client speaking to the admin namespace
# of target/release/switchyard (every event shape and command, one node and two nodes over Redis), a mixed
# cluster with a Node socket.io server instrumented by @socket.io/admin-ui, and the real UI files of
# @socket.io/admin-ui (installed from npm by `npm ci`) in headless Debian Chromium.
#   tests/admin/run.sh                      every test file
#   tests/admin/run.sh test/admin.test.js   only the given files
# Needs redis-server, chromium (scripts/install-deps.sh installs both) and the release switchyard binary:
#   cargo build --release -p switchyard
# ADMIN_SERVER_LOG=1 shows the servers' logs; ADMIN_SUITE_TIMEOUT (s, default 300) bounds the run;
# screenshots go to tests/admin/test-artifacts/ (ARTIFACT_DIR overrides).
set -euo pipefail
cd "$(dirname "$0")"

if [[ ! -d node_modules/@socket.io/admin-ui || ! -d node_modules/playwright-core ]]; then
  echo "tests/admin: installing npm dependencies (npm ci)"
  timeout 300 npm ci --no-audit --no-fund --loglevel=error
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "tests/admin: redis-server not found (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
if [[ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]]; then
  echo "tests/admin: chromium not found at ${CHROMIUM:-/usr/bin/chromium} (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
if [[ ! -x "${SWITCHYARD_BIN:-../../target/release/switchyard}" ]]; then
  echo "tests/admin: target/release/switchyard not found; build it with cargo build --release -p switchyard" >&2
  exit 1
fi

files=("$@")
[[ ${#files[@]} -gt 0 ]] || files=(test/*.test.js)
timeout --kill-after=10 "${ADMIN_SUITE_TIMEOUT:-300}" \
  node --test --test-reporter=spec --test-force-exit --test-concurrency=1 --test-timeout=120000 "${files[@]}"
