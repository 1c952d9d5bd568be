#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a bounded time (FUZZ_SECONDS each, default 10, one target
# per core at a time). A single input slower than 10 s counts as a failure (a hang).
# Installs cargo-fuzz if missing. Exits non-zero if a target crashes or fails to build.
set -euo pipefail

cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-10}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    timeout 900 cargo install cargo-fuzz --locked
fi

# cargo fuzz passes nightly-only flags (-Z sanitizer, -Cpasses=sancov...); allow them on a stable toolchain.
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

cd fuzz
targets=$(cargo fuzz list)
logs=target/smoke-logs
mkdir -p "$logs"

echo "building fuzz targets (release, debug assertions on)"
timeout 900 cargo fuzz build -O --debug-assertions

# libFuzzer runs one process on one core: run FUZZ_JOBS targets at a time (default: one per core), each
# still for FUZZ_SECONDS, so the step's fuzzing takes ~ceil(targets/cores) x FUZZ_SECONDS of wall time.
jobs_max="${FUZZ_JOBS:-$(nproc)}"
run_target() {
    local target="$1"
    mkdir -p "corpus/$target"
    # Grace time for startup and the final report on top of the fuzzing time itself.
    if timeout $((FUZZ_SECONDS + 60)) cargo fuzz run -O --debug-assertions "$target" "corpus/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$logs/$target.log" 2>&1; then
        echo ok >"$logs/$target.status"
    else
        echo failed >"$logs/$target.status"
    fi
}
rm -f "$logs"/*.status
for target in $targets; do
    while (($(jobs -rp | wc -l) >= jobs_max)); do
        wait -n || true
    done
    echo "== fuzzing $target for ${FUZZ_SECONDS}s"
    run_target "$target" &
done
wait

failed=()
for target in $targets; do
    if [[ "$(cat "$logs/$target.status" 2>/dev/null)" != ok ]]; then
        failed+=("$target")
        echo "!! $target failed; last lines of its log:"
        tail -n 40 "$logs/$target.log"
    else
        echo "== $target"
        grep -E "^stat::number_of_executed_units|^Done" "$logs/$target.log" | sed "s/^/   /" || true
    fi
done

if ((${#failed[@]})); then
    echo "fuzz smoke FAILED: ${failed[*]} (crash inputs in fuzz/artifacts/)"
    exit 1
fi
echo "fuzz smoke passed: $(wc -w <<<"$targets") targets, ${FUZZ_SECONDS}s each"
