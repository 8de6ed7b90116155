#!/usr/bin/env bash
# Profiles hookgate during the ingest bench's first 64-connection run: runs
# `cargo bench --bench ingest -- 15 0` and, 78 s in (that run's middle with 15 s per run), records
# the hookgate process for 8 s with `perf record --call-graph dwarf`. Needs `perf` (Debian's
# linux-perf). Then, for example:
#   perf report -i target/perf.data --no-children --sort comm,dso -g none
#   perf report -i target/perf.data --children --comm hookgate-commit --sort sym -g none
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --benches
cargo bench --bench ingest -- 15 0 > target/profile-bench.log 2>&1 &
bench=$!
sleep 78
pid=$(pgrep -f 'hookgate serve' | head -1)
perf record -F 997 --call-graph dwarf,32768 -p "$pid" -o target/perf.data -- sleep 8
wait "$bench"
grep -A40 '### Runs' target/profile-bench.log
