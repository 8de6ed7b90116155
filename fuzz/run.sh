#!/usr/bin/env bash
# A short, bounded fuzzing run of every target in fuzz_targets/ (cargo-fuzz, libFuzzer,
# AddressSanitizer). Each target runs FUZZ_SECONDS seconds (default 20); the property is that
# hookgate never panics (plus the round trips the twilio and event_id targets assert).
#
#   fuzz/run.sh                 # every target
#   fuzz/run.sh twilio event_id # some
#   FUZZ_SECONDS=300 fuzz/run.sh
#
# A crash leaves its input in fuzz/artifacts/<target>/ and this script exits 1; replay it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>`. Corpora grow in
# fuzz/corpus/<target>/ and are reused by the next run. The first build takes a while (every
# dependency is compiled with ASan and coverage instrumentation).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-20}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address and others); only a stable
# toolchain is installed here, and RUSTC_BOOTSTRAP=1 makes it accept them.
export RUSTC_BOOTSTRAP=1

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build

mkdir -p logs
failed=()
for target in "${targets[@]}"; do
    log="logs/$target.log"
    if cargo fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        >"$log" 2>&1; then
        runs=$(grep -Eo '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)
        cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+' "$log" | tail -1 || true)
        echo "ok      $target: ${runs:-?}s; ${cov:-no coverage line}"
    else
        echo "FAILED  $target: see fuzz/$log and fuzz/artifacts/$target/"
        grep -E 'panicked at|SUMMARY|Test unit written to' "$log" | sed 's/^/        /' || true
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "${#failed[@]} target(s) found a crash: ${failed[*]}"
    exit 1
fi
echo "${#targets[@]} target(s), ${seconds} s each: no crash."
