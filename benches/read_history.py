#!/usr/bin/env python3
"""Memory of a gateway whose readers read history (docs/performance.md, "Reading history").

Starts the release `hookgate` on a store the ingest bench kept, reads PAGES x 1,000 events in
order through the admin API (`GET /v1/events?after=..&limit=1000`), then RANDOM single events at
random seqs of the whole store (`GET /v1/events/{seq}`), printing the gateway's VmRSS and VmHWM
(MiB) as it goes. `HOOKGATE_BIN` names another build to run.

    HOOKGATE_BENCH_DATA=DIR cargo bench --bench ingest -- 1 10000000
    cargo build --release
    benches/read_history.py DIR/pre-loaded/config.toml [PAGES] [RANDOM]   # default 600 20000
"""
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

TOKEN = "bench-admin-token-0123456789"  # benches/common/mod.rs ADMIN_TOKEN


def main():
    config = sys.argv[1]
    pages = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    scattered = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")
    binary = os.environ.get("HOOKGATE_BIN", "target/release/hookgate")
    gateway = subprocess.Popen([binary, "serve", "--config", config],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        admin = None
        for _ in range(300):
            time.sleep(0.1)
            log.seek(0)
            text = log.read()
            found = re.search(r"listening public=\S+ admin=(\S+)", text)
            if found:
                admin = found.group(1)
                stored = int(re.search(r"next_seq=(\d+)", text).group(1)) - 1
                break
        assert admin, "the gateway did not start"

        def rss():
            status = open(f"/proc/{gateway.pid}/status").read()
            mib = lambda key: int(re.search(key + r":\s+(\d+)", status).group(1)) // 1024
            return f"VmRSS {mib('VmRSS')} MiB, VmHWM {mib('VmHWM')} MiB"

        def get(path):
            request = urllib.request.Request(f"http://{admin}{path}",
                                             headers={"Authorization": f"Bearer {TOKEN}"})
            return urllib.request.urlopen(request, timeout=60).read()

        print("open:", rss(), flush=True)
        started, after = time.time(), 0
        for page in range(1, pages + 1):
            events = json.loads(get(f"/v1/events?after={after}&limit=1000"))["events"]
            if not events:
                break
            after = events[-1]["seq"]
            if page % 200 == 0 or page == pages:
                print(f"in order, {page} pages (to seq {after}, {time.time() - started:.1f} s):",
                      rss(), flush=True)
        random.seed(1)
        for n in range(1, scattered + 1):
            get(f"/v1/events/{random.randint(1, max(stored, 1))}")
            if n % 5000 == 0 or n == scattered:
                print(f"scattered, {n} reads:", rss(), flush=True)
        log.seek(0)
        print("checkpoints:", log.read().count("Store checkpointed: a start"))
    finally:
        gateway.terminate()
        gateway.wait()


if __name__ == "__main__":
    main()
