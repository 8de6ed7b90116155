#!/usr/bin/env bash
# Where threads wait for a core during the ingest bench's first paced round (half the highest
# rate, the p99 target's load): runs `cargo bench --bench ingest -- 10 0` and, 2 s into the
# run "64, paced ... (round 1)" against hookgate, records the scheduler on every core for 5 s
# with `perf sched record`. Needs `perf` (Debian's linux-perf) and root. Prints the bench's
# table, then each thread's scheduling delay (from waking to running: average and worst),
# sorted by the worst; hookgate's threads are `actix-rt|system` (HTTP workers),
# `hookgate-commit`, `sled-io` and `hookgate-log`, the load generator's `ingest-*`/`tokio-*`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --benches
log=target/sched-bench.log
cargo bench --bench ingest -- 10 0 > "$log" 2>&1 &
bench=$!
until grep -q 'Measuring hookgate: 64, paced' "$log"; do
    kill -0 "$bench" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 1
done
sleep 2
perf sched record -a -o target/sched.data -- sleep 5
wait "$bench"
grep -A30 '### Runs' "$log"
perf sched latency -i target/sched.data --sort max | head -45
