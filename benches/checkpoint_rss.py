#!/usr/bin/env python3
"""Memory through checkpoints and compactions on a large store (docs/performance.md, "Memory
through checkpoints", "Memory through a sweep and its compaction").

Starts the release `hookgate` on CONFIG (a store the ingest bench kept), sends it signed
Standard Webhooks with random ids from THREADS keep-alive connections for SECONDS, samples the
gateway's VmRSS every 0.2 s, and prints its RSS just before the first mark, right after each
(the highest sample until the next mark), and at the end; then stops it (SIGTERM). Marks: C a
checkpoint (`Store checkpointed`), S a seal of a dedup run (`Dedup run sealed`), W a retention
pass (`Swept expired events`), K a compaction begun (`Compacting the store`), D one done
(`Store compacted`); the open's, compactions' and seals' log lines are printed. THREADS may
be 0: no load, the gateway only sweeps and compacts.
Extra environment for the gateway comes from the command line as NAME=VALUE arguments (for
example `MALLOC_ARENA_MAX=1`); `HOOKGATE_BIN` names another build to run.

    HOOKGATE_BENCH_DATA=DIR cargo bench --bench ingest -- 1 10000000
    sed 's#^checkpoint_mb = .*##; s#^\\[store\\]#[store]\\ncheckpoint_mb = 32#' \\
        DIR/pre-loaded/config.toml > DIR/rss.toml
    HOOKGATE_BIN=... benches/checkpoint_rss.py DIR/rss.toml 60 16 HOOKGATE_TEST_DEDUP_RUN_KEYS=100000000

(the last argument keeps dedup runs from being sealed during the trial: a seal adds memory of
its own, which would hide the checkpoints' part.) Through a sweep of every event and the
compaction after it:

    sed 's#^slow_commit = .*#retention = "1s"\\nsweep_interval = "1s"#' \\
        DIR/pre-loaded/config.toml > DIR/sweep.toml
    benches/checkpoint_rss.py DIR/sweep.toml 180 0
"""
import base64
import hashlib
import hmac
import http.client
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid

SECRET = base64.b64decode("YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA==")


MARKS = (("C", "Store checkpointed"), ("S", "Dedup run sealed"), ("W", "Swept expired events"),
         ("K", "Compacting the store"), ("D", "Store compacted"))


def start(config, env):
    log = tempfile.TemporaryFile("w+")
    binary = os.environ.get("HOOKGATE_BIN", "target/release/hookgate")
    gateway = subprocess.Popen([binary, "serve", "--config", config],
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    while True:
        log.seek(0)
        text = log.read()
        found = re.search(r"hookgate listening public=(\S+)", text)
        if found:
            return gateway, log, found.group(1)
        if gateway.poll() is not None:
            sys.exit(f"hookgate exited:\n{text[-3000:]}")
        time.sleep(0.05)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def send(address, until, counts, index):
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    filler = base64.b64encode(os.urandom(700)).decode()
    sent = 0
    while time.monotonic() < until:
        msg_id = f"msg_{uuid.uuid4().hex}"
        body = f'{{"id":"{msg_id}","data":"{filler}"}}'
        ts = str(int(time.time()))
        tag = hmac.new(SECRET, f"{msg_id}.{ts}.{body}".encode(), hashlib.sha256).digest()
        headers = {"content-type": "application/json", "webhook-id": msg_id,
                   "webhook-timestamp": ts,
                   "webhook-signature": "v1," + base64.b64encode(tag).decode()}
        connection.request("POST", "/hooks/bench", body, headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status == 200:
            sent += 1
    counts[index] = sent


def main():
    config, seconds, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    env = dict(arg.split("=", 1) for arg in sys.argv[4:])
    gateway, log, address = start(config, env)
    time.sleep(2)
    opened = rss_mib(gateway.pid)
    until = time.monotonic() + seconds
    counts = [0] * threads
    senders = [threading.Thread(target=send, args=(address, until, counts, i))
               for i in range(threads)]
    for sender in senders:
        sender.start()
    samples, events, seen = [], [], {mark: 0 for mark, _ in MARKS}
    while time.monotonic() < until:
        samples.append(rss_mib(gateway.pid))
        log.seek(0)
        text = log.read()
        for mark, line in MARKS:
            done = text.count(line)
            if done > seen[mark]:
                events.append((len(samples) - 1, mark))
                seen[mark] = done
        time.sleep(0.2)
    for sender in senders:
        sender.join()
    ending = rss_mib(gateway.pid)
    gateway.terminate()
    gateway.wait()
    log.seek(0)
    for line in log:
        if "ompact" in line or "Dedup run sealed" in line or "Store opened" in line:
            print(line.rstrip())
    bounds = [at for at, _ in events] + [len(samples)]
    before = max(samples[:bounds[0]] or [0.0])
    after = [f"{mark}{max(samples[start:end] or [0.0]):.0f}"
             for (start, mark), end in zip(events, bounds[1:])]
    print(f"env {env or '-'}: {sum(counts)} acks in {seconds:.0f} s; RSS MiB: open {opened:.0f}, "
          f"before the first mark {before:.0f}, after each "
          f"{' '.join(after)}, peak {max(samples):.0f}, end {ending:.0f}")


if __name__ == "__main__":
    main()
