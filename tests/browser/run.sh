#!/usr/bin/env bash
# Runs the headless Chromium chat test.
#   tests/browser/run.sh               against target/release/switchyard (build it first)
#   tests/browser/run.sh --reference   against the Node reference server (tests/browser/reference-server.js: the
#                                      built-in events of docs/EVENTS.md on one node)
# CHAT_SERVER_CMD overrides the server command; BROWSER_TEST_TIMEOUT (seconds, default 180) bounds the run.
set -euo pipefail
cd "$(dirname "$0")"

if [[ "${1:-}" == "--reference" ]]; then
  export CHAT_SERVER_CMD="node tests/browser/reference-server.js"
fi

if [[ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]]; then
  echo "chromium not found at ${CHROMIUM:-/usr/bin/chromium}: apt-get install -y --no-install-recommends chromium" >&2
  exit 1
fi

if [[ ! -d node_modules/playwright-core || ! -d node_modules/socket.io ]]; then
  timeout 300 npm ci --no-audit --no-fund
fi

exec timeout --kill-after=10 "${BROWSER_TEST_TIMEOUT:-180}" \
  node --test --test-timeout=150000 chat.test.js
